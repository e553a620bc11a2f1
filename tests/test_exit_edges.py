"""Calls after the exit routine, a server's shutdown delivery, and an
``on_error`` that flushes (issue 19): nothing accepted and then lost, no
client left broken, no deadlock."""

from __future__ import annotations

import json
import threading
import time

import pytest
from processes import run_script

import analytics_posthog
from analytics_posthog import Client, integrations

# Each test starts a Python process, or waits out an endpoint slower than exit_timeout.
pytestmark = pytest.mark.slow

#: An exit handler registered before the client exists runs after ours (atexit
#: is last-in, first-out): its call comes once our exit routine has run.
LATE_CALL = """
import atexit, json, os, sys, time
import analytics_posthog as analytics


told = []

def worker_stopped():
    time.sleep(float(sys.argv[1]))
    accepted, _ = analytics.track("worker", "Worker stopped")
    analytics.flush()
    print(json.dumps({"accepted": accepted, "told": told, "stats": analytics.default_client.stats()}))

atexit.register(worker_stopped)
analytics.write_key = "wk"
analytics.host = os.environ["SEGMENT_HOST"]
analytics.posthog_api_key = "phc_test"
analytics.posthog_host = os.environ["POSTHOG_HOST"]
analytics.exit_timeout = 1.5
analytics.on_error = lambda error, batch: told.append(str(error))
analytics.track("worker", "Worker started")
"""


def test_a_call_after_the_exit_routine_is_delivered_within_its_deadline(
    tmp_path, capture_server, segment_server
):
    done = run_script(tmp_path / "late.py", LATE_CALL, ["0"], capture_server, segment_server)
    result = json.loads(done.stdout)
    assert result["accepted"] is True and result["told"] == [], result
    for leg in ("posthog", "segment"):
        assert result["stats"][leg]["dropped"] == 0, result
    names = sorted(e["event"] for e in capture_server.events)
    assert names == ["Worker started", "Worker stopped"]
    assert sorted(m["event"] for m in segment_server.segment_messages) == names


def test_a_call_after_the_exit_deadline_is_refused_counted_and_told(
    tmp_path, capture_server, segment_server
):
    done = run_script(tmp_path / "late.py", LATE_CALL, ["1.6"], capture_server, segment_server)
    result = json.loads(done.stdout)
    assert result["accepted"] is False, result
    assert result["told"] == ["the call came after the exit routine had run out of time"]
    for leg in ("posthog", "segment"):
        assert result["stats"][leg]["dropped"] == 1, result
    assert "after the exit routine had run out of time" in done.stderr
    assert [e["event"] for e in capture_server.events] == ["Worker started"]


@pytest.fixture
def default_client_settings(capture_server, segment_server):
    """The module's settings pointed at both loopback legs, restored after the test."""
    saved = {
        name: getattr(analytics_posthog, name)
        for name in (
            "write_key",
            "host",
            "posthog_api_key",
            "posthog_host",
            "exit_timeout",
            "_redirected_to",
        )
    }
    # Each leg has a server of its own here: the plugin's redirect steps aside.
    analytics_posthog._redirected_to = None
    analytics_posthog.default_client = None
    analytics_posthog.write_key, analytics_posthog.host = "wk", segment_server.url
    analytics_posthog.posthog_api_key = "phc_test"
    analytics_posthog.posthog_host = capture_server.url
    analytics_posthog.exit_timeout = 0.5
    yield
    if analytics_posthog.default_client is not None:
        analytics_posthog.default_client.shutdown()
    analytics_posthog.default_client = None
    for name, value in saved.items():
        setattr(analytics_posthog, name, value)


def test_the_client_keeps_delivering_after_a_shutdown_slower_than_exit_timeout(
    capture_server, segment_server, default_client_settings
):
    """A server stops while PostHog answers slower than ``exit_timeout``; the
    same process starts a server again (tests, reloads): its calls arrive."""
    capture_server.hang(1.0, leg="posthog", times=1)
    analytics_posthog.track("u", "Before the stop")
    integrations.deliver_at_shutdown()
    analytics_posthog.track("u", "After the restart")
    started = time.monotonic()
    analytics_posthog.flush()
    assert time.monotonic() - started < 10
    assert "After the restart" in {e["event"] for e in capture_server.wait_for_events(1)}
    segment_names = {m["event"] for m in segment_server.wait_for_segment(2)}
    assert segment_names == {"Before the stop", "After the restart"}


@pytest.mark.parametrize("operation", ["flush", "shutdown"])
def test_an_on_error_that_flushes_or_shuts_down_does_not_deadlock(
    capture_server, segment_server, operation
):
    """The error is reported from our dispatcher's thread (calls turned away
    by a full queue while PostHog is slow), and ``on_error`` calls back into
    the client, whose flush waits for that very thread."""
    called = threading.Event()
    client: Client

    def on_error(error, batch):
        getattr(client, operation)()
        called.set()

    client = Client(
        "wk",
        host=segment_server.url,
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        on_error=on_error,
        max_queue_size=2,
    )
    capture_server.hang(1.0, leg="posthog", times=1)
    for n in range(50):
        client.track("u", "Burst", {"n": n})
    assert called.wait(10)
    if operation == "flush":
        client.flush()  # the burst drained (the queue holds two), so "After" finds room
        accepted, _ = client.track("u", "After")
        assert accepted is True
        assert client.flush() is True
        assert "After" in {e["event"] for e in capture_server.events}
    client.shutdown()
