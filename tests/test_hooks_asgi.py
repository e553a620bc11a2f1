"""The ASGI hook on FastAPI/Starlette, through httpx's ASGITransport (and Starlette's TestClient), checked on both legs' wire."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, PlainTextResponse
from hostile import HOSTILE, HOSTILE_HEADERS, assert_hostile, hostile_calls
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser, SimpleUser
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.testclient import TestClient

import analytics_posthog as analytics
from analytics_posthog.integrations.asgi import AnalyticsMiddleware

BROWSER = {
    "User-Agent": "Mozilla/5.0 (X11) Chrome/125.0",
    "Referer": "https://shop.example.com/",
    "Accept-Language": "de-DE,de;q=0.9",
    "X-POSTHOG-SESSION-ID": "sess-9",
    "X-POSTHOG-DISTINCT-ID": "anon-9",
}
#: A signed-in user's browser whose posthog-js sends no distinct id (the header would win).
SIGNED_IN = {k: v for k, v in BROWSER.items() if k != "X-POSTHOG-DISTINCT-ID"}


class Account(BaseUser):
    """An app's own user class without ``identity`` (which starlette's
    ``BaseUser`` only got in 1.7, raising NotImplementedError before)."""

    def __init__(self, name):
        self.name = name

    @property
    def is_authenticated(self):
        return True

    @property
    def display_name(self):
        return self.name


class HeaderAuth(AuthenticationBackend):
    async def authenticate(self, conn):
        user, account = conn.headers.get("X-Test-User"), conn.headers.get("X-Test-Account")
        if account:
            return AuthCredentials(["authenticated"]), Account(account)
        return (AuthCredentials(["authenticated"]), SimpleUser(user)) if user else None


def make_app(legs, **options):
    analytics.configure(
        posthog_api_key="phc_test",
        posthog_host=legs.posthog.url,
        write_key="seg_key",
        host=legs.segment.url,
    )
    app = FastAPI()
    app.add_middleware(AnalyticsMiddleware, **options)
    app.add_middleware(
        AuthenticationMiddleware, backend=HeaderAuth()
    )  # added last: outermost, runs first
    app.state.gate = None

    @app.get("/checkout", response_class=HTMLResponse)
    async def checkout():
        analytics.track(event="Checkout Viewed")
        analytics.track("u1", "Explicit", context={"page": {"url": "https://other.example.com/x"}})
        return "<html>checkout</html>"

    @app.get("/event/{name}")
    async def event(name: str):
        if app.state.gate is not None:
            await app.state.gate(name)
        analytics.track(event=name)
        return {"ok": True}

    @app.get("/hostile/{junk:path}", response_class=PlainTextResponse)
    async def hostile(junk: str):
        return hostile_calls()

    @app.get("/sync/{name}")
    def sync_endpoint(name: str):  # runs in a worker thread
        analytics.track(event=name)
        return {"ok": True}

    return app


def request(app, path, headers=None, client=("127.0.0.1", 5000)):
    async def go():
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(
            transport=transport, base_url="https://shop.example.com"
        ) as http:
            return await http.get(path, headers=headers)

    return asyncio.run(go())


def test_request_context_reaches_both_legs_and_spoofed_forwarded_for_loses(legs):
    app = make_app(legs)
    response = request(app, "/checkout?utm_source=mail", {**BROWSER, "X-Forwarded-For": "6.6.6.6"})
    assert response.status_code == 200
    events, messages = legs.wait(2)
    viewed, message = events["Checkout Viewed"], messages["Checkout Viewed"]
    legs.assert_request(
        viewed,
        message,
        "127.0.0.1",
        "https://shop.example.com/checkout?utm_source=mail",
        path="/checkout",
        search="?utm_source=mail",
        referrer="https://shop.example.com/",
    )
    assert viewed["$raw_user_agent"] == message["context"]["userAgent"] == BROWSER["User-Agent"]
    assert viewed["$session_id"] == message["context"]["sessionId"] == "sess-9"
    assert viewed["$locale"] == "de-DE"
    assert message["anonymousId"] == "anon-9" and message["userId"] is None
    explicit = messages["Explicit"]
    assert (
        explicit["context"]["page"]["url"]
        == events["Explicit"]["$current_url"]
        == "https://other.example.com/x"
    )
    assert explicit["context"]["page"]["path"] == "/checkout"


@pytest.mark.parametrize("trusted", [1, ["127.0.0.0/8"]])
def test_forwarded_for_wins_behind_a_trusted_proxy(legs, trusted):
    app = make_app(legs, trusted_proxies=trusted)
    request(app, "/event/Proxied", {"X-Forwarded-For": "203.0.113.7", "X-POSTHOG-DISTINCT-ID": "a"})
    events, messages = legs.wait(1)
    assert events["Proxied"]["$ip"] == messages["Proxied"]["context"]["ip"] == "203.0.113.7"


def test_concurrent_requests_keep_their_own_context_and_context_ends_with_the_request(legs):
    analytics.sync_mode = False  # queued during the request, delivered after it
    app = make_app(legs)
    arrived, both_inside = [], asyncio.Event()

    async def gate(name):
        arrived.append(name)
        if len(arrived) == 2:
            both_inside.set()
        await asyncio.wait_for(both_inside.wait(), 5)

    app.state.gate = gate

    async def go():
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            await asyncio.gather(
                *(
                    http.get("/event/" + name, headers={"X-POSTHOG-DISTINCT-ID": "anon-" + name})
                    for name in "AB"
                )
            )
            # Awaited directly, ASGITransport runs the app in this very task: its context must be gone after.
            await http.get("/event/Sequential", headers={"X-POSTHOG-DISTINCT-ID": "anon-S"})
            analytics.track("u1", "After")

    asyncio.run(go())
    events, messages = legs.wait(4)
    for name in ("A", "B", "Sequential"):
        assert events[name]["$current_url"] == "http://api.test/event/" + name
        assert messages[name]["anonymousId"] == "anon-" + name[0]
    assert "$current_url" not in events["After"] and set(messages["After"]["context"]) == {
        "library"
    }


def test_sync_endpoint_in_a_thread_gets_the_context(legs):
    with TestClient(make_app(legs)) as client:
        client.get("/sync/Threaded", headers=BROWSER)
    events, messages = legs.wait(1)
    assert (
        events["Threaded"]["$session_id"]
        == messages["Threaded"]["context"]["sessionId"]
        == "sess-9"
    )
    assert events["Threaded"]["$current_url"] == "http://testserver/sync/Threaded"


def test_user_id_from_starlette_authentication_only_when_opted_in(legs):
    request(make_app(legs), "/event/NotOpted", {"X-Test-User": "ann", **BROWSER})
    request(
        make_app(legs, capture_user_id=True), "/event/Opted", {"X-Test-User": "ann", **SIGNED_IN}
    )
    events, messages = legs.wait(2)
    assert (messages["NotOpted"]["userId"], messages["NotOpted"]["anonymousId"]) == (None, "anon-9")
    assert (messages["Opted"]["userId"], messages["Opted"]["anonymousId"]) == ("ann", None)


def test_a_user_class_without_identity_gives_its_display_name(legs):
    request(
        make_app(legs, capture_user_id=True),
        "/event/Account",
        {"X-Test-Account": "bob", **SIGNED_IN},
    )
    events, messages = legs.wait(1)
    assert messages["Account"]["userId"] == "bob"


def test_automatic_page_calls_and_flush_per_request(legs):
    analytics.sync_mode = False
    app = make_app(legs, page_calls=True, flush_per_request=True)
    request(app, "/checkout", BROWSER)
    request(app, "/event/Json", BROWSER)
    request(app, "/healthz", BROWSER)
    assert legs.posthog.event_count == 4 and legs.segment.segment_count == 4
    pages = [m for m in legs.segment.segment_messages if m["type"] == "page"]
    assert [p["context"]["page"]["path"] for p in pages] == ["/checkout"]
    assert pages[0]["anonymousId"] == "anon-9"


def test_hostile_request_answers_200_and_its_events_arrive_cut_and_marked(legs):
    """The scope as a server may hand it over: raw bytes 0x80-0xFF in the query
    and headers, and a path with a lone surrogate (no UTF-8 encoder takes it)."""
    app = make_app(legs)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/hostile/\udc80" + HOSTILE,
        "raw_path": b"/hostile/x",
        "root_path": "",
        "query_string": HOSTILE.encode("latin-1"),
        "headers": [(b"host", b"shop.example.com")]
        + [
            (name.lower().encode(), value.encode("latin-1"))
            for name, value in HOSTILE_HEADERS.items()
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200
    assert_hostile(
        legs,
        b"".join(m.get("body", b"") for m in sent[1:]).decode(),
        ("userAgent", "page.url", "page.path", "page.search", "page.referrer", "sessionId"),
    )


async def without_lifespan(scope, receive, send):
    """A plain ASGI app that raises for lifespan, as Django's ASGI app does."""
    if scope["type"] != "http":
        raise ValueError("only HTTP")
    analytics.track(event="Plain")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize("kind", ["starlette", "without lifespan"])
def test_server_shutdown_delivers_what_is_queued_and_the_client_stays_usable(legs, kind):
    analytics.sync_mode = False  # queued: nothing but the shutdown delivers it
    app = make_app(legs)  # also points the module settings at the legs
    app = app if kind == "starlette" else AnalyticsMiddleware(without_lifespan)
    path = "/event/Queued" if kind == "starlette" else "/"
    for served in (1, 2):  # test suites start and stop an app many times in one process
        with TestClient(app) as client:
            assert client.get(path, headers=BROWSER).status_code == 200
        assert len(legs.posthog.events) == len(legs.segment.segment_messages) == served, (
            "delivered when shutdown completes"
        )


def test_shutdown_delivery_is_bounded_and_what_is_left_is_reported(legs, caplog):
    make_app(legs)
    analytics.sync_mode, analytics.exit_timeout = False, 0.5
    legs.posthog.hang(30, leg="posthog")
    try:
        with TestClient(AnalyticsMiddleware(without_lifespan)) as client:
            client.get("/", headers=BROWSER)
            started = time.monotonic()
        took = time.monotonic() - started
    finally:
        legs.posthog.restore()
    # Bounded by exit_timeout (0.5 s), not by the 30 s hang; the margin is for a loaded machine.
    assert took < 15, took
    # The hung event is still with the PostHog leg: the exit handler's report names it.
    assert any(
        r.name == "analytics_posthog"
        and r.levelno >= logging.WARNING
        and "posthog" in r.getMessage()
        for r in caplog.records
    )
    assert analytics.default_client.stats()["segment"]["delivered"] == 1
