"""The Django hook, through django.test.Client and AsyncClient, checked on both legs' wire."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from types import SimpleNamespace

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        SECRET_KEY="test",
        MIDDLEWARE=[
            __name__ + ".FakeAuthenticationMiddleware",
            "analytics_posthog.integrations.django.AnalyticsMiddleware",
        ],
        INSTALLED_APPS=["analytics_posthog.integrations.django.AnalyticsPostHogConfig"],
    )
    django.setup()

import pytest  # noqa: E402
from asgiref.sync import iscoroutinefunction, markcoroutinefunction  # noqa: E402
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.test import AsyncClient, Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from hostile import HOSTILE, HOSTILE_HEADERS, HOSTILE_QUOTED, assert_hostile, hostile_calls  # noqa: E402

import analytics_posthog as analytics  # noqa: E402

BROWSER = {
    "User-Agent": "Mozilla/5.0 (Windows NT 10.0) Edge/125.0",
    "Referer": "https://shop.example.com/",
    "Accept-Language": "nl-BE",
    "X-POSTHOG-SESSION-ID": "sess-dj",
    "X-POSTHOG-DISTINCT-ID": "anon-dj",
}
#: A signed-in user's browser whose posthog-js sends no distinct id (the header would win).
SIGNED_IN = {k: v for k, v in BROWSER.items() if k != "X-POSTHOG-DISTINCT-ID"}


class FakeAuthenticationMiddleware:
    """Stands in for Django's (which needs a database): X-Test-User is the logged-in user's pk."""

    sync_capable = async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        pk = request.headers.get("X-Test-User")
        request.user = (
            SimpleNamespace(pk=int(pk), is_authenticated=True)
            if pk
            else SimpleNamespace(pk=None, is_authenticated=False)
        )

        async def auser():
            return request.user

        request.auser = auser
        return self.get_response(request)


gate = threading.Barrier(2, timeout=5)


def checkout(request):
    analytics.track(event="Checkout Viewed")
    analytics.identify(traits={"plan": "pro"})
    return HttpResponse("<html>checkout</html>")


def event(request, name):
    if name.startswith("Concurrent"):
        gate.wait()
    analytics.track(event=name)
    return JsonResponse({"ok": True})


async def async_event(request, name):
    analytics.track(event=name)
    await asyncio.sleep(0.05)  # the other request runs meanwhile
    analytics.track(event=name + " later")
    return JsonResponse({"ok": True})


def streamed(request):
    def rows():
        yield "a,"
        analytics.track(event="Streamed")  # names nobody: the browser's id comes from the request
        yield "b"

    return StreamingHttpResponse(rows())


async def async_streamed(request):
    async def rows():
        yield "a,"
        analytics.track(event="Async streamed")
        yield "b"

    return StreamingHttpResponse(rows())


urlpatterns = [
    path("streamed", streamed),
    path("async-streamed", async_streamed),
    path("checkout", checkout),
    path("event/<str:name>", event),
    path("async/<str:name>", async_event),
    path("hostile/<path:junk>", lambda request, junk: HttpResponse(hostile_calls())),
]


@pytest.fixture
def configured(legs):
    def configure(**options):
        return override_settings(ANALYTICS_POSTHOG={**legs.settings, **options})

    return configure


def test_request_context_reaches_both_legs_and_spoofed_forwarded_for_loses(legs, configured):
    with configured():
        response = Client().get(
            "/checkout?q=shoes",
            headers={**BROWSER, "X-Forwarded-For": "6.6.6.6"},
            REMOTE_ADDR="192.0.2.10",
        )
    assert response.status_code == 200
    events, messages = legs.wait(2)
    viewed, message = events["Checkout Viewed"], messages["Checkout Viewed"]
    legs.assert_request(
        viewed,
        message,
        "192.0.2.10",
        "http://testserver/checkout?q=shoes",
        path="/checkout",
        search="?q=shoes",
        referrer="https://shop.example.com/",
    )
    assert viewed["$raw_user_agent"] == message["context"]["userAgent"] == BROWSER["User-Agent"]
    assert viewed["$session_id"] == message["context"]["sessionId"] == "sess-dj"
    assert message["anonymousId"] == "anon-dj"
    # identify() with no ids at all succeeds inside the request: the browser's distinct id fills in.
    assert messages["identify"]["anonymousId"] == "anon-dj" and events["$set"]["$set"] == {
        "plan": "pro"
    }


@pytest.mark.parametrize("trusted", [2, "192.0.2.0/24,10.0.0.0/8"])
def test_forwarded_for_wins_behind_a_trusted_proxy(legs, configured, trusted):
    with configured(TRUSTED_PROXIES=trusted):
        Client().get(
            "/event/Proxied",
            headers={**BROWSER, "X-Forwarded-For": "6.6.6.6, 203.0.113.7, 10.0.0.5"},
            REMOTE_ADDR="192.0.2.10",
        )
    events, messages = legs.wait(1)
    assert events["Proxied"]["$ip"] == messages["Proxied"]["context"]["ip"] == "203.0.113.7"


def test_concurrent_sync_requests_keep_their_own_context(legs, configured):
    analytics.sync_mode = False  # queued during the request, delivered after it
    with configured():
        threads = [
            threading.Thread(
                target=Client().get,
                args=("/event/Concurrent" + name,),
                kwargs={"headers": {"X-POSTHOG-DISTINCT-ID": "anon-" + name}},
            )
            for name in "AB"
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
    analytics.track("u1", "After")  # this thread handled no request
    events, messages = legs.wait(3)
    for name in "AB":
        assert events["Concurrent" + name]["$pathname"] == "/event/Concurrent" + name
        assert messages["Concurrent" + name]["anonymousId"] == "anon-" + name
    assert "$pathname" not in events["After"]


def test_concurrent_async_requests_keep_their_own_context_and_it_ends_with_them(legs, configured):
    async def go():
        client = AsyncClient()
        await asyncio.gather(
            *(
                client.get("/async/" + name, headers={"X-POSTHOG-DISTINCT-ID": "anon-" + name})
                for name in "AB"
            )
        )
        analytics.track("u1", "After")  # same task that ran both requests

    with configured():
        asyncio.run(go())
    events, messages = legs.wait(5)
    for name in ("A", "B", "A later", "B later"):
        assert messages[name]["anonymousId"] == "anon-" + name[0]
        assert events[name]["$pathname"] == "/async/" + name[0]
    assert "$pathname" not in events["After"] and set(messages["After"]["context"]) == {"library"}


def test_user_id_only_when_opted_in(legs, configured):
    with configured():
        Client().get("/event/NotOpted", headers={**BROWSER, "X-Test-User": "7"})
    with configured(CAPTURE_USER_ID=True):
        Client().get("/event/Opted", headers={**SIGNED_IN, "X-Test-User": "7"})
        asyncio.run(
            AsyncClient().get("/async/AsyncOpted", headers={**SIGNED_IN, "X-Test-User": "8"})
        )
    events, messages = legs.wait(4)
    assert (messages["NotOpted"]["userId"], messages["NotOpted"]["anonymousId"]) == (
        None,
        "anon-dj",
    )
    assert (messages["Opted"]["userId"], messages["Opted"]["anonymousId"]) == ("7", None)
    assert messages["AsyncOpted"]["userId"] == "8"


def test_automatic_page_calls_and_flush_per_request(legs, configured):
    analytics.sync_mode = False
    with configured(PAGE_CALLS=True, FLUSH_PER_REQUEST=True, PAGE_SKIP=["/event/"]):
        Client().get("/checkout", headers=BROWSER)
        Client().get("/event/Skipped", headers=BROWSER)
    assert legs.posthog.event_count == 4 and legs.segment.segment_count == 4
    pages = [e for e in legs.posthog.events if e["event"] == "$pageview"]
    assert [p["properties"]["$pathname"] for p in pages] == ["/checkout"]


def test_hostile_request_answers_200_and_its_events_arrive_cut_and_marked(legs, configured):
    with configured():
        response = Client().get(
            "/hostile/" + HOSTILE_QUOTED, headers=HOSTILE_HEADERS, QUERY_STRING=HOSTILE
        )
    assert response.status_code == 200
    assert_hostile(
        legs,
        response.content.decode(),
        ("userAgent", "page.url", "page.path", "page.search", "page.referrer", "sessionId"),
    )


STARTUP_CALL = """
import sys
import django
from django.conf import settings
import analytics_posthog as analytics

settings.configure(
    INSTALLED_APPS=sys.argv[3:],
    MIDDLEWARE=["analytics_posthog.integrations.django.AnalyticsMiddleware"],
    ANALYTICS_POSTHOG={"API_KEY": "phc_startup", "HOST": sys.argv[1], "WRITE_KEY": "seg_startup", "SEGMENT_HOST": sys.argv[2]},
)
django.setup()
if settings.INSTALLED_APPS:
    analytics.track("cron", "Nightly Report Sent")  # a management command's call: no request yet
try:
    from django.core.handlers.wsgi import WSGIHandler
    WSGIHandler()  # builds the middleware
except Exception as error:
    print(type(error).__name__, error)
"""


def run_startup_call(posthog, segment, *installed_apps):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTHOG_", "SEGMENT_"))}
    return subprocess.run(
        [sys.executable, "-c", STARTUP_CALL, posthog.url, segment.url, *installed_apps],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout


def test_the_app_applies_the_settings_when_django_starts_so_calls_before_any_request_use_them(legs):
    assert (
        run_startup_call(
            legs.posthog,
            legs.segment,
            "analytics_posthog.integrations.django.AnalyticsPostHogConfig",
        )
        == ""
    )
    event, message = legs.posthog.wait_for_events(1)[0], legs.segment.wait_for_segment(1)[0]
    assert (event["event"], event["distinct_id"], message["userId"]) == (
        "Nightly Report Sent",
        "cron",
        "cron",
    )
    assert {r.key for r in legs.posthog.requests} == {"phc_startup"}


def test_keys_in_settings_without_the_app_are_an_error_not_ignored(legs):
    out = run_startup_call(legs.posthog, legs.segment)
    assert out.startswith("ImproperlyConfigured") and "AnalyticsPostHogConfig" in out


def test_calls_in_a_streamed_body_see_the_request(legs, configured):
    with configured():
        response = Client().get("/streamed?page=2", headers=BROWSER)
        assert (
            b"".join(response.streaming_content) == b"a,b"
        )  # iterated after the middleware returned
        async_response = asyncio.run(AsyncClient().get("/async-streamed", headers=BROWSER))
        assert b"".join(asyncio.run(_collect(async_response.streaming_content))) == b"a,b"
    events, messages = legs.wait(2)
    for name in ("Streamed", "Async streamed"):
        assert (
            messages[name]["anonymousId"] == "anon-dj" and events[name]["$session_id"] == "sess-dj"
        )
    assert events["Streamed"]["$current_url"] == "http://testserver/streamed?page=2"


async def _collect(chunks):
    return [chunk async for chunk in chunks]


def test_building_the_middleware_writes_no_setting_the_app_configures_them(legs):
    from analytics_posthog.integrations.django import AnalyticsMiddleware
    from analytics_posthog.settings import NAMES

    before = {name: getattr(analytics, name) for name in NAMES}
    hook_settings = {
        **legs.settings,
        "API_KEY": "phc_django",
        "GROUP_TYPE": "company",
        "TRUSTED_PROXIES": 1,
    }
    with override_settings(
        ANALYTICS_POSTHOG=hook_settings
    ):  # Django's setting_changed: the app re-applies
        assert (analytics.posthog_api_key, analytics.group_type, analytics.host) == (
            "phc_django",
            "company",
            legs.segment.url,
        )
        analytics.configure(**before)
        assert AnalyticsMiddleware(lambda request: None).options.trusted_proxies == 1
        assert {name: getattr(analytics, name) for name in NAMES} == before
