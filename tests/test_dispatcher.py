"""The dispatcher's timing: a call finds it asleep and wakes it, once per burst."""

from __future__ import annotations

import threading
import time

from analytics_posthog._delivery import dispatcher


def test_a_call_wakes_an_idle_dispatcher_instead_of_waiting_for_its_poll(monkeypatch):
    monkeypatch.setattr(dispatcher, "IDLE_POLL", 60.0)
    delivered = []
    arrived = threading.Semaphore(0)

    def deliver(msg):
        delivered.append(msg)
        arrived.release()

    queue = dispatcher.Dispatcher(deliver, 100, lambda urgent: True, lambda: None)
    try:
        for burst in range(3):
            queue.put({"n": burst})
            # Without the wake, the second and third bursts would wait for the 60 s poll.
            assert arrived.acquire(timeout=10)
            deadline = time.monotonic() + 10
            while not queue._idle and time.monotonic() < deadline:
                time.sleep(0.001)
            assert queue._idle
        assert delivered == [{"n": 0}, {"n": 1}, {"n": 2}]
    finally:
        queue.stop(10)


def test_calls_in_a_burst_wake_it_at_most_once(monkeypatch):
    monkeypatch.setattr(dispatcher, "QUIET", 60.0)
    queue = dispatcher.Dispatcher(lambda msg: None, 1000, lambda urgent: True, lambda: None)
    wakes = []
    original_set = queue._wake.set
    try:
        queue.put({"n": -1})
        deadline = time.monotonic() + 10
        while queue._thread is None and time.monotonic() < deadline:
            time.sleep(0.001)
        queue._wake.set = lambda: (wakes.append(1), original_set())[1]  # type: ignore[method-assign]
        for n in range(200):
            queue.put({"n": n})
        # The worker is waiting for the app to go quiet (60 s here): it is not idle.
        assert wakes == []
        assert queue.pending == 201
    finally:
        queue._wake.set = original_set  # type: ignore[method-assign]
        queue.stop(10)


def test_a_stopped_dispatcher_takes_nothing_more():
    delivered = []
    queue = dispatcher.Dispatcher(delivered.append, 100, lambda urgent: True, lambda: None)
    assert queue.put({"n": 1})
    queue.stop(10)
    assert queue.put({"n": 2}) is False
    assert delivered == [{"n": 1}] and queue.pending == 0 and queue._thread is None


def test_flush_waits_for_a_message_whose_call_has_not_started_the_worker_yet():
    delivered = []
    queue = dispatcher.Dispatcher(delivered.append, 100, lambda urgent: True, lambda: None)
    caller = threading.current_thread()
    release = threading.Event()
    original_start = queue._start

    def start_later():
        # The caller's thread stalls between queueing and starting the worker.
        if threading.current_thread() is not caller:
            release.wait(10)
        original_start()

    queue._start = start_later  # type: ignore[method-assign]
    other = threading.Thread(target=queue.put, args=({"n": 1},))
    other.start()
    try:
        deadline = time.monotonic() + 10
        while not queue._messages and time.monotonic() < deadline:
            time.sleep(0.001)
        assert queue.flush(10)
        assert delivered == [{"n": 1}]
    finally:
        release.set()
        other.join(10)
        queue.stop(10)


def test_a_queue_emptied_at_exit_under_the_worker_does_not_kill_it(monkeypatch):
    """At exit, discard() may empty the queue between the worker's look and its take."""
    monkeypatch.setattr(dispatcher, "QUIET", 0.0)
    delivered = []
    discarded = []
    all_queued, emptied = threading.Event(), threading.Event()

    def ready(urgent):
        if not emptied.is_set():
            all_queued.wait(10)
            discarded.extend(queue.discard())
            emptied.set()
        return True

    queue = dispatcher.Dispatcher(delivered.append, 100, ready, lambda: None)
    try:
        for n in range(3):
            queue.put({"n": n})
        all_queued.set()
        assert emptied.wait(10)
        assert queue.flush(10)
        assert (
            discarded == [{"n": 0}, {"n": 1}, {"n": 2}] and delivered == [] and queue.pending == 0
        )
        queue.put({"n": 3})
        assert queue.flush(10)
        assert delivered == [{"n": 3}]
    finally:
        queue.stop(10)
