"""The on-disk spool, proven with processes that really die: what a process
killed with SIGKILL or ended by ``os._exit()`` had accepted is delivered by
the next one with the same ``spool_dir``, once per leg, with its ids."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from processes import UWSGI, counted, free_port, get

from analytics_posthog import Client
from analytics_posthog._delivery import spool
from analytics_posthog.mapping import event_uuid

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs POSIX locks")

CALLS = 1000

#: ``write N``: N calls, their messageIds printed, then the process dies the
#: way ``END`` says (``kill``: SIGKILL; ``exit``: ``os._exit``; ``wait``:
#: alive until its stdin closes, then SIGKILL). ``resume``: a new process with
#: the same spool flushes and prints its stats.
SCRIPT = """
import json, os, signal, sys, resource
import analytics_posthog

mode, spool_dir, end, count, tag = sys.argv[1:6]
# While writing, nothing is sent before the process dies (one batch, due in 30 s).
settings = dict(posthog_api_key="phc_test", posthog_host=os.environ["POSTHOG_HOST"],
                spool_dir=spool_dir,
                upload_interval=float(os.environ.get("WRITE_INTERVAL", 30)) if mode == "write" else 0.2,
                upload_size=5000)
if os.environ.get("DUAL"):
    settings.update(write_key="wk", host=os.environ["SEGMENT_HOST"])
if os.environ.get("MAX_BYTES"):
    settings["spool_max_bytes"] = int(os.environ["MAX_BYTES"])
told = []
settings["on_error"] = lambda error, batch: told.append("%s: %s" % (type(error).__name__, error))
if os.environ.get("FILE_LIMIT"):
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(os.environ["FILE_LIMIT"]),) * 2)
if os.environ.get("NO_TAKEOVER"):
    # This process never looks for other processes' files: what they leave is
    # for the next process of the test to find.
    from analytics_posthog._delivery import spool
    spool.Spool.scan = lambda self, *args, **kwargs: None
client = analytics_posthog.Client(**settings)
if mode == "resume":
    flushed = client.flush(60)
    client.shutdown()
    print(json.dumps({"flushed": flushed, "stats": client.stats(), "told": told,
                      "spool": client.delivery._spool.counts}))
    sys.exit(0)
ids = []
for i in range(int(count)):
    if i and i == int(os.environ.get("FLUSH_AT", 0)):
        client.flush()
    ok, msg = client.track("u%d" % i, "Spooled", {"i": i, "tag": tag})
    ids.append(msg["messageId"] if ok else None)
print(json.dumps({"ids": ids, "told": told}), flush=True)
if end == "wait":
    sys.stdin.read()
if end in ("kill", "wait"):
    os.kill(os.getpid(), signal.SIGKILL)
if end == "exit":
    os._exit(0)
client.shutdown()
"""


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "spooling.py"
    path.write_text(SCRIPT)
    return path


def start(script, spool_dir, capture_server, segment_server, *args, env=None, **popen):
    environment = {
        **os.environ,
        "POSTHOG_HOST": capture_server.url,
        "SEGMENT_HOST": segment_server.url,
        **(env or {}),
    }
    return subprocess.Popen(
        [sys.executable, str(script), *args[:1], str(spool_dir), *args[1:]],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def run(script, spool_dir, capture_server, segment_server, *args, env=None) -> dict:
    process = start(script, spool_dir, capture_server, segment_server, *args, env=env)
    out, err = process.communicate(timeout=120)
    assert "Traceback" not in err, err
    return json.loads(out.strip().splitlines()[-1])


def run_with_spool(tmp_path, text: str, capture_server) -> subprocess.CompletedProcess[str]:
    """``text`` run as a script with ``tmp_path/spool`` as its argument; it must exit cleanly."""
    script = tmp_path / "spool_script.py"
    script.write_text(text)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "spool")],
        env={**os.environ, "POSTHOG_HOST": capture_server.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return done


def resume(script, spool_dir, capture_server, segment_server, env=None) -> dict:
    return run(script, spool_dir, capture_server, segment_server, "resume", "-", "0", "-", env=env)


@pytest.mark.slow
@pytest.mark.parametrize("end", ["kill", "exit"])
@pytest.mark.parametrize("dual", [False, True], ids=["posthog", "dual-write"])
def test_calls_of_a_killed_process_are_delivered_once_by_the_next(
    script, tmp_path, capture_server, segment_server, end, dual
):
    env = {"DUAL": "1"} if dual else {}
    spool_dir = tmp_path / "spool"
    written = run(
        script, spool_dir, capture_server, segment_server, "write", end, str(CALLS), "a", env=env
    )
    ids = written["ids"]
    assert None not in ids and len(set(ids)) == CALLS
    # The one batch was due in 30 s and the process died at once: nothing was sent.
    assert capture_server.event_count == 0 and segment_server.segment_count == 0
    report = resume(script, spool_dir, capture_server, segment_server, env=env)
    assert report["flushed"] is True, report
    assert report["spool"]["taken_over"] == CALLS, report
    assert sorted(e["uuid"] for e in capture_server.events) == sorted(map(event_uuid, ids))
    if dual:
        assert sorted(m["messageId"] for m in segment_server.segment_messages) == sorted(ids)
        assert all(
            m["integrations"].get("PostHog") is False for m in segment_server.segment_messages
        )
    else:
        assert segment_server.segment_count == 0
    # Everything settled: the next process finds nothing to send.
    assert os.listdir(spool_dir) == []
    again = resume(script, spool_dir, capture_server, segment_server, env=env)
    assert again["spool"]["taken_over"] == 0
    assert capture_server.event_count == CALLS


@pytest.mark.slow
def test_what_was_delivered_before_the_kill_is_not_sent_again(
    script, tmp_path, capture_server, segment_server
):
    """600 calls, a flush (both legs deliver them and write that down), 400
    more, SIGKILL: the next process sends exactly the 400."""
    # Segment's flush waits out its upload interval: 5 s, not the usual 30.
    env = {"DUAL": "1", "FLUSH_AT": "600", "WRITE_INTERVAL": "5"}
    spool_dir = tmp_path / "spool"
    ids = run(
        script, spool_dir, capture_server, segment_server, "write", "kill", "1000", "a", env=env
    )["ids"]
    assert capture_server.event_count == segment_server.segment_count == 600
    report = resume(script, spool_dir, capture_server, segment_server, env={"DUAL": "1"})
    assert report["spool"]["taken_over"] == 400, report
    assert sorted(e["uuid"] for e in capture_server.events) == sorted(map(event_uuid, ids))
    assert sorted(m["messageId"] for m in segment_server.segment_messages) == sorted(ids)


@pytest.mark.slow
def test_a_living_process_keeps_its_file_and_a_dead_ones_is_taken(
    script, tmp_path, capture_server, segment_server
):
    """Two processes write at once; while the first is alive, a third with
    the same spool takes nothing of it; once it is killed, the next does.
    (The two writers never look for others' files, so that the living one
    cannot be the one that takes the killed one's.)"""
    spool_dir = tmp_path / "spool"
    env = {"DUAL": "1", "NO_TAKEOVER": "1"}
    alive = start(
        script,
        spool_dir,
        capture_server,
        segment_server,
        "write",
        "wait",
        "500",
        "alive",
        env=env,
        stdin=subprocess.PIPE,
    )
    other = start(
        script, spool_dir, capture_server, segment_server, "write", "kill", "500", "other", env=env
    )
    other_ids = json.loads(other.communicate(timeout=60)[0].strip().splitlines()[-1])["ids"]
    alive_ids = json.loads(alive.stdout.readline())["ids"]
    report = resume(script, spool_dir, capture_server, segment_server, env={"DUAL": "1"})
    assert report["spool"]["taken_over"] == 500, report
    assert {e["properties"]["tag"] for e in capture_server.events} == {"other"}
    assert sorted(e["uuid"] for e in capture_server.events) == sorted(map(event_uuid, other_ids))
    alive.stdin.close()
    alive.wait(30)
    report = resume(script, spool_dir, capture_server, segment_server, env={"DUAL": "1"})
    assert report["spool"]["taken_over"] == 500, report
    assert sorted(e["uuid"] for e in capture_server.events) == sorted(
        map(event_uuid, other_ids + alive_ids)
    )
    assert counted(segment_server.segment_messages, "event", "messageId").most_common(1)[0][1] == 1
    assert segment_server.segment_count == 1000


@pytest.mark.slow
def test_a_record_cut_short_and_a_corrupt_one_cost_only_themselves(
    script, tmp_path, capture_server, segment_server
):
    spool_dir = tmp_path / "spool"
    run(script, spool_dir, capture_server, segment_server, "write", "kill", "10", "a")
    (name,) = os.listdir(spool_dir)
    path = spool_dir / name
    data = bytearray(path.read_bytes())
    # Each record: "m <seq> <legs> <length> <crc32>\n", the payload, "\n"; zeros after the last.
    records, position = [], 0
    while data[position : position + 2] == b"m ":
        newline = data.index(b"\n", position)
        length = int(data[position:newline].split(b" ")[3])
        records.append((newline + 1, length))
        position = newline + 1 + length + 1
    assert len(records) == 10 and not any(data[position:])
    # A few bytes of the fifth record's payload overwritten; the last one cut
    # in half (zeros after, as a process killed while copying it leaves it).
    body, length = records[4]
    data[body + 10 : body + 18] = b"garbage!"
    body, length = records[9]
    data[body + length // 2 : position] = bytes(position - body - length // 2)
    path.write_bytes(bytes(data))
    report = resume(script, spool_dir, capture_server, segment_server)
    assert report["spool"] == {**report["spool"], "taken_over": 8, "damaged": 2}, report
    assert sorted(e["properties"]["i"] for e in capture_server.events) == [0, 1, 2, 3, 5, 6, 7, 8]
    damage = [line for line in report["told"] if line.startswith("SpoolDamaged")]
    assert damage == [
        "SpoolDamaged: 2 record(s) in %s could not be read back (cut short or corrupt)" % path
    ]


@pytest.mark.slow
def test_a_spool_on_a_full_filesystem_leaves_calls_in_memory_and_says_so(
    script, tmp_path, capture_server, segment_server
):
    """A file size limit below a spool file's size stands in for a full
    disk: the file cannot be allocated (EFBIG). Every call still returns
    True and is delivered, and one warning says why."""
    spool_dir = tmp_path / "spool"
    process = start(
        script,
        spool_dir,
        capture_server,
        segment_server,
        "write",
        "flush",
        "300",
        "a",
        env={"FILE_LIMIT": str(spool.FILE_BYTES // 2)},
    )
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert None not in json.loads(out.strip().splitlines()[-1])["ids"]
    assert err.count("cannot be written (EFBIG") == 1, err
    assert sorted(e["properties"]["i"] for e in capture_server.events) == list(range(300))
    assert not [name for name in os.listdir(spool_dir) if name.endswith(".new")]


def test_a_spool_dir_that_cannot_be_made_leaves_calls_in_memory(capture_server, tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    client = Client(
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        spool_dir=str(blocker / "spool"),
    )
    assert all(client.track("u", "Kept", {"i": i})[0] for i in range(5))
    client.flush()
    client.shutdown()
    assert capture_server.event_count == 5
    assert sum("cannot be written" in r.getMessage() for r in caplog.records) == 1


def test_a_full_spool_drops_the_call_counts_and_tells_it(capture_server, tmp_path):
    told = []
    client = Client(
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        spool_dir=str(tmp_path),
        spool_max_bytes=3000,
        on_error=lambda error, batch: told.append((type(error), len(batch))),
    )
    results = [client.track("u", "Bounded", {"i": i})[0] for i in range(20)]
    client.flush()
    stats = client.stats()["posthog"]
    client.shutdown()
    kept = results.count(True)
    assert 0 < kept < 20 and results == [True] * kept + [False] * (20 - kept)
    assert capture_server.event_count == kept
    assert stats["dropped"] == 20 - kept
    assert told == [(spool.SpoolFull, 1)] * (20 - kept)


def test_settled_records_leave_no_file_behind(capture_server, segment_server, tmp_path):
    client = Client(
        "wk",
        host=segment_server.url,
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        spool_dir=str(tmp_path),
        upload_interval=0.05,
    )
    for i in range(4000):
        client.track("u", "Settled", {"i": i})
    client.flush()

    # Rotated files go as soon as every record in them is settled on both legs.
    def files() -> list[str]:
        return [name for name in os.listdir(tmp_path) if name.endswith(".spool")]

    deadline = time.monotonic() + 10
    while len(files()) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(files()) == 1
    client.delivery.at_exit()
    assert os.listdir(tmp_path) == []
    assert capture_server.event_count == segment_server.segment_count == 4000


def test_without_a_spool_nothing_is_written(capture_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    client = Client(posthog_api_key="phc_test", posthog_host=capture_server.url)
    client.track("u", "Plain")
    client.shutdown()
    assert client.delivery._spool is None and os.listdir(tmp_path) == []


def test_the_environment_names_the_spool(capture_server, tmp_path, monkeypatch):
    monkeypatch.setenv(spool.ENVIRONMENT, str(tmp_path))
    client = Client(posthog_api_key="phc_test", posthog_host=capture_server.url)
    client.track("u", "From env")
    assert len(os.listdir(tmp_path)) == 1
    client.shutdown()


FORKING = """
import json, os, signal, sys
import analytics_posthog
client = analytics_posthog.Client(posthog_api_key="phc_test", posthog_host=os.environ["POSTHOG_HOST"],
                                  spool_dir=sys.argv[1], upload_interval=0.5, upload_size=5000)
for i in range(100):
    client.track("parent", "Parent", {"i": i})
pid = os.fork()
if pid == 0:
    for i in range(50):
        client.track("child", "Child", {"i": i})
    os.kill(os.getpid(), signal.SIGKILL)
os.waitpid(pid, 0)
print(json.dumps(sorted(os.listdir(sys.argv[1]))), flush=True)
# The child is dead: its file is the parent's to take over at the next look.
client.delivery._spool.scan(force=True)
client.flush(30)
client.shutdown()
print(json.dumps(client.delivery._spool.counts))
"""


@pytest.mark.slow
def test_a_forked_child_writes_its_own_file_and_never_takes_its_parents(tmp_path, capture_server):
    done = run_with_spool(tmp_path, FORKING, capture_server)
    files, counts = (json.loads(line) for line in done.stdout.strip().splitlines())
    assert len(files) == 2
    assert counts["taken_over"] == 50
    events = counted(capture_server.events, "event", "distinct_id", lambda e: e["properties"]["i"])
    assert set(events.values()) == {1} and len(events) == 150


#: A WSGI app with a spool: a call while it loads (in uWSGI's master, held
#: for its worker), one per request, each answer naming the worker's pid.
SERVER_APP = """
import os
import analytics_posthog as analytics

analytics.write_key = "wk"
analytics.host = os.environ["SEGMENT_HOST"]
analytics.posthog_api_key = "phc_test"
analytics.posthog_host = os.environ["POSTHOG_HOST"]
analytics.spool_dir = os.environ["SPOOL_DIR"]
if os.environ.get("LOAD_CALL"):
    analytics.track("loader", "App loaded")


def app(environ, start_response):
    n = int(environ["QUERY_STRING"])
    analytics.track("user-%d" % n, "Request", {"n": n, "pid": os.getpid()})
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Pid", str(os.getpid()))])
    return [b"ok"]
"""
REQUESTS = 400


def serve_killing_a_worker(
    tmp_path, capture_server, segment_server, command, stop, **env
) -> tuple[list[int], str, int]:
    """Start the server ``command`` (the app in ``tmp_path/spooled_app.py``),
    SIGKILL its worker after it answered half the requests, go on while the
    server starts another, then ``stop(server)``: the requests answered, the
    server's output and its exit status."""
    import urllib.request

    (tmp_path / "spooled_app.py").write_text(SERVER_APP)
    port = free_port()
    environment = {
        **os.environ,
        "POSTHOG_HOST": capture_server.url,
        "SEGMENT_HOST": segment_server.url,
        "SPOOL_DIR": str(tmp_path / "spool"),
        **env,
    }
    # To a file: a pipe nobody reads until the end would fill and stall the server.
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [part.replace("{port}", str(port)) for part in command],
        cwd=tmp_path,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    answered: list[int] = []
    try:
        get("http://127.0.0.1:%d/?0" % port, time.monotonic() + 30)
        answered.append(0)
        deadline = time.monotonic() + 60
        n, killed = 1, False
        while n < REQUESTS and time.monotonic() < deadline:
            try:
                url = "http://127.0.0.1:%d/?%d" % (port, n)
                with urllib.request.urlopen(url, timeout=10) as response:
                    pid = int(response.headers["X-Pid"])
            except OSError:
                time.sleep(0.2)
                continue
            answered.append(n)
            if n == REQUESTS // 2 and not killed:
                os.kill(pid, signal.SIGKILL)
                killed = True
            n += 1
    finally:
        stop(server)
        server.wait(timeout=60)
        log.close()
        output = (tmp_path / "server.log").read_text()
    assert killed and len(answered) == REQUESTS, output[-3000:]
    return answered, output, server.returncode


def assert_answered_arrived(capture_server, segment_server, answered, output) -> None:
    """Every answered request arrived on both legs; at most one batch (the
    one in flight at the kill, sent before the dead worker could write that
    down) twice, with the same ids, which PostHog and Segment deduplicate on;
    and both workers' events are there."""
    for items, id_key in (
        (capture_server.events, "distinct_id"),
        (segment_server.segment_messages, "userId"),
    ):
        arrived = counted(items, "event", id_key)
        assert {("Request", "user-%d" % n) for n in answered} <= set(arrived), output[-3000:]
        assert sum(count - 1 for count in arrived.values()) <= 100, output[-3000:]
        ids = {item.get("uuid") or item.get("messageId") for item in items}
        assert len(ids) == len(arrived), "a copy with new ids"
    pids = {e["properties"]["pid"] for e in capture_server.events if "pid" in e["properties"]}
    assert len(pids) == 2, output[-3000:]


@pytest.mark.slow
def test_a_gunicorn_worker_sigkilled_under_load_loses_nothing(
    tmp_path, capture_server, segment_server
):
    """gunicorn starts a new worker, which delivers what the dead one had
    accepted; SIGTERM (a graceful stop) delivers the rest."""
    command = [sys.executable, "-m", "gunicorn", "-w", "1", "-b", "127.0.0.1:{port}"]
    answered, output, status = serve_killing_a_worker(
        tmp_path,
        capture_server,
        segment_server,
        [*command, "spooled_app:app"],
        lambda server: server.send_signal(signal.SIGTERM),
    )
    assert status == 0, output
    assert_answered_arrived(capture_server, segment_server, answered, output)


@pytest.mark.slow
@pytest.mark.skipif(UWSGI is None, reason="needs uwsgi (the test extra)")
def test_a_uwsgi_worker_sigkilled_under_load_loses_nothing(
    tmp_path, capture_server, segment_server
):
    """uWSGI's master (whose call while loading the app is held for its
    worker) respawns the worker; the new one delivers what the dead one had
    accepted, the held call included. The master FIFO's ``q`` stops it."""
    command = [
        UWSGI,
        "--virtualenv",
        sys.prefix,
        "--master",
        "--processes",
        "1",
        "--http-socket",
        "127.0.0.1:{port}",
        "--wsgi-file",
        "spooled_app.py",
        "--callable",
        "app",
        "--master-fifo",
        "fifo",
        "--worker-reload-mercy",
        "20",
    ]

    def stop(server: subprocess.Popen) -> None:
        (tmp_path / "fifo").write_text("q")

    answered, output, _ = serve_killing_a_worker(
        tmp_path, capture_server, segment_server, command, stop, LOAD_CALL="1"
    )
    assert_answered_arrived(capture_server, segment_server, answered, output)
    for items, id_key in (
        (capture_server.events, "distinct_id"),
        (segment_server.segment_messages, "userId"),
    ):
        assert counted(items, "event", id_key)[("App loaded", "loader")] == 1, output[-3000:]


def test_two_clients_of_one_process_never_take_each_others_files(capture_server, tmp_path):
    """A process can take a lock it holds itself: its own files are never opened by its scans."""
    first = Client(
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        spool_dir=str(tmp_path),
        upload_interval=30,
        upload_size=5000,
    )
    for i in range(20):
        first.track("u", "First", {"i": i})
    second = Client(
        posthog_api_key="phc_test", posthog_host=capture_server.url, spool_dir=str(tmp_path)
    )
    second.delivery._spool.scan(force=True)
    assert second.delivery._spool.counts["taken_over"] == 0
    assert [name for name in os.listdir(tmp_path) if name.endswith(".spool")]
    first.shutdown()
    second.shutdown()
    assert sorted(e["properties"]["i"] for e in capture_server.events) == list(range(20))


@pytest.mark.slow
def test_settlements_cut_short_or_garbled_settle_nothing_and_stop_nothing(
    script, tmp_path, capture_server, segment_server
):
    spool_dir = tmp_path / "spool"
    run(script, spool_dir, capture_server, segment_server, "write", "kill", "10", "a")
    (name,) = os.listdir(spool_dir)
    (spool_dir / (name + ".acks")).write_bytes(b"\na\na posthog x y\nzz\na posthog 1 2")
    report = resume(script, spool_dir, capture_server, segment_server)
    assert report["spool"]["taken_over"] == 10, report
    assert sorted(e["properties"]["i"] for e in capture_server.events) == list(range(10))
    assert os.listdir(spool_dir) == []


SYNC = """
import os, sys
import analytics_posthog
client = analytics_posthog.Client(posthog_api_key="phc_test", posthog_host=os.environ["POSTHOG_HOST"],
                                  spool_dir=sys.argv[1], sync_mode=True)
for i in range(5):
    assert client.track("u", "Sync", {"i": i})[0]
print(len([n for n in os.listdir(sys.argv[1]) if n.endswith(".spool")]))
"""


@pytest.mark.slow
def test_a_sync_mode_process_leaves_no_file_at_exit(tmp_path, capture_server):
    done = run_with_spool(tmp_path, SYNC, capture_server)
    assert done.stdout.strip() == "1"
    assert capture_server.event_count == 5
    assert os.listdir(tmp_path / "spool") == []


def _in_own_mount(mount_options: str) -> list[str] | None:
    """A command prefix that runs a process with a tmpfs of its own mounted
    at its first argument (``unshare -m``); ``None`` where this machine
    does not allow it (not root, no ``unshare``)."""
    probe = (
        subprocess.run(
            ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
            capture_output=True,
            timeout=30,
        )
        if shutil.which("unshare")
        else None
    )
    if probe is None or probe.returncode != 0:
        return None
    return [
        "unshare",
        "-m",
        "sh",
        "-c",
        'mount -t tmpfs -o %s tmpfs "$0" && exec "$@"' % mount_options,
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    "options, calls, reason",
    [("ro,size=4m", 300, "EROFS"), ("size=1536k", 4000, "ENOSPC")],
    ids=["read-only", "full"],
)
def test_a_spool_on_a_read_only_or_full_filesystem_leaves_calls_in_memory(
    script, tmp_path, capture_server, segment_server, options, calls, reason
):
    """A filesystem of its own for the process: read-only, or with room for
    one spool file only. Every call still returns True and is delivered, and
    one warning says why."""
    prefix = _in_own_mount(options)
    if prefix is None:
        pytest.skip("mounting a tmpfs of its own is not allowed here")
    mount = tmp_path / "mount"
    mount.mkdir()
    done = subprocess.run(
        [
            *prefix,
            str(mount),
            sys.executable,
            str(script),
            "write",
            str(mount / "spool"),
            "flush",
            str(calls),
            "a",
        ],
        env={**os.environ, "POSTHOG_HOST": capture_server.url, "SEGMENT_HOST": segment_server.url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert None not in json.loads(done.stdout.strip().splitlines()[-1])["ids"]
    assert done.stderr.count("cannot be written (%s" % reason) == 1, done.stderr
    assert sorted(e["properties"]["i"] for e in capture_server.events) == list(range(calls))


def test_what_a_leg_gave_up_on_is_reported_once_and_leaves_the_spool(capture_server, tmp_path):
    """PostHog refuses the batch (400, not retried): counted, told to
    ``on_error``, and settled, so no later process sends it again."""
    told = []
    capture_server.fail(400, leg="posthog")
    client = Client(
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        spool_dir=str(tmp_path),
        on_error=lambda error, batch: told.append(len(batch)),
    )
    for i in range(5):
        client.track("u", "Refused", {"i": i})
    client.flush()
    assert client.stats()["posthog"]["failed"] == 5 and sum(told) == 5
    client.delivery.at_exit()
    assert os.listdir(tmp_path) == []
    capture_server.restore()
    later = Client(
        posthog_api_key="phc_test", posthog_host=capture_server.url, spool_dir=str(tmp_path)
    )
    later.flush()
    assert later.delivery._spool.counts["taken_over"] == 0
    later.shutdown()
    assert capture_server.event_count == 0


POOL = """
import multiprocessing, os, signal, sys
import analytics_posthog

def work(n):
    client = analytics_posthog.default_client or analytics_posthog.Client(
        posthog_api_key="phc_test", posthog_host=os.environ["POSTHOG_HOST"],
        spool_dir=sys.argv[2], upload_interval=30, upload_size=5000)
    analytics_posthog.default_client = client
    for i in range(50):
        client.track("child-%d" % n, "Child", {"i": i})
    os.kill(os.getpid(), signal.SIGKILL)

if __name__ == "__main__":
    method = sys.argv[1]
    context = multiprocessing.get_context(method)
    processes = [context.Process(target=work, args=(n,)) for n in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    print(len([n for n in os.listdir(sys.argv[2]) if n.endswith(".spool")]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_children_each_write_their_own_file(tmp_path, capture_server, method):
    """Three children of each start method write 50 calls each to one
    spool_dir and are killed; each left a file of its own, and the next
    process delivers all 150 once."""
    script = tmp_path / "pool.py"
    script.write_text(POOL)
    spool_dir = tmp_path / "spool"
    done = subprocess.run(
        [sys.executable, str(script), method, str(spool_dir)],
        env={**os.environ, "POSTHOG_HOST": capture_server.url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert done.stdout.strip() == "3"
    later = Client(
        posthog_api_key="phc_test", posthog_host=capture_server.url, spool_dir=str(spool_dir)
    )
    # One file a look at start, one more at each of the next looks.
    for _ in range(3):
        later.delivery._spool.scan(force=True)
        later.flush(30)
    later.shutdown()
    events = counted(capture_server.events, "event", "distinct_id", lambda e: e["properties"]["i"])
    assert len(events) == 150 and set(events.values()) == {1}


def test_a_message_marshal_cannot_write_is_kept_as_segments_json(tmp_path):
    """A ``datetime`` in a property: the record is Segment's JSON of the
    message, read back with the values as Segment's client sends them."""
    import datetime

    client = Client(posthog_api_key="phc_test", send=False)
    _, msg = client.track("u", "Dated", {"when": datetime.datetime(2024, 1, 2, 3, 4, 5)})
    written = spool.Spool(str(tmp_path), 1 << 20, ["posthog"], lambda error, batch: None)
    assert written.write(msg)
    (name,) = [n for n in os.listdir(tmp_path) if n.endswith(".spool")]
    content = (tmp_path / name).read_bytes()
    assert content.startswith(b"j 1 posthog ")
    records, damaged = spool._read(content)
    assert damaged == 0
    assert records[1][1]["properties"] == {"when": "2024-01-02T03:04:05"}
    assert records[1][1]["messageId"] == msg["messageId"]
