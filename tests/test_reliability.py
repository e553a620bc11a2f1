"""Nothing lost, nothing twice: exit, outages, full queues, forks, threads, asyncio."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import pytest

from analytics_posthog import Client
from analytics_posthog.errors import ClientClosed, ExitTimeout, QueueFull

pytestmark = pytest.mark.slow


def dual_client(posthog_server, segment_server, **kwargs):
    """Both legs on loopback, with a 50 ms upload window unless a test sets
    one: at the default 0.5 s each flush and shutdown would wait it out."""
    kwargs.setdefault("upload_interval", 0.05)
    return Client(
        "wk",
        host=segment_server.url,
        posthog_api_key="phc_test",
        posthog_host=posthog_server.url,
        **kwargs,
    )


def run_script(code, timeout=30):
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result, time.monotonic() - started


def in_a_child(body):
    """Run ``body`` in a forked child; whether it returned without raising."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def test_exit_without_flush_delivers_everything_to_both_legs(capture_server, segment_server):
    result, _ = run_script(
        f"""
        from analytics_posthog import Client
        client = Client("wk", host="{segment_server.url}", posthog_api_key="phc_test",
                        posthog_host="{capture_server.url}", upload_interval=30)
        for i in range(3000):
            client.track("u%d" % i, "Burst", {{"i": i}})
        """
    )
    assert result.returncode == 0, result.stderr
    assert capture_server.event_count == 3000
    assert segment_server.segment_count == 3000
    assert len({e["uuid"] for e in capture_server.events}) == 3000


def test_a_shut_down_client_is_freed_with_its_posthog_client(capture_server, segment_server):
    """A client made for one job (a Celery task, a script step) and shut down
    leaves nothing behind: no exit handler keeps it, or posthog's, alive."""
    client = dual_client(capture_server, segment_server)
    client.track("u1", "One job")
    client.shutdown()
    assert capture_server.event_count == 1 and segment_server.segment_count == 1
    refs = [
        weakref.ref(client),
        weakref.ref(client.delivery.legs[0].client),
        weakref.ref(client.delivery.legs[1].client),
    ]
    del client
    gc.collect()
    assert [ref() for ref in refs] == [None, None, None]


@pytest.mark.parametrize(
    "leg, outage", [("segment", "hang"), ("posthog", "hang"), ("posthog", "refuse")]
)
def test_exit_with_a_dead_leg_is_bounded_and_reports_the_loss(
    capture_server, segment_server, leg, outage
):
    dead = capture_server if leg == "posthog" else segment_server
    if outage == "hang":
        dead.hang(30, leg=leg)
    else:
        dead.refuse()
    result, _ = run_script(
        f"""
        import time
        from analytics_posthog import Client
        client = Client("wk", host="{segment_server.url}", posthog_api_key="phc_test",
                        posthog_host="{capture_server.url}", exit_timeout=1.0, timeout=30,
                        on_error=lambda error, batch: print("reported", type(error).__name__, len(batch)))
        for i in range(200):
            client.track("u1", "Before exit")
        print("exit starts", time.monotonic())
        """
    )
    ended = time.monotonic()
    delivered = {"posthog": capture_server.event_count, "segment": segment_server.segment_count}
    dead.restore()
    assert result.returncode == 0, result.stderr
    exit_started = float(
        next(
            line.split()[2] for line in result.stdout.splitlines() if line.startswith("exit starts")
        )
    )
    assert ended - exit_started < 1.0 + 0.8, (
        "exit must take exit_timeout and little more (took %.2f s)" % (ended - exit_started)
    )
    healthy = "posthog" if leg == "segment" else "segment"
    assert delivered == {leg: 0, healthy: 200}
    reported = sum(
        int(line.split()[2])
        for line in result.stdout.splitlines()
        if line.startswith("reported ExitTimeout")
    )
    in_flight = result.stderr.split(" message(s) were still in flight to %s" % leg)[0].split()[-1]
    assert reported > 0 and reported + int(in_flight if in_flight.isdigit() else 0) == 200


def test_outage_of_refused_connections_loses_nothing(capture_server):
    client = Client(
        posthog_api_key="phc_test", posthog_host=capture_server.url, upload_interval=0.1
    )
    capture_server.refuse(seconds=2.0)
    started = time.monotonic()
    for i in range(300):
        assert client.track("u1", "During outage", {"i": i})[0] is True
    assert time.monotonic() - started < 1.0, "calls must not wait for the outage"
    client.flush()
    assert sorted(
        e["properties"]["i"] for e in capture_server.wait_for_events(300, timeout=15)
    ) == list(range(300))
    stats = client.stats()["posthog"]
    assert stats.pop("retried") >= 1
    assert stats == {"queued": 0, "delivered": 300, "dropped": 0, "failed": 0, "placeholder_ids": 0}
    client.shutdown()


def test_5xx_outage_on_both_legs_loses_nothing(capture_server, segment_server):
    capture_server.fail(503, leg="posthog", seconds=1.5)
    segment_server.fail(503, leg="segment", seconds=1.5)
    client = dual_client(capture_server, segment_server, upload_interval=0.1)
    for i in range(100):
        client.track("u1", "During 503s", {"i": i})
    client.flush()
    assert capture_server.event_count == 100
    assert segment_server.segment_count == 100
    posthog_503s = sum(r.status == 503 for r in capture_server.requests)
    segment_503s = sum(r.status == 503 for r in segment_server.requests)
    assert posthog_503s > 0 and segment_503s > 0
    stats = client.stats()
    assert stats["posthog"]["retried"] == posthog_503s
    assert stats["segment"]["retried"] == segment_503s
    assert stats["posthog"]["failed"] == stats["segment"]["failed"] == 0
    client.shutdown()


def test_429_retry_after_is_honoured(capture_server):
    capture_server.fail(429, leg="posthog", times=1, retry_after=2)
    client = Client(
        posthog_api_key="phc_test", posthog_host=capture_server.url, upload_interval=0.05
    )
    started = time.monotonic()
    client.track("u1", "Rate limited")
    client.flush()
    waited = time.monotonic() - started
    assert [r.status for r in capture_server.requests] == [429, 200]
    assert capture_server.event_count == 1
    assert waited >= 1.9, "the retry must wait out Retry-After: 2"
    assert client.stats()["posthog"]["retried"] == 1
    client.shutdown()


def test_full_queue_drops_counts_reports_and_logs_once(capture_server, caplog):
    caplog.set_level(logging.WARNING, logger="analytics_posthog")
    capture_server.hang(2, leg="posthog")
    errors = []
    client = Client(
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        max_queue_size=10,
        on_error=lambda error, batch: errors.append((error, len(batch))),
    )
    started = time.monotonic()
    results = [client.track("u1", "Flood", {"i": i})[0] for i in range(500)]
    assert time.monotonic() - started < 1.0, "a full queue must not block the caller"
    dropped_at_call = results.count(False)
    capture_server.restore()
    client.flush()
    stats = client.stats()["posthog"]
    assert stats["dropped"] > 0
    assert stats["dropped"] + stats["delivered"] == 500
    assert capture_server.event_count == stats["delivered"]
    assert sum(n for error, n in errors if isinstance(error, QueueFull)) == stats["dropped"]
    assert dropped_at_call <= stats["dropped"]
    drop_lines = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drop_lines) == 1
    client.shutdown()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_child_delivers_its_own_and_nothing_twice(capture_server, segment_server):
    client = dual_client(capture_server, segment_server, upload_interval=1)
    for i in range(20):
        client.track("parent", "Before fork", {"i": i})
    assert capture_server.event_count == 0, "the parent's events must still be queued when it forks"

    def child():
        for i in range(30):
            client.track("child", "In child", {"i": i})
        client.flush()

    assert in_a_child(child)
    for i in range(10):
        client.track("parent", "After fork", {"i": i})
    client.flush()
    names = [e["event"] for e in capture_server.events]
    assert (names.count("Before fork"), names.count("In child"), names.count("After fork")) == (
        20,
        30,
        10,
    )
    seg_names = [m["event"] for m in segment_server.segment_messages]
    assert (
        seg_names.count("Before fork"),
        seg_names.count("In child"),
        seg_names.count("After fork"),
    ) == (20, 30, 10)
    client.shutdown()


def test_sixteen_threads_every_event_exactly_once_on_each_leg(capture_server, segment_server):
    client = dual_client(capture_server, segment_server, max_queue_size=100_000)
    threads, per_thread = 16, 5000

    def worker(n):
        for i in range(per_thread):
            assert client.track("t%d" % n, "Concurrent", {"i": i})[0]

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    client.flush()
    total = threads * per_thread
    assert capture_server.event_count == total
    assert segment_server.segment_count == total
    assert len({e["uuid"] for e in capture_server.events}) == total
    assert len({m["messageId"] for m in segment_server.segment_messages}) == total
    assert client.stats() == {
        "posthog": {
            "queued": 0,
            "delivered": total,
            "retried": 0,
            "dropped": 0,
            "failed": 0,
            "placeholder_ids": 0,
        },
        "segment": {"queued": 0, "delivered": total, "retried": 0, "dropped": 0, "failed": 0},
    }
    client.shutdown()


def test_calls_from_async_code_never_block_the_event_loop(capture_server):
    capture_server.hang(2, leg="posthog")
    client = Client(
        posthog_api_key="phc_test", posthog_host=capture_server.url, upload_interval=0.01
    )

    async def main():
        lags = []

        async def ticker():
            for _ in range(40):
                before = time.monotonic()
                await asyncio.sleep(0.005)
                lags.append(time.monotonic() - before - 0.005)

        async def caller():
            for i in range(400):
                client.track("u1", "From a coroutine", {"i": i})
                if i % 20 == 0:
                    await asyncio.sleep(0)

        await asyncio.gather(ticker(), caller())
        return max(lags)

    assert asyncio.run(main()) < 0.1
    capture_server.restore()
    client.flush()
    assert capture_server.event_count == 400
    client.shutdown()


def test_exit_timeout_error_type_is_exported():
    assert issubclass(ExitTimeout, Exception) and issubclass(QueueFull, Exception)


def test_backlog_stays_in_our_queue_while_every_leg_is_backed_up(
    capture_server, segment_server, monkeypatch
):
    import analytics_posthog._delivery.delivery

    monkeypatch.setattr(analytics_posthog._delivery.delivery, "LEG_WINDOW", 5)
    capture_server.hang(30, leg="posthog")
    segment_server.hang(30, leg="segment")
    client = dual_client(
        capture_server, segment_server, upload_size=5, upload_interval=0.05, max_queue_size=1000
    )
    for i in range(200):
        client.track("u1", "Held", {"i": i})
    time.sleep(0.5)
    assert client.delivery.dispatcher.pending > 150, "the backlog must be held once, in our queue"
    assert all(leg.pending <= 10 for leg in client.delivery.legs)
    capture_server.restore()
    segment_server.restore()
    client.flush()
    assert capture_server.event_count == 200
    assert segment_server.segment_count == 200
    client.shutdown()


def test_a_backed_up_leg_does_not_hold_back_the_other(capture_server, segment_server, monkeypatch):
    import analytics_posthog._delivery.delivery

    monkeypatch.setattr(analytics_posthog._delivery.delivery, "LEG_WINDOW", 5)
    segment_server.hang(30, leg="segment")
    client = dual_client(capture_server, segment_server, upload_size=5, upload_interval=0.05)
    for i in range(200):
        client.track("u1", "Flows", {"i": i})
    capture_server.wait_for_events(200, timeout=10)
    segment_server.restore()
    client.flush()
    assert segment_server.segment_count == 200
    client.shutdown()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_child_does_not_share_the_parents_connections(capture_server, segment_server):
    """Requests from the child never travel on a keep-alive connection the parent
    opened: two processes on one socket lose or repeat each other's batches."""
    client = dual_client(capture_server, segment_server)
    client.track("parent", "Before fork")
    client.flush()
    assert in_a_child(lambda: (client.track("child", "In child"), client.flush()))
    client.track("parent", "After fork")
    client.flush()
    for server in (capture_server, segment_server):
        peers = {"child": set(), "parent": set()}
        for request in server.requests:
            for item in request.body["batch"]:
                peers["child" if item["event"] == "In child" else "parent"].add(request.peer)
        assert peers["child"] and peers["parent"]
        assert peers["child"].isdisjoint(peers["parent"])
    client.shutdown()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.parametrize(
    "lock",
    [
        "analytics_posthog._default_client_lock",
        "analytics_posthog._patches.posthog._lock",
        "analytics_posthog._patches.segment._lock",
    ],
)
def test_a_child_forked_while_another_thread_holds_one_of_our_locks_is_not_stuck(
    capture_server, lock
):
    """A server forks workers while one of its threads makes the first call (and
    holds a lock that the child's own first call needs)."""
    module, name = lock.rsplit(".", 1)
    result, _ = run_script(
        f"""
        import importlib, os, threading, time
        import analytics_posthog as analytics
        analytics.posthog_api_key = "phc_test"
        analytics.posthog_host = "{capture_server.url}"
        held, release = threading.Event(), threading.Event()

        def hold():
            with getattr(importlib.import_module("{module}"), "{name}"):
                held.set()
                release.wait()

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait()
        pid = os.fork()
        if pid == 0:
            analytics.track("child", "In child")
            analytics.flush()
            os._exit(0)
        release.set()
        holder.join()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                print("child exit", os.waitstatus_to_exitcode(status))
                break
            time.sleep(0.01)
        else:
            os.kill(pid, 9)
            print("child stuck")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "child exit 0"
    assert [e["event"] for e in capture_server.wait_for_events(1)] == ["In child"]


def test_an_on_error_that_blocks_never_holds_up_a_call(capture_server):
    """on_error is the app's code (it may post to an error tracker): drops are
    reported from our thread, never from the call that was turned away."""
    capture_server.hang(30, leg="posthog")
    release = threading.Event()
    reported = []
    caller = threading.current_thread()

    def on_error(error, batch):
        reported.append((threading.current_thread(), type(error), len(batch)))
        if (
            threading.current_thread() is not caller
        ):  # on the caller, the test would hang instead of failing
            release.wait(30)

    client = Client(
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        max_queue_size=10,
        on_error=on_error,
    )
    results = [client.track("u1", "Flood", {"i": i})[0] for i in range(300)]
    dropped = results.count(False)
    assert dropped > 0
    assert client.stats()["posthog"]["dropped"] >= dropped
    release.set()
    capture_server.restore()
    client.flush()
    stats = client.stats()["posthog"]
    assert stats["dropped"] + stats["delivered"] == 300
    assert sum(n for _, kind, n in reported if kind is QueueFull) == stats["dropped"]
    assert caller not in {thread for thread, kind, _ in reported if kind is QueueFull}
    client.shutdown()


@pytest.mark.parametrize("sync_mode", [False, True])
def test_a_call_after_shutdown_is_refused_counted_and_reported(
    capture_server, segment_server, caplog, sync_mode
):
    caplog.set_level(logging.WARNING, logger="analytics_posthog")
    errors = []
    client = dual_client(
        capture_server,
        segment_server,
        sync_mode=sync_mode,
        on_error=lambda error, batch: errors.append((error, batch)),
    )
    client.track("u1", "Before shutdown")
    client.shutdown()
    success, msg = client.track("u1", "After shutdown")
    assert success is False and msg["event"] == "After shutdown"
    assert [(type(error), [m["event"] for m in batch]) for error, batch in errors] == [
        (ClientClosed, ["After shutdown"])
    ]
    assert {leg: counts["dropped"] for leg, counts in client.stats().items()} == {
        "posthog": 1,
        "segment": 1,
    }
    assert any("dropped 1 message" in r.getMessage() for r in caplog.records)
    flushed = threading.Thread(target=client.flush, daemon=True)
    flushed.start()
    flushed.join(10)
    assert not flushed.is_alive(), "flush() after shutdown must return"
    assert capture_server.event_count == 1 and segment_server.segment_count == 1
