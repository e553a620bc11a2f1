"""Celery: tasks enqueued in a hooked Flask request run as its visitor, in a real
prefork worker (kombu's filesystem broker), and its children deliver
everything when the worker is stopped warm (SIGTERM) or cold (SIGQUIT)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import posthog
import pytest
from flask import Flask, request

from analytics_posthog import Client
from analytics_posthog.integrations.flask import Analytics

pytestmark = pytest.mark.slow

pytest.importorskip("celery")

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
BROWSER = {"X-POSTHOG-DISTINCT-ID": "browser-anon-7", "X-POSTHOG-SESSION-ID": "session-7"}


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """One broker folder for the module: the producer's Celery app reads it once, at import."""
    folder = tmp_path_factory.mktemp("broker")
    os.environ["CELERY_TEST_BROKER"] = str(folder)
    sys.path.insert(0, str(TESTS))
    import celery_tasks

    yield folder, celery_tasks
    sys.path.remove(str(TESTS))
    os.environ.pop("CELERY_TEST_BROKER")


@pytest.fixture
def worker(broker, legs, tmp_path):
    folder, _ = broker
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("POSTHOG_", "SEGMENT_"))},
        "CELERY_TEST_WORKER": "1",
        "PYTHONFAULTHANDLER": "1",
        "CELERY_TEST_POSTHOG": legs.posthog.url,
        "CELERY_TEST_SEGMENT": legs.segment.url,
        "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)]),
    }
    log = open(tmp_path / "worker.log", "w+")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celery_tasks",
            "worker",
            "--pool=prefork",
            "--concurrency=2",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=TESTS,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield SimpleNamespace(process=process, folder=folder, log=log)
    if process.poll() is None:
        process.kill()
        process.wait()
    log.close()


def producer(legs, tasks):
    app = Flask(__name__)
    app.config.update(
        {
            "ANALYTICS_POSTHOG_" + k: v
            for k, v in {
                **legs.settings,
                "CAPTURE_USER_ID": lambda: request.headers.get("X-Test-User"),
            }.items()
        }
    )
    Analytics(app)

    @app.get("/enqueue/<int:n>")
    def enqueue(n):
        tasks.work.delay(n)
        return "queued"

    return app.test_client()


def wait_for(worker, *marks, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not all((worker.folder / mark).exists() for mark in marks):
        assert worker.process.poll() is None, _log(worker)
        assert time.monotonic() < deadline, "tasks did not run: " + _log(worker)
        time.sleep(0.05)


def accepted(app, name, timeout=10.0):
    """Waits until the worker's main process has taken in the child's
    acknowledgement of task ``name``: only a task it knows as active is cut
    short by a cold shutdown; one still unacknowledged there runs to its end
    (Celery's own race, not ours), and the worker would wait for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.inspect(timeout=0.5).active() or {}
        if any(task["name"] == name for tasks in replies.values() for task in tasks):
            return
    pytest.fail("the worker never reported %s as active" % name)


def stop(worker, signum):
    worker.process.send_signal(signum)
    try:
        code = worker.process.wait(15)
    except subprocess.TimeoutExpired:
        _dump_stacks(worker)
        pytest.fail("the worker did not exit within 15 s of %s:\n%s" % (signum.name, _log(worker)))
    assert code == 0 or signum == signal.SIGQUIT, _log(worker)


def _dump_stacks(worker):
    """faulthandler (PYTHONFAULTHANDLER in the worker's environment) prints each
    stuck process's threads to the log on SIGABRT."""
    for pid in [worker.process.pid, *_children(worker.process.pid)]:
        try:
            os.kill(pid, signal.SIGABRT)
        except ProcessLookupError:
            pass
    time.sleep(1)


def _children(pid):
    try:
        return [
            int(child)
            for child in Path("/proc/%d/task/%d/children" % (pid, pid)).read_text().split()
        ]
    except OSError:
        return []


def _log(worker):
    worker.log.seek(0)
    return worker.log.read()[-12000:]


def by_n(items, key):
    return {(item.get("event"), key(item)): item for item in items}


def test_tasks_run_as_the_requests_visitor_and_children_deliver_at_warm_shutdown(
    broker, worker, legs
):
    folder, tasks = broker
    client = producer(legs, tasks)
    assert client.get("/enqueue/1", headers=BROWSER).data == b"queued"
    assert (
        client.get(
            "/enqueue/2", headers={"X-POSTHOG-SESSION-ID": "session-7", "X-Test-User": "42"}
        ).data
        == b"queued"
    )
    with posthog.new_context(capture_exceptions=False):
        posthog.identify_context("posthog-context-user")
        posthog.set_context_session("posthog-session")
        tasks.work.delay(3)
    wait_for(worker, "ran-1", "ran-2", "ran-3")
    assert legs.posthog.event_count == 0  # held in the children until they exit
    stop(worker, signal.SIGTERM)

    events = by_n(
        legs.posthog.wait_for_events(12),
        lambda e: e["properties"].get("n", e["properties"].get("$set", {}).get("last_task")),
    )
    messages = by_n(
        legs.segment.wait_for_segment(9),
        lambda m: m.get("properties", m.get("traits"))[
            "n" if m["type"] == "track" else "last_task"
        ],
    )
    assert len(events) == 12 and len(messages) == 9
    for n, distinct_id, session, segment_ids in (
        (1, "browser-anon-7", "session-7", (None, "browser-anon-7")),
        (2, "42", "session-7", ("42", None)),
        (3, "posthog-context-user", "posthog-session", (None, "posthog-context-user")),
    ):
        ran, identified = events[("Task Ran", n)], events[("$set" if n != 2 else "$identify", n)]
        assert ran["distinct_id"] == identified["distinct_id"] == distinct_id
        assert (
            ran["properties"]["$session_id"] == identified["properties"]["$session_id"] == session
        )
        for kind in ("Task Ran", None):
            message = messages[(kind, n)]
            assert (message["userId"], message["anonymousId"]) == segment_ids
            assert message["context"]["sessionId"] == session
        assert (
            events[("Explicit", n)]["distinct_id"]
            == messages[("Explicit", n)]["userId"]
            == "explicit-user"
        )
        own = events[("Posthog Own", n)]  # posthog's own integration read our headers in the worker
        assert own["distinct_id"] == distinct_id and own["properties"]["$session_id"] == session
        assert (
            ran["properties"]["celery_task_name"] == "celery_tasks.work"
        )  # and tagged the task's context


def test_cold_shutdown_delivers_what_the_children_queued(broker, worker, legs):
    _, tasks = broker
    client = producer(legs, tasks)
    client.get("/enqueue/10", headers=BROWSER)
    tasks.hang.delay()
    wait_for(worker, "ran-10", "ran-hang")
    accepted(tasks.app, "celery_tasks.hang")
    assert legs.posthog.event_count == 0
    stop(worker, signal.SIGQUIT)
    events = {e["event"] for e in legs.posthog.wait_for_events(5)}
    messages = legs.segment.wait_for_segment(4)
    assert events == {"Task Ran", "$set", "Explicit", "Posthog Own", "Hung"}
    assert {m.get("event") for m in messages} == {"Task Ran", None, "Explicit", "Hung"}
    assert all(
        m["context"].get("sessionId") == "session-7"
        for m in messages
        if m.get("event") != "Explicit" and m.get("event") != "Hung"
    )


def test_headers_written_by_posthogs_own_producer_are_read_as_the_visitor():
    """posthog's Celery integration on the producer side, ours on the worker's."""
    from posthog.integrations.celery import PosthogCeleryIntegration

    from analytics_posthog.integrations.celery import received

    headers = {}
    with posthog.new_context(capture_exceptions=False):
        posthog.identify_context("ph-user")
        posthog.set_context_session("ph-session")
        PosthogCeleryIntegration(capture_task_lifecycle_events=False)._on_before_task_publish(
            headers=headers
        )
    visitor = received(SimpleNamespace(headers=headers["headers"]))
    assert (visitor.user_id, visitor.anonymous_id, dict(visitor.context)) == (
        None,
        "ph-user",
        {"sessionId": "ph-session"},
    )
    assert received(SimpleNamespace(headers={"X-POSTHOG-DISTINCT-ID": "\x00" * 5})) is None


@pytest.fixture
def spool_dir(tmp_path, monkeypatch):
    """A spool for the worker this test starts (set before the worker fixture reads the environment)."""
    directory = tmp_path / "spool"
    monkeypatch.setenv("CELERY_TEST_SPOOL", str(directory))
    return directory


def test_a_killed_prefork_child_leaves_its_calls_to_the_next_process(
    spool_dir, broker, worker, legs
):
    """A pool child SIGKILLed in a task (the OOM killer's way) loses the
    event it queued in memory; with a spool, the next process with the same
    directory delivers it, once per leg."""
    _, tasks = broker
    mark = worker.folder / "ran-hang"
    mark.unlink(missing_ok=True)  # an earlier test's
    tasks.hang.delay()
    wait_for(worker, "ran-hang")
    deadline = time.monotonic() + 5
    while not mark.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    # Only the child in the task: one idle in the pool's queue may hold its
    # lock, and billiard would then wait for it forever at shutdown.
    child = int(mark.read_text())
    os.kill(child, signal.SIGKILL)
    # The pool replaces the child before a warm shutdown can end them all.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (
        len(_children(worker.process.pid)) < 2 or child in _children(worker.process.pid)
    ):
        time.sleep(0.1)
    stop(worker, signal.SIGTERM)
    assert not any(e["event"] == "Hung" for e in legs.posthog.events), _log(worker)
    later = Client(
        "seg_key",
        host=legs.segment.url,
        posthog_api_key="phc_test",
        posthog_host=legs.posthog.url,
        spool_dir=str(spool_dir),
    )
    later.flush(30)
    later.shutdown()
    assert [e["event"] for e in legs.posthog.events].count("Hung") == 1, _log(worker)
    assert [m.get("event") for m in legs.segment.segment_messages].count("Hung") == 1
