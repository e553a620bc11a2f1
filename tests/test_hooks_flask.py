"""The Flask hook, through Flask's test client, checked on both legs' wire."""

from __future__ import annotations

import logging
import sys
import threading

import pytest
from flask import Flask, Response, jsonify, request, stream_with_context
from hostile import HOSTILE, HOSTILE_HEADERS, HOSTILE_QUOTED, assert_hostile, hostile_calls

import analytics_posthog as analytics
from analytics_posthog.integrations.flask import Analytics

BROWSER = {
    "User-Agent": "Mozilla/5.0 (Macintosh) Firefox/126.0",
    "Referer": "https://shop.example.com/cart",
    "Accept-Language": "fr-CH, fr;q=0.9, en;q=0.8",
    "X-POSTHOG-SESSION-ID": "0190-session",
    "X-POSTHOG-DISTINCT-ID": "browser-anon-1\x07",
}
#: A signed-in user's browser whose posthog-js sends no distinct id (the header would win).
SIGNED_IN = {k: v for k, v in BROWSER.items() if k != "X-POSTHOG-DISTINCT-ID"}


def make_app(legs, **config):
    app = Flask(__name__)
    app.config.update(
        {"ANALYTICS_POSTHOG_" + name: value for name, value in {**legs.settings, **config}.items()}
    )
    Analytics(app)

    @app.get("/checkout")
    def checkout():
        analytics.track(event="Checkout Viewed", properties={"step": 1})
        analytics.track(
            "u1", "Explicit", context={"ip": "198.51.100.1", "page": {"title": "Checkout"}}
        )
        return "<html>checkout</html>"

    @app.get("/event/<name>")
    def event(name):
        analytics.track(event=name)
        return jsonify(ok=True)

    return app


def test_request_context_reaches_both_legs_and_spoofed_forwarded_for_loses(legs):
    client = make_app(legs).test_client()
    headers = {**BROWSER, "X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.7"}
    assert client.get("/checkout?coupon=x1", headers=headers).status_code == 200
    events, messages = legs.wait(2)

    viewed, message = events["Checkout Viewed"], messages["Checkout Viewed"]
    legs.assert_request(
        viewed,
        message,
        "127.0.0.1",
        "http://localhost/checkout?coupon=x1",
        path="/checkout",
        search="?coupon=x1",
        referrer="https://shop.example.com/cart",
    )
    assert viewed["$raw_user_agent"] == message["context"]["userAgent"] == BROWSER["User-Agent"]
    assert viewed["$session_id"] == message["context"]["sessionId"] == "0190-session"
    assert viewed["$locale"] == message["context"]["locale"] == "fr-CH"
    assert (
        legs.posthog.wait_for_events(2)[0]["distinct_id"]
        == message["anonymousId"]
        == "browser-anon-1"
    )
    assert message["userId"] is None and viewed["step"] == 1

    explicit, message = events["Explicit"], messages["Explicit"]
    assert explicit["$ip"] == message["context"]["ip"] == "198.51.100.1"
    assert message["context"]["page"] == {
        "title": "Checkout",
        "url": "http://localhost/checkout?coupon=x1",
        "path": "/checkout",
        "search": "?coupon=x1",
        "referrer": "https://shop.example.com/cart",
    }
    assert explicit["$title"] == "Checkout"
    assert message["userId"] == "u1" and message["anonymousId"] is None


@pytest.mark.parametrize(
    "trusted, forwarded_for",
    [(1, "6.6.6.6, 203.0.113.7"), ("127.0.0.1, 10.0.0.0/8", "6.6.6.6, 203.0.113.7, 10.1.2.3")],
)
def test_forwarded_for_wins_behind_a_trusted_proxy(legs, trusted, forwarded_for):
    client = make_app(legs, TRUSTED_PROXIES=trusted).test_client()
    client.get(
        "/event/Proxied",
        headers={"X-Forwarded-For": forwarded_for, "X-POSTHOG-DISTINCT-ID": "anon-1"},
    )
    events, messages = legs.wait(1)
    assert events["Proxied"]["$ip"] == messages["Proxied"]["context"]["ip"] == "203.0.113.7"


def test_concurrent_requests_keep_their_own_context(legs):
    analytics.sync_mode = False  # queued during the request, delivered after it
    app = make_app(legs)
    both_inside = threading.Barrier(2, timeout=5)

    @app.get("/concurrent/<name>")
    def concurrent(name):
        both_inside.wait()
        analytics.track(event=name)
        return "ok"

    def run(name):
        app.test_client().get(
            "/concurrent/" + name,
            headers={"X-POSTHOG-DISTINCT-ID": "anon-" + name, "User-Agent": "agent-" + name},
        )

    threads = [threading.Thread(target=run, args=(name,)) for name in ("A", "B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    events, messages = legs.wait(2)
    for name in ("A", "B"):
        assert events[name]["$pathname"] == "/concurrent/" + name
        assert (
            events[name]["$raw_user_agent"]
            == messages[name]["context"]["userAgent"]
            == "agent-" + name
        )
        assert messages[name]["anonymousId"] == "anon-" + name


def test_call_after_the_request_has_no_request_context(legs):
    client = make_app(legs).test_client()
    client.get("/event/During", headers=BROWSER)
    analytics.track("u1", "After")
    events, messages = legs.wait(2)
    assert events["During"]["$session_id"] == "0190-session"
    assert not {"$ip", "$current_url", "$session_id", "$raw_user_agent"} & set(events["After"])
    assert set(messages["After"]["context"]) == {"library"}


def test_user_id_only_when_opted_in(legs):
    app = make_app(legs, CAPTURE_USER_ID=lambda: request.headers.get("X-Test-User"))
    app.test_client().get("/event/Signed", headers={"X-Test-User": "42", **SIGNED_IN})
    events, messages = legs.wait(1)
    assert messages["Signed"]["userId"] == "42" and messages["Signed"]["anonymousId"] is None
    assert legs.posthog.events[0]["distinct_id"] == "42"


def test_automatic_page_calls_for_html_only_and_flush_per_request(legs):
    analytics.sync_mode = False
    client = make_app(legs, PAGE_CALLS=True, FLUSH_PER_REQUEST=True).test_client()
    client.get("/checkout", headers=BROWSER)  # HTML: a page call
    client.get("/event/Json", headers=BROWSER)  # JSON: none
    client.get("/static/app.css", headers=BROWSER)  # skipped path (and a 404)
    client.get("/checkout")  # names nobody: none
    # Flushed before each response: everything is already there.
    assert legs.posthog.event_count == 4 and legs.segment.segment_count == 4
    pages = [e for e in legs.posthog.events if e["event"] == "$pageview"]
    assert len(pages) == 1 and pages[0]["properties"]["$current_url"] == "http://localhost/checkout"
    page = next(m for m in legs.segment.segment_messages if m["type"] == "page")
    assert (
        page["properties"]["url"] == page["context"]["page"]["url"] == "http://localhost/checkout"
    )


def test_unknown_setting_is_refused(legs):
    with pytest.raises(ValueError, match="TRUSTED_PROXY"):
        make_app(legs, TRUSTED_PROXY=1)


def test_hostile_request_answers_200_and_its_events_arrive_cut_and_marked(legs):
    app = make_app(legs)

    @app.get("/hostile/<path:junk>")
    def hostile(junk):
        return hostile_calls()

    response = app.test_client().get(
        "/hostile/" + HOSTILE_QUOTED, query_string=HOSTILE, headers=HOSTILE_HEADERS
    )
    assert response.status_code == 200
    assert_hostile(
        legs,
        response.get_data(as_text=True),
        ("userAgent", "page.url", "page.path", "page.search", "page.referrer", "sessionId"),
    )


def test_calls_in_a_streamed_body_see_the_request(legs):
    app = make_app(legs)

    @app.get("/stream")
    def stream():
        def rows():
            yield "a,"
            analytics.track(
                event="Streamed"
            )  # names nobody: the browser's id comes from the request
            yield "b"

        return stream_with_context(rows())

    @app.get("/plain-stream")
    def plain_stream():
        def rows():
            analytics.track(
                event="Plain streamed"
            )  # without stream_with_context: Flask's request is gone, ours is not
            yield "x"

        return Response(rows())

    client = app.test_client()
    response = client.get("/stream?page=2", headers=BROWSER)
    assert (response.status_code, response.get_data(as_text=True)) == (200, "a,b")
    assert client.get("/plain-stream", headers=BROWSER).status_code == 200
    events, messages = legs.wait(2)
    for name in ("Streamed", "Plain streamed"):
        assert messages[name]["anonymousId"] == "browser-anon-1"
        assert events[name]["$session_id"] == "0190-session"
    assert events["Streamed"]["$current_url"] == "http://localhost/stream?page=2"
    analytics.track("u1", "After")  # the request's context ends with its body
    assert "$current_url" not in legs.wait(3)[0]["After"]


def test_a_request_the_hook_cannot_read_gets_no_context_and_no_error(legs, caplog):
    def broken_user_id():
        raise LookupError("session store down")

    caplog.set_level(
        logging.DEBUG, logger="analytics_posthog"
    )  # WARNING once per process, DEBUG after
    app = make_app(legs, CAPTURE_USER_ID=broken_user_id)

    @app.get("/named")
    def named():
        analytics.track("u1", "Unreadable")
        return "ok"

    assert app.test_client().get("/named", headers=BROWSER).status_code == 200
    events, messages = legs.wait(1)
    assert (
        "page" not in messages["Unreadable"]["context"]
        and "$current_url" not in events["Unreadable"]
    )
    assert any(
        "could not read the request" in r.getMessage() and r.exc_info[0] is LookupError
        for r in caplog.records
    )


def test_capture_user_id_without_flask_login_fails_at_init_app_naming_it(legs, monkeypatch):
    """Not with a failure on every request: once, when the app is set up."""
    monkeypatch.setitem(sys.modules, "flask_login", None)  # absent, whether installed or not
    with pytest.raises(ModuleNotFoundError, match="pip install flask-login"):
        make_app(legs, CAPTURE_USER_ID=True)
