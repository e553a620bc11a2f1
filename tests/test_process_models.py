"""Every event once per leg under the process models the suite can start for real.

uWSGI forks its workers from C (no at-fork hook runs there), multiprocessing
children end with ``os._exit()`` (no exit handler runs there). Each test
starts the real thing as a process, stops it the way operators do, and
counts what reached the loopback endpoints.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from processes import UWSGI, counted, free_port, get, run_script

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")]

REQUESTS = 200

#: A WSGI app that makes a call while it loads (in uWSGI's master, unless
#: --lazy-apps) and one per request, each under an id of its own.
UWSGI_APP = """
import os
import time
import analytics_posthog as analytics

analytics.write_key = "wk"
analytics.host = os.environ["SEGMENT_HOST"]
analytics.posthog_api_key = "phc_test"
analytics.posthog_host = os.environ["POSTHOG_HOST"]
analytics.upload_interval = 0.05
analytics.track("loader-%d" % os.getpid(), "App loaded")


def application(environ, start_response):
    if environ["QUERY_STRING"] == "slow":
        time.sleep(1)
        analytics.track("slow", "Slow request")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    n = int(environ["QUERY_STRING"])
    analytics.track("user-%d" % n, "Request", {"n": n, "pid": os.getpid()})
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


def run_uwsgi(
    tmp_path: Path,
    posthog,
    segment,
    options: list[str],
    stop: Callable[[subprocess.Popen], None],
    uwsgi=UWSGI,
) -> str:
    """Serve REQUESTS requests from a uWSGI master with 2 workers, then ``stop`` it.

    uWSGI runs no exit handler in a worker it kills in the middle of a
    request (SIGINT, SIGQUIT, SIGTERM with --die-on-term: ``docs/lifecycle.md``),
    whoever registered it, so ``stop`` comes once uWSGI's stats say both
    workers are idle, as an idle server is stopped; the graceful stops add a
    request in flight.
    """
    (tmp_path / "uwsgi_app.py").write_text(UWSGI_APP)
    log = tmp_path / "uwsgi.log"
    port, stats = free_port(), free_port()
    env = {**os.environ, "POSTHOG_HOST": posthog.url, "SEGMENT_HOST": segment.url}
    server = subprocess.Popen(
        [
            uwsgi,
            "--virtualenv",
            sys.prefix,
            "--master",
            "--processes",
            "2",
            "--http-socket",
            "127.0.0.1:%d" % port,
            "--chdir",
            str(tmp_path),
            "--wsgi-file",
            "uwsgi_app.py",
            "--worker-reload-mercy",
            "20",
            "--master-fifo",
            str(tmp_path / "fifo"),
            "--logto",
            str(log),
            "--stats",
            "127.0.0.1:%d" % stats,
            *options,
        ],
        env=env,
    )
    try:
        deadline = time.monotonic() + 20
        for n in range(REQUESTS):
            assert get("http://127.0.0.1:%d/?%d" % (port, n), deadline) == b"ok"
        # With --lazy-apps a worker may still be loading the app, unasked, once
        # the other has served every request.
        loads = 2 if "--lazy-apps" in options else 1
        while time.monotonic() < deadline and not (
            log.read_text().count("(default app)") >= loads and workers(stats) == ["idle", "idle"]
        ):
            time.sleep(0.01)
    finally:
        stop(server)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            pytest.fail("uWSGI did not stop within 30 s:\n%s" % log.read_text())
    return log.read_text()


def workers(stats: int) -> list[str]:
    """Each worker's status, from uWSGI's stats server (JSON, then it closes)."""
    with socket.create_connection(("127.0.0.1", stats), timeout=5) as connection:
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    return [worker["status"] for worker in json.loads(data)["workers"]]


def signal_stop(number: signal.Signals) -> Callable[[subprocess.Popen], None]:
    return lambda server: server.send_signal(number)


def graceful_stop(how: str) -> Callable[[subprocess.Popen], None]:
    """uWSGI's graceful shutdown with a request in flight: the worker ends it
    (its call included), then exits through its exit handlers. ``how``:
    ``fifo`` (the master FIFO's ``q``) or ``SIGTERM`` (with the hook that
    makes SIGTERM graceful)."""

    def stop(server: subprocess.Popen) -> None:
        address = server.args[server.args.index("--http-socket") + 1]
        slow = threading.Thread(
            target=get, args=("http://%s/?slow" % address, time.monotonic() + 10)
        )
        slow.start()
        time.sleep(0.3)
        if how == "fifo":
            fifo = Path(server.args[server.args.index("--master-fifo") + 1])
            with fifo.open("w") as commands:
                commands.write("q")
        else:
            server.send_signal(signal.SIGTERM)
        slow.join(10)

    return stop


def assert_each_once(posthog, segment, loaders: int, output: str) -> None:
    events = counted(posthog.events, "event", "distinct_id")
    messages = counted(segment.segment_messages, "event", "userId")
    expected = {("Request", "user-%d" % n): 1 for n in range(REQUESTS)}
    for counter, name in ((events, "posthog"), (messages, "segment")):
        loaded = {key: count for key, count in counter.items() if key[0] == "App loaded"}
        assert sorted(loaded.values()) == [1] * loaders, (name, loaded, output)
        requests = {key: count for key, count in counter.items() if key[0] == "Request"}
        assert requests == expected, (name, output[-3000:])
        slow = [key for key in counter if key[0] == "Slow request"]
        assert [counter[key] for key in slow] == [1] * len(slow)
    assert "Traceback" not in output, output


@pytest.mark.skipif(UWSGI is None, reason="needs uwsgi (the test extra)")
@pytest.mark.parametrize(
    "stop, options",
    [
        (signal_stop(signal.SIGINT), []),
        (signal_stop(signal.SIGTERM), ["--die-on-term"]),
        (graceful_stop("fifo"), []),
        (
            graceful_stop("SIGTERM"),
            ["--hook-master-start", "unix_signal:15 gracefully_kill_them_all"],
        ),
    ],
    ids=["SIGINT", "SIGTERM-die-on-term", "fifo-q", "SIGTERM-graceful"],
)
def test_uwsgi_prefork_with_a_call_in_the_master_delivers_every_event_once(
    tmp_path, capture_server, segment_server, stop, options
):
    """The master's own call arrives once, the workers' requests too, and
    nothing hangs; repeated, as a fork from C lands at a random moment."""
    for attempt in range(3):
        capture_server.clear()
        segment_server.clear()
        output = run_uwsgi(tmp_path, capture_server, segment_server, options, stop)
        assert_each_once(capture_server, segment_server, 1, "attempt %d\n%s" % (attempt, output))
        if "graceful" in stop.__qualname__:
            assert ("Slow request", "slow") in counted(
                capture_server.events, "event", "distinct_id"
            )
            assert ("Slow request", "slow") in counted(
                segment_server.segment_messages, "event", "userId"
            )
        master = [e for e in capture_server.events if e["event"] == "App loaded"]
        workers = {e["properties"]["pid"] for e in capture_server.events if e["event"] == "Request"}
        assert master[0]["distinct_id"] not in {"loader-%d" % pid for pid in workers}


@pytest.mark.skipif(UWSGI is None, reason="needs uwsgi (the test extra)")
def test_uwsgi_lazy_apps_delivers_every_event_once(tmp_path, capture_server, segment_server):
    output = run_uwsgi(
        tmp_path, capture_server, segment_server, ["--lazy-apps"], signal_stop(signal.SIGINT)
    )
    assert_each_once(capture_server, segment_server, 2, output)


#: uWSGI before 2.0.27 runs workers without Python threads unless told to;
#: ``.ci/run`` builds that release here (``uwsgi`` from the test extra is newer).
OLD_UWSGI = Path(__file__).parent.parent / ".ci" / "uwsgi-2.0.26" / "bin" / "uwsgi"


@pytest.mark.skipif(not OLD_UWSGI.exists(), reason="needs uWSGI 2.0.26, which .ci/run builds")
def test_uwsgi_without_threads_says_what_to_change(
    tmp_path, capture_server, segment_server, monkeypatch
):
    """Nothing can be delivered before the workers exit: one warning per worker says why."""
    monkeypatch.setenv("PYTHONPATH", str(OLD_UWSGI.parent.parent))
    output = run_uwsgi(
        tmp_path, capture_server, segment_server, [], signal_stop(signal.SIGINT), OLD_UWSGI
    )
    assert "python threads support enabled" not in output
    assert output.count("start uWSGI with --enable-threads") == 2, output
    assert_each_once(capture_server, segment_server, 1, output)


CHILDREN = 4
CALLS = 250

#: The parent makes one call (its client is inherited by forked children),
#: then CHILDREN children make CALLS each, with no flush anywhere.
MULTIPROCESSING_SCRIPT = """
import multiprocessing, os, sys
from concurrent.futures import ProcessPoolExecutor
import analytics_posthog as analytics

analytics.write_key = "wk"
analytics.host = os.environ["SEGMENT_HOST"]
analytics.posthog_api_key = "phc_test"
analytics.posthog_host = os.environ["POSTHOG_HOST"]
analytics.upload_interval = 0.05


def work(n):
    for i in range(%(calls)d):
        analytics.track("child-%%d" %% n, "Work", {"i": i})
    return n


if __name__ == "__main__":
    method, kind = sys.argv[1:]
    analytics.track("parent", "Started", {"i": -1})
    context = multiprocessing.get_context(method)
    if kind == "process":
        children = [context.Process(target=work, args=(n,)) for n in range(%(children)d)]
        for child in children:
            child.start()
        for child in children:
            child.join()
        assert [child.exitcode for child in children] == [0] * %(children)d
    elif kind == "pool":
        with context.Pool(%(children)d) as pool:
            assert sorted(pool.map(work, range(%(children)d), chunksize=1)) == list(range(%(children)d))
    else:
        with ProcessPoolExecutor(%(children)d, mp_context=context) as pool:
            assert sorted(pool.map(work, range(%(children)d))) == list(range(%(children)d))
""" % {"calls": CALLS, "children": CHILDREN}


@pytest.mark.parametrize("kind", ["process", "pool", "executor"])
@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_multiprocessing_children_deliver_before_they_exit(
    tmp_path, capture_server, segment_server, method, kind
):
    done = run_script(
        tmp_path / "jobs.py", MULTIPROCESSING_SCRIPT, [method, kind], capture_server, segment_server
    )
    expected = {("Work", "child-%d" % n, i): 1 for n in range(CHILDREN) for i in range(CALLS)}
    expected[("Started", "parent", -1)] = 1
    events = counted(capture_server.events, "event", "distinct_id", lambda e: e["properties"]["i"])
    messages = counted(
        segment_server.segment_messages, "event", "userId", lambda m: m["properties"]["i"]
    )
    assert sum(events.values()) == sum(messages.values()) == CHILDREN * CALLS + 1, done.stderr
    assert dict(events) == expected
    assert dict(messages) == expected
