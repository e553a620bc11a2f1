"""Retries: posthog's schedule gets Segment's jitter, and every retry is counted per leg."""

from __future__ import annotations

import time

import pytest

from analytics_posthog import Client
from analytics_posthog._delivery import retries


@pytest.mark.parametrize("attempt", range(9))
def test_jitter_adds_up_to_a_tenth_of_posthogs_wait(attempt):
    posthog_wait = min(2**attempt, 30)
    samples = [retries.jitter(attempt) for _ in range(500)]
    assert all(0 <= s <= retries.JITTER * posthog_wait for s in samples)
    assert max(samples) - min(samples) > 0.8 * retries.JITTER * posthog_wait, (
        "the waits must spread out"
    )


def test_posthog_retries_wait_posthogs_schedule_plus_the_jitter(capture_server, monkeypatch):
    monkeypatch.setattr(retries, "jitter", lambda attempt, cap: 1.5)
    capture_server.fail(503, leg="posthog", times=1)
    client = Client(
        posthog_api_key="phc_test", posthog_host=capture_server.url, upload_interval=0.05
    )
    started = time.monotonic()
    client.track("u1", "Retried once")
    client.flush()
    waited = time.monotonic() - started
    assert [r.status for r in capture_server.requests] == [503, 200]
    assert waited >= 2.4, "posthog's 1 s wait before the first retry, plus the 1.5 s of jitter"
    assert client.stats()["posthog"]["retried"] == 1
    client.shutdown()


def test_a_retry_is_counted_for_the_client_that_made_it(capture_server):
    capture_server.fail(503, leg="posthog", times=1)
    retrying = Client(
        posthog_api_key="phc_test", posthog_host=capture_server.url, upload_interval=0.05
    )
    quiet = Client(
        posthog_api_key="phc_test", posthog_host=capture_server.url, upload_interval=0.05
    )
    retrying.track("u1", "Retried once")
    retrying.flush()
    quiet.track("u1", "First try")
    quiet.flush()
    assert capture_server.event_count == 2
    assert retrying.stats()["posthog"]["retried"] == 1
    assert quiet.stats()["posthog"]["retried"] == 0
    retrying.shutdown()
    quiet.shutdown()
