"""A one-file Django project whose views call Segment's API; the middleware adds each request's context.

    python examples/django_app/app.py                  # offline: one request against a loopback capture endpoint
    POSTHOG_API_KEY=phc_... python examples/django_app/app.py runserver
"""

from __future__ import annotations

import json
import os
import sys

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path

import analytics_posthog as analytics

settings.configure(
    DEBUG=True,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    SECRET_KEY="example-only",
    MIDDLEWARE=["analytics_posthog.integrations.django.AnalyticsMiddleware"],
    # Keys from the environment (POSTHOG_API_KEY, SEGMENT_WRITE_KEY) or here ("API_KEY": "phc_...").
    ANALYTICS_POSTHOG={"PAGE_CALLS": True, "TRUSTED_PROXIES": os.environ.get("TRUSTED_PROXIES", 0)},
)
django.setup()


def checkout(request: HttpRequest) -> HttpResponse:
    analytics.track(event="Checkout Started", properties={"items": 2})  # no ids: the browser's come from the request
    return HttpResponse("<html><body>Checkout</body></html>")


urlpatterns = [path("checkout", checkout)]


def offline_demo() -> None:
    from django.test import Client

    from analytics_posthog.testing import CaptureServer

    with CaptureServer() as server:
        analytics.posthog_api_key, analytics.posthog_host, analytics.sync_mode = "phc_demo", server.url, True
        Client().get(
            "/checkout?step=1",
            headers={"User-Agent": "Mozilla/5.0 (demo)", "X-POSTHOG-DISTINCT-ID": "browser-1", "X-POSTHOG-SESSION-ID": "session-1"},
        )
        for event in server.wait_for_events(2):
            print(json.dumps({k: event[k] for k in ("event", "distinct_id")} | {"properties": {k: v for k, v in event["properties"].items() if k.startswith("$") and not k.startswith("$lib")}}, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        from django.core.management import execute_from_command_line

        execute_from_command_line(sys.argv)
    else:
        offline_demo()
