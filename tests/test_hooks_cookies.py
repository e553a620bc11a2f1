"""Each hook (Django, Flask, ASGI) takes the visitor from the browser's cookies when no
header names one, through the frameworks' own test clients, checked on both legs' wire.

Order: explicit ids > X-POSTHOG-DISTINCT-ID header > logged-in user > posthog-js cookie > analytics.js cookies.
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest
import test_hooks_asgi as asgi_tests
import test_hooks_flask as flask_tests
from django.test import Client as DjangoClient
from django.test import override_settings
from flask import request as flask_request


def posthog_cookie(distinct_id, session_id):
    now = time.time() * 1000
    value = {
        "distinct_id": distinct_id,
        "$sesid": [now - 1000, session_id, now - 60_000],
        "$device_id": "dev",
    }
    return "ph_phc_test_posthog=" + quote(json.dumps(value), safe="")


AJS = "ajs_user_id=%22ajs-user%22; ajs_anonymous_id=%22ajs-anon%22"
PH = posthog_cookie("ph-anon", "ph-session")

#: (event name, request headers) -> (PostHog distinct id, Segment userId, Segment anonymousId, session)
CASES = [
    ("Both Cookies", {"Cookie": AJS + "; " + PH}, ("ph-anon", None, "ph-anon", "ph-session")),
    ("Analytics Js", {"Cookie": "theme=dark; " + AJS}, ("ajs-user", "ajs-user", None, None)),
    (
        "Header Wins",
        {"Cookie": PH, "X-POSTHOG-DISTINCT-ID": "header-anon"},
        ("header-anon", None, "header-anon", None),
    ),
    ("User Wins", {"Cookie": PH, "X-Test-User": "7"}, ("7", "7", None, "ph-session")),
    (
        "Header Over User",
        {"X-POSTHOG-DISTINCT-ID": "header-anon", "X-Test-User": "7"},
        ("header-anon", None, "header-anon", None),
    ),
    (
        "Hostile Ph",
        {"Cookie": "ph_phc_test_posthog=%7B%22distinct_id%22%3A" + "[" * 2000 + "; " + AJS},
        ("ajs-user", "ajs-user", None, None),
    ),
]


def send_django(legs, name, headers):
    with override_settings(ANALYTICS_POSTHOG={**legs.settings, "CAPTURE_USER_ID": True}):
        return DjangoClient().get("/event/" + name, headers=headers).status_code


def send_flask(legs, name, headers):
    app = flask_tests.make_app(
        legs, CAPTURE_USER_ID=lambda: flask_request.headers.get("X-Test-User")
    )
    # The browser's Cookie header as sent (the client's own cookie jar would replace it).
    return app.test_client(use_cookies=False).get("/event/" + name, headers=headers).status_code


def send_asgi(legs, name, headers):
    return asgi_tests.request(
        asgi_tests.make_app(legs, capture_user_id=True), "/event/" + name, headers
    ).status_code


@pytest.mark.parametrize("send", [send_django, send_flask, send_asgi])
def test_cookies_name_the_visitor_in_the_documented_order(legs, send):
    for name, headers, _ in CASES:
        assert send(legs, name.replace(" ", "%20"), headers) == 200
    events = {e["event"]: e for e in legs.posthog.wait_for_events(len(CASES))}
    messages = {m["event"]: m for m in legs.segment.wait_for_segment(len(CASES))}
    for name, _, (distinct_id, user_id, anonymous_id, session) in CASES:
        event, message = events[name], messages[name]
        assert event["distinct_id"] == distinct_id, name
        assert (message["userId"], message["anonymousId"]) == (user_id, anonymous_id), name
        assert (
            event["properties"].get("$session_id") == message["context"].get("sessionId") == session
        ), name
