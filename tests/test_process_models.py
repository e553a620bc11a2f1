"""Every event once per leg under the process models the suite can start for real.

uWSGI forks its workers from C (no at-fork hook runs there), multiprocessing
children end with ``os._exit()`` (no exit handler runs there). Each test
starts the real thing as a process, stops it the way operators do, and
counts what reached the loopback endpoints.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import counted, free_port, get

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")]

REQUESTS = 200
UWSGI = shutil.which("uwsgi", path=os.path.dirname(sys.executable)) or shutil.which("uwsgi")

#: A WSGI app that makes a call while it loads (in uWSGI's master, unless
#: --lazy-apps) and one per request, each under an id of its own.
UWSGI_APP = """
import os
import analytics_posthog as analytics

analytics.write_key = "wk"
analytics.host = os.environ["SEGMENT_HOST"]
analytics.posthog_api_key = "phc_test"
analytics.posthog_host = os.environ["POSTHOG_HOST"]
analytics.upload_interval = 0.05
analytics.track("loader-%d" % os.getpid(), "App loaded")


def application(environ, start_response):
    n = int(environ["QUERY_STRING"])
    analytics.track("user-%d" % n, "Request", {"n": n, "pid": os.getpid()})
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


def run_uwsgi(
    tmp_path: Path, posthog, segment, options: list[str], stop: signal.Signals, uwsgi=UWSGI
) -> str:
    """Serve REQUESTS requests from a uWSGI master with 2 workers, then stop it with ``stop``."""
    (tmp_path / "uwsgi_app.py").write_text(UWSGI_APP)
    port = free_port()
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
            *options,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        for n in range(REQUESTS):
            assert get("http://127.0.0.1:%d/?%d" % (port, n), deadline) == b"ok"
    finally:
        server.send_signal(stop)
        try:
            output = server.communicate(timeout=30)[0].decode()
        except subprocess.TimeoutExpired:
            server.kill()
            output = server.communicate()[0].decode()
            pytest.fail("uWSGI did not stop within 30 s of %s:\n%s" % (stop.name, output))
    return output


def assert_each_once(posthog, segment, loaders: int, output: str) -> None:
    events = counted(posthog.events, "event", "distinct_id")
    messages = counted(segment.segment_messages, "event", "userId")
    expected = {("Request", "user-%d" % n): 1 for n in range(REQUESTS)}
    for counter, name in ((events, "posthog"), (messages, "segment")):
        loaded = {key: count for key, count in counter.items() if key[0] == "App loaded"}
        assert sorted(loaded.values()) == [1] * loaders, (name, loaded, output)
        requests = {key: count for key, count in counter.items() if key[0] == "Request"}
        assert requests == expected, (name, output[-3000:])
    assert "Traceback" not in output, output


@pytest.mark.skipif(UWSGI is None, reason="needs uwsgi (the test extra)")
@pytest.mark.parametrize(
    "stop, options",
    [
        (signal.SIGINT, []),
        (signal.SIGTERM, ["--die-on-term"]),
    ],
    ids=["SIGINT", "SIGTERM-die-on-term"],
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
        master = [e for e in capture_server.events if e["event"] == "App loaded"]
        workers = {e["properties"]["pid"] for e in capture_server.events if e["event"] == "Request"}
        assert master[0]["distinct_id"] not in {"loader-%d" % pid for pid in workers}


@pytest.mark.skipif(UWSGI is None, reason="needs uwsgi (the test extra)")
def test_uwsgi_lazy_apps_delivers_every_event_once(tmp_path, capture_server, segment_server):
    output = run_uwsgi(tmp_path, capture_server, segment_server, ["--lazy-apps"], signal.SIGINT)
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
    output = run_uwsgi(tmp_path, capture_server, segment_server, [], signal.SIGINT, OLD_UWSGI)
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
    script = tmp_path / "jobs.py"
    script.write_text(MULTIPROCESSING_SCRIPT)
    env = {**os.environ, "POSTHOG_HOST": capture_server.url, "SEGMENT_HOST": segment_server.url}
    done = subprocess.run(
        [sys.executable, str(script), method, kind],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    expected = {("Work", "child-%d" % n, i): 1 for n in range(CHILDREN) for i in range(CALLS)}
    expected[("Started", "parent", -1)] = 1
    events = counted(capture_server.events, "event", "distinct_id", lambda e: e["properties"]["i"])
    messages = counted(
        segment_server.segment_messages, "event", "userId", lambda m: m["properties"]["i"]
    )
    assert sum(events.values()) == sum(messages.values()) == CHILDREN * CALLS + 1, done.stderr
    assert dict(events) == expected
    assert dict(messages) == expected
