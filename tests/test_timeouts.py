"""``flush(timeout)`` and ``shutdown(timeout)``: a shutdown hook can bound
them against an endpoint that does not answer, and learns whether
everything was delivered."""

from __future__ import annotations

import time

import analytics_posthog
from analytics_posthog import Client


def client_for(capture_server, segment_server, told: list) -> Client:
    return Client(
        "wk",
        host=segment_server.url,
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        on_error=lambda error, batch: told.append(str(error)),
    )


def test_flush_says_whether_everything_was_delivered(capture_server, segment_server):
    client = client_for(capture_server, segment_server, [])
    client.track("u", "Delivered")
    assert client.flush() is True
    capture_server.hang(30, leg="posthog")
    client.track("u", "Held")
    started = time.monotonic()
    assert client.flush(timeout=0.5) is False
    # Bounded by the timeout, not the 30 s hang (a wide margin for a loaded machine).
    assert time.monotonic() - started < 10
    capture_server.restore()
    assert client.flush(timeout=10) is True
    client.shutdown()


def test_shutdown_with_a_timeout_is_bounded_and_counts_what_is_left(capture_server):
    told: list = []
    client = Client(
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        upload_size=2,
        on_error=lambda error, batch: told.extend(str(error) for _ in batch),
    )
    capture_server.hang(30, leg="posthog")
    for n in range(5):
        client.track("u", "Held", {"n": n})
    started = time.monotonic()
    assert client.shutdown(timeout=0.5) is False
    assert time.monotonic() - started < 10
    stats = client.stats()["posthog"]
    capture_server.restore()
    # One batch of 2 was on the wire (its fate unknown); the 3 still queued
    # were taken back, counted and told, not lost silently.
    assert (stats["queued"], stats["dropped"]) == (2, 3), stats
    assert told == ["the shutdown deadline came before the posthog leg delivered"] * 3


def test_the_module_functions_take_the_timeout(capture_server, segment_server, monkeypatch):
    monkeypatch.setattr(analytics_posthog, "default_client", None)
    monkeypatch.setattr(analytics_posthog, "posthog_api_key", "phc_test")
    monkeypatch.setattr(analytics_posthog, "posthog_host", capture_server.url)
    analytics_posthog.track("u", "Module")
    assert analytics_posthog.flush(timeout=5) is True
    assert analytics_posthog.shutdown(timeout=5) is True
    assert [e["event"] for e in capture_server.events] == ["Module"]
    monkeypatch.setattr(analytics_posthog, "default_client", None)
