"""A one-file Django project whose views call Segment's API; the middleware adds each request's context.

    python examples/django_app/app.py                  # offline: four requests against a loopback capture endpoint
    POSTHOG_API_KEY=phc_... python examples/django_app/app.py runserver

Every call needs someone to name. A browser running posthog-js sends its
distinct id (``X-POSTHOG-DISTINCT-ID``, or its cookie) and the middleware fills it in; any
other visitor gets an anonymous id of its own, kept in a cookie so its events join up.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from urllib.parse import quote

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path

import analytics_posthog as analytics
from analytics_posthog.integrations import visitor_named

settings.configure(
    DEBUG=True,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    SECRET_KEY="example-only",
    # The app applies ANALYTICS_POSTHOG's keys and hosts when Django starts, so
    # calls made outside requests (management commands, start-up code) use them too.
    INSTALLED_APPS=["analytics_posthog.integrations.django.AnalyticsPostHogConfig"],
    MIDDLEWARE=["analytics_posthog.integrations.django.AnalyticsMiddleware"],
    # Keys from the environment (POSTHOG_API_KEY, SEGMENT_WRITE_KEY) or here ("API_KEY": "phc_...").
    ANALYTICS_POSTHOG={"PAGE_CALLS": True, "TRUSTED_PROXIES": os.environ.get("TRUSTED_PROXIES", 0)},
)
django.setup()


VISITOR_COOKIE = "visitor_id"


def anonymous_id(request: HttpRequest) -> tuple[str | None, bool]:
    """``None`` when the middleware named the visitor (posthog-js, analytics.js,
    the logged-in user: it fills the id in), else the visitor's cookie id; and
    whether the cookie must be set."""
    if visitor_named():
        return None, False
    try:
        return str(uuid.UUID(request.COOKIES[VISITOR_COOKIE])), False  # only ids this app made
    except (KeyError, ValueError):
        return str(uuid.uuid4()), True


def checkout(request: HttpRequest) -> HttpResponse:
    visitor, new = anonymous_id(request)
    analytics.track(anonymous_id=visitor, event="Checkout Started", properties={"items": 2})
    response = HttpResponse("<html><body>Checkout</body></html>")
    if new:
        response.set_cookie(
            VISITOR_COOKIE, visitor, max_age=365 * 24 * 3600, httponly=True, samesite="Lax"
        )
    return response


urlpatterns = [path("checkout", checkout)]


def offline_demo() -> None:
    from django.test import Client

    from analytics_posthog.testing import CaptureServer

    with CaptureServer() as server:
        analytics.posthog_api_key, analytics.posthog_host, analytics.sync_mode = (
            "phc_demo",
            server.url,
            True,
        )
        client = Client()
        posthog_js = {
            "User-Agent": "Mozilla/5.0 (demo)",
            "X-POSTHOG-DISTINCT-ID": "browser-1",
            "X-POSTHOG-SESSION-ID": "session-1",
        }
        for headers in (
            posthog_js,
            {},
            {},
        ):  # a posthog-js browser, then a visitor with nothing, twice (with its cookie)
            print("GET /checkout ->", client.get("/checkout?step=1", headers=headers).status_code)
        # A browser whose only identity is posthog-js's cookie: the hook names it.
        posthog_cookie = {
            "Cookie": "ph_phc_demo_posthog=" + quote(json.dumps({"distinct_id": "browser-2"}))
        }
        print("GET /checkout ->", Client().get("/checkout", headers=posthog_cookie).status_code)
        for event in server.wait_for_events(6):
            print(
                json.dumps(
                    {k: event[k] for k in ("event", "distinct_id")}
                    | {
                        "properties": {
                            k: v
                            for k, v in event["properties"].items()
                            if k.startswith("$") and not k.startswith("$lib")
                        }
                    }
                )
            )


if __name__ == "__main__":
    if len(sys.argv) > 1:
        from django.core.management import execute_from_command_line

        execute_from_command_line(sys.argv)
    else:
        offline_demo()
