"""The framework-free request context: how it is built from a request, and how it fills a Client call."""

from __future__ import annotations

import subprocess
import sys

import pytest

from analytics_posthog import Client
from analytics_posthog._context import request as request_context
from analytics_posthog._context.request import RequestContext


def test_build_describes_the_page():
    headers = {
        "Referer": "https://a.example/",
        "X-POSTHOG-SESSION-ID": "s1",
        "X-POSTHOG-DISTINCT-ID": "d1",
    }
    context = request_context.build(
        peer="203.0.113.1",
        header=headers.get,
        url="https://shop.example/p?q=1",
        path="/p",
        query="q=1",
    )
    assert context == RequestContext(
        context={
            "ip": "203.0.113.1",
            "page": {
                "url": "https://shop.example/p?q=1",
                "path": "/p",
                "search": "?q=1",
                "referrer": "https://a.example/",
            },
            "sessionId": "s1",
        },
        anonymous_id="d1",
    )


REQUEST = RequestContext(
    context={"ip": "203.0.113.1", "page": {"url": "https://s.example/p", "path": "/p"}},
    user_id=None,
    anonymous_id="d1",
)


def test_client_call_inside_a_request():
    client = Client(send=False)
    token = request_context.activate(REQUEST)
    try:
        _, msg = client.track(event="No ids")  # would raise outside a request
        _, own = client.track("u1", "Own", context={"ip": "198.51.100.1", "page": {"title": "T"}})
        _, alias = client.alias("a", "b")
        with pytest.raises(AssertionError):
            client.track(event="Bad context", context="not a dict")
    finally:
        request_context.reset(token)
    assert (msg["userId"], msg["anonymousId"]) == (None, "d1")
    assert (
        msg["context"]["ip"] == "203.0.113.1" and msg["context"]["page"] == REQUEST.context["page"]
    )
    assert (own["userId"], own["anonymousId"]) == ("u1", None)
    assert own["context"]["ip"] == "198.51.100.1"
    assert own["context"]["page"] == {"url": "https://s.example/p", "path": "/p", "title": "T"}
    assert alias["context"]["ip"] == "203.0.113.1"
    assert REQUEST.context["page"] == {
        "url": "https://s.example/p",
        "path": "/p",
    }  # not modified by a call


BIG_REQUEST = RequestContext(
    context={"page": {"url": "https://s.example/" + "p" * 2000}, "userAgent": "u" * 1000},
    anonymous_id="d1",
)


def test_a_call_over_the_size_limit_only_with_the_request_context_is_made_without_it():
    client = Client(send=False)
    token = request_context.activate(BIG_REQUEST)
    try:
        _, fits = client.track(event="Fits", properties={"blob": "x" * 30_000})
        _, alias = client.alias("a", "b", context={"blob": "x" * 30_000})
        with pytest.raises(
            RuntimeError, match="Message exceeds"
        ):  # the caller's own arguments: Segment's error
            client.track(event="Too big", properties={"blob": "x" * 33_000})
        with pytest.raises(AssertionError):
            client.track(
                event="Bad context", context="not a dict", properties={"blob": "x" * 33_000}
            )
    finally:
        request_context.reset(token)
    assert fits["context"] == {"requestOmitted": True, "library": fits["context"]["library"]}
    assert fits["anonymousId"] == "d1"  # the request's id stays
    assert alias["context"]["requestOmitted"] is True and "page" not in alias["context"]


def test_request_user_wins_over_the_browser_id():
    assert RequestContext(user_id="7", anonymous_id="d1").fill(None, None, None)[:2] == ("7", None)
    assert RequestContext(user_id="7", anonymous_id="d1").fill(None, "mine", None)[:2] == (
        None,
        "mine",
    )


def test_core_imports_no_framework():
    code = "import sys, analytics_posthog, analytics_posthog.integrations.asgi; print([m for m in ('django', 'flask', 'starlette') if m in sys.modules])"
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "[]"
    )
