"""The framework-free request context: header rules, and how it fills a Client call."""

from __future__ import annotations

import subprocess
import sys

import pytest

from analytics_posthog import Client, request_context
from analytics_posthog.request_context import RequestContext, client_ip, first_language, parse_trust, sanitise

PEER = "10.0.0.2"


@pytest.mark.parametrize(
    "trusted, forwarded_for, real_ip, expected",
    [
        (None, "6.6.6.6", "6.6.6.7", PEER),  # not behind a proxy: headers are anyone's to send
        (1, "6.6.6.6, 203.0.113.7", None, "203.0.113.7"),
        (2, "6.6.6.6, 203.0.113.7, 10.0.0.9", None, "203.0.113.7"),
        (2, "203.0.113.7", None, PEER),  # fewer hops than configured: nothing to trust
        (1, None, "203.0.113.8", "203.0.113.8"),
        (1, "not-an-ip", None, PEER),
        (1, "[2001:db8::1]:443", None, "2001:db8::1"),
        (1, "203.0.113.7:5555", None, "203.0.113.7"),
        ("10.0.0.0/8", "6.6.6.6, 203.0.113.7, 10.0.0.9", None, "203.0.113.7"),
        ("10.0.0.0/8", "10.0.0.3, 10.0.0.9", None, "10.0.0.3"),
        ("192.168.0.1", "6.6.6.6", None, PEER),  # the peer is not a trusted proxy
    ],
)
def test_client_ip(trusted, forwarded_for, real_ip, expected):
    assert client_ip(PEER, forwarded_for, real_ip, parse_trust(trusted)) == expected


def test_parse_trust():
    assert parse_trust("2") == 2 and parse_trust(False) == 0
    assert [str(n) for n in parse_trust("127.0.0.1, 10.0.0.0/8")] == ["127.0.0.1/32", "10.0.0.0/8"]
    with pytest.raises(ValueError):
        parse_trust(True)
    with pytest.raises(ValueError):
        parse_trust("proxy.internal")


def test_header_sanitising():
    assert sanitise(" id\x00\x1b[31m\n ", 200) == "id[31m"
    assert sanitise("x" * 500, 200) == "x" * 200
    assert sanitise("\x00", 200) is None
    # Limits are bytes of JSON as sent (ensure_ascii): 6 per BMP character, 12 beyond it, 2 for a quote.
    assert sanitise("é" * 100, 200) == "é" * 33
    assert sanitise("\U0001f600" * 100, 200) == "\U0001f600" * 16
    assert sanitise('"' * 300, 200) == '"' * 100
    assert sanitise("a\udc80b\ud800", 200) == "ab"  # lone surrogates: no encoder takes them
    assert first_language("fr-CH, fr;q=0.9") == "fr-CH"
    assert first_language("*") is None and first_language("<script>") is None


def test_build_describes_the_page():
    headers = {"Referer": "https://a.example/", "X-POSTHOG-SESSION-ID": "s1", "X-POSTHOG-DISTINCT-ID": "d1"}
    context = request_context.build(peer="203.0.113.1", header=headers.get, url="https://shop.example/p?q=1", path="/p", query="q=1")
    assert context == RequestContext(
        context={
            "ip": "203.0.113.1",
            "page": {"url": "https://shop.example/p?q=1", "path": "/p", "search": "?q=1", "referrer": "https://a.example/"},
            "sessionId": "s1",
        },
        anonymous_id="d1",
    )


REQUEST = RequestContext(context={"ip": "203.0.113.1", "page": {"url": "https://s.example/p", "path": "/p"}}, user_id=None, anonymous_id="d1")


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
    assert msg["context"]["ip"] == "203.0.113.1" and msg["context"]["page"] == REQUEST.context["page"]
    assert (own["userId"], own["anonymousId"]) == ("u1", None)
    assert own["context"]["ip"] == "198.51.100.1"
    assert own["context"]["page"] == {"url": "https://s.example/p", "path": "/p", "title": "T"}
    assert alias["context"]["ip"] == "203.0.113.1"
    assert REQUEST.context["page"] == {"url": "https://s.example/p", "path": "/p"}  # not modified by a call


BIG_REQUEST = RequestContext(context={"page": {"url": "https://s.example/" + "p" * 2000}, "userAgent": "u" * 1000}, anonymous_id="d1")


def test_a_call_over_the_size_limit_only_with_the_request_context_is_made_without_it():
    client = Client(send=False)
    token = request_context.activate(BIG_REQUEST)
    try:
        _, fits = client.track(event="Fits", properties={"blob": "x" * 30_000})
        _, alias = client.alias("a", "b", context={"blob": "x" * 30_000})
        with pytest.raises(RuntimeError, match="Message exceeds"):  # the caller's own arguments: Segment's error
            client.track(event="Too big", properties={"blob": "x" * 33_000})
        with pytest.raises(AssertionError):
            client.track(event="Bad context", context="not a dict", properties={"blob": "x" * 33_000})
    finally:
        request_context.reset(token)
    assert fits["context"] == {"requestOmitted": True, "library": fits["context"]["library"]}
    assert fits["anonymousId"] == "d1"  # the request's id stays
    assert alias["context"]["requestOmitted"] is True and "page" not in alias["context"]


def test_request_user_wins_over_the_browser_id():
    assert RequestContext(user_id="7", anonymous_id="d1").fill(None, None, None)[:2] == ("7", None)
    assert RequestContext(user_id="7", anonymous_id="d1").fill(None, "mine", None)[:2] == (None, "mine")


def test_core_imports_no_framework():
    code = "import sys, analytics_posthog, analytics_posthog.integrations.asgi; print([m for m in ('django', 'flask', 'starlette') if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
