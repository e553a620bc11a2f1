"""Backfill on what real Segment archives hold: damage contained and named,
re-runs that tell the truth, PostHog's rules for historical imports, and
export writing exactly what replay sends."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import posthog.version
import segment.analytics.version as segment_version
from test_replay import ENV, ROOT, msg, run, write

from analytics_posthog import _backfill as replay
from analytics_posthog._backfill.lines import MAX_EVENT_BYTES
from analytics_posthog.mapping import event_uuid


def cli(*args, server=None, timeout=60):
    env = {**ENV, "POSTHOG_API_KEY": "phc_cli"}
    extra = ["--posthog-host", server.url] if server is not None and args[0] == "replay" else []
    return subprocess.run(
        [sys.executable, "-m", "analytics_posthog", *args, *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )


def rejects_of(path):
    return [json.loads(line) for line in open(path)]


def exported(directory):
    """(file name, events) per day file, in name order."""
    names = sorted(n for n in os.listdir(directory) if n.endswith(".jsonl.gz"))
    return [
        (n, [json.loads(line) for line in gzip.open(os.path.join(directory, n))]) for n in names
    ]


def damaged_archive(root: Path) -> Path:
    archive = root / "segment-logs" / "src"
    write(archive / "1715904000000" / "a.gz", [msg(i) for i in range(3)], compress=True)
    # a truncated gzip: its first lines are readable, the end is not
    whole = gzip.compress(
        "".join(json.dumps(msg(100 + i, userId="u" * 300)) + "\n" for i in range(300)).encode()
    )
    (archive / "1715904000000" / "b.gz").write_bytes(whole[: len(whole) * 2 // 3])
    write(
        archive / "1715990400000" / "c.json",
        [
            msg(10, day=18),
            msg(11, timestamp="0001-01-01T00:00:00+01:00"),
            "{not json",
            {k: v for k, v in msg(13).items() if k != "messageId"},
            msg(14, properties={"blob": "x" * (MAX_EVENT_BYTES + 10)}),
            msg(15, timestamp=(datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()),
            msg(16, day=18),
        ],
    )
    (archive / "dangling.gz").symlink_to(root / "nowhere.gz")
    (archive / "loop1").symlink_to(archive / "loop2")
    (archive / "loop2").symlink_to(archive / "loop1")
    os.mkfifo(archive / "fifo")
    return archive


def test_a_damaged_archive_is_contained_and_every_loss_named(capture_server, tmp_path):
    archive = damaged_archive(tmp_path)
    result = cli("replay", str(archive), server=capture_server)
    assert result.returncode == replay.EXIT_REJECTS, result.stderr
    assert "Traceback" not in result.stderr
    rejects = rejects_of(str(archive) + ".rejects.jsonl")
    by_line = {(os.path.basename(r["file"]), r["line"]): r["reason"] for r in rejects if r["line"]}
    assert "out of range" in by_line[("c.json", 2)]
    assert by_line[("c.json", 3)].startswith("invalid JSON")
    assert "messageId" in by_line[("c.json", 4)]
    assert "900 KiB" in by_line[("c.json", 5)]
    assert "newer than 48 hours" in by_line[("c.json", 6)]
    files = {os.path.basename(r["file"]): r["reason"] for r in rejects if r["line"] is None}
    assert (
        "damaged gzip" in files["b.gz"]
        and "dangling" in files["dangling.gz"]
        and "loop" in files["loop1"]
    )
    assert files["fifo"] == "not a regular file"
    for name in ("b.gz", "dangling.gz", "loop1", "loop2", "fifo"):
        assert (
            name + ": skipped" in result.stderr
            or os.path.join(str(archive), name) + ": skipped" in result.stderr
        )
    # the readable head of the truncated file was sent, with everything good
    events = capture_server.events
    head = [e for e in events if e["distinct_id"].startswith("uuu")]
    assert 50 < len(head) < 300
    assert {e["uuid"] for e in events} >= {event_uuid("m-%d" % i) for i in (0, 1, 2, 10, 16)}
    sent = json.loads(open(str(archive) + ".replay-checkpoint.json").read())["sent"]["track"]
    assert sent == len(events) == 5 + len(head)
    assert "sent %d events" % sent in result.stderr


def test_events_posthog_would_drop_are_rejected_at_the_exact_limit(capture_server, tmp_path):
    """The size is measured as posthog measures it: one byte under its limit
    arrives, one over is rejected (and not counted as sent)."""
    probe = write(tmp_path / "probe.jsonl", [msg(1, properties={"blob": "é"})])
    _, out, _ = run(None, [probe], dry_run=True)
    base = len(json.dumps(json.loads(out)).encode())  # posthog's measure of the event
    room = MAX_EVENT_BYTES - base  # each "é" costs 6 bytes (\u00e9), an "x" 1
    path = write(
        tmp_path / "sizes.jsonl",
        [
            msg(1, properties={"blob": "é" + "x" * room}),
            msg(2, properties={"blob": "é" + "x" * (room + 1)}),
        ],
    )
    code, _, err = run(capture_server, [path])
    assert code == replay.EXIT_REJECTS
    assert [e["uuid"] for e in capture_server.wait_for_events(1)] == [event_uuid("m-1")]
    assert "%s:2: rejected: event is %d bytes" % (path, MAX_EVENT_BYTES + 1) in err
    assert "sent 1 events" in err


def test_a_rerun_tells_what_the_checkpoint_holds_and_keeps_the_exit_code(capture_server, tmp_path):
    path = write(tmp_path / "export.jsonl", [msg(1), "{bad", msg(3)])
    assert run(capture_server, [path])[0] == replay.EXIT_REJECTS
    code, _, err = run(capture_server, [path])
    assert code == replay.EXIT_REJECTS
    assert (
        "nothing to do" in err
        and "3 lines read, 2 events sent, 1 lines and 0 files rejected" in err
    )
    assert path + ".rejects.jsonl" in err and "--restart" in err
    assert capture_server.event_count == 2
    code, _, err = run(capture_server, [path], restart=True)
    assert code == replay.EXIT_REJECTS and capture_server.event_count == 4
    assert len(rejects_of(path + ".rejects.jsonl")) == 1  # rewritten, not appended


def test_a_corrupt_or_foreign_checkpoint_is_named_and_nothing_is_sent(capture_server, tmp_path):
    path = write(tmp_path / "export.jsonl", [msg(1)])
    checkpoint = tmp_path / "export.jsonl.replay-checkpoint.json"
    checkpoint.write_text('{"version": 1, "inputs": ')
    result = cli("replay", path, server=capture_server)
    assert result.returncode == replay.EXIT_USAGE and "Traceback" not in result.stderr
    assert str(checkpoint) in result.stderr and "--restart" in result.stderr
    assert capture_server.request_count == 0
    os.remove(checkpoint)
    assert run(capture_server, [path])[0] == 0
    write(tmp_path / "export.jsonl", [msg(1), msg(2)])  # the input changed since
    code, _, err = run(capture_server, [path])
    assert code == replay.EXIT_USAGE and "belongs to other input" in err


def test_posthog_refusing_stops_the_run_without_counting_or_checkpointing(capture_server, tmp_path):
    path = write(tmp_path / "export.jsonl", [msg(i) for i in range(4)])
    capture_server.fail(400)
    code, _, err = run(capture_server, [path])
    assert code == replay.EXIT_DELIVERY
    assert "sent 0 events" in err and "STOPPED" in err
    state = json.loads(open(path + ".replay-checkpoint.json").read())
    assert (state["done"], state["sent"], state["complete"]) == (0, {}, False)
    capture_server.restore()
    code, _, err = run(capture_server, [path])
    assert code == 0 and capture_server.event_count == 4


def test_sent_oldest_day_first_across_files_whatever_their_names(capture_server, tmp_path):
    archive = tmp_path / "logs"
    write(archive / "a.json", [msg(1, day=20), msg(2, day=3)])
    write(archive / "b.json", [msg(3, day=1), msg(4, day=20), msg(5, day=3)], compress=True)
    code, _, err = run(capture_server, [str(archive)])
    assert code == 0, err
    assert [e["event"] for e in capture_server.wait_for_events(5)] == ["E3", "E2", "E5", "E1", "E4"]
    assert all(r.body["historical_migration"] is True for r in capture_server.requests)


def test_batches_stay_within_posthogs_request_limits(capture_server, tmp_path):
    path = write(
        tmp_path / "export.jsonl", [msg(i, properties={"pad": "p" * 2000}) for i in range(1100)]
    )
    code, _, _ = run(capture_server, [path], rate=100000.0)
    assert code == 0 and capture_server.event_count == 1100
    assert max(r.count for r in capture_server.requests) <= 500


def test_progress_is_redrawn_on_a_terminal_and_a_summary_ends_the_run(tmp_path):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    path = write(tmp_path / "export.jsonl", [msg(i) for i in range(3000)])
    err = Terminal()
    assert replay.export(replay.Options(paths=[path], out=str(tmp_path / "out")), err) == 0
    text = err.getvalue()
    assert "\r\x1b[Kexport: read 1024 lines" in text and "\r\x1b[Kexport: read 3000 lines" in text
    assert "lines/s, 100%, ETA 0s\n" in text
    assert (
        text.rstrip()
        .splitlines()[-3]
        .startswith("export done: 3000 lines read, wrote 3000 events (track 3000)")
    )


def test_429_with_retry_after_is_waited_out(capture_server, tmp_path):
    path = write(tmp_path / "export.jsonl", [msg(i) for i in range(3)])
    capture_server.fail(429, times=1, retry_after=3)
    started = time.monotonic()
    code, _, _ = run(capture_server, [path])
    assert code == 0 and capture_server.event_count == 3
    assert [r.status for r in capture_server.requests] == [429, 200]
    assert time.monotonic() - started >= 3  # posthog alone would have retried after 1 s


def test_export_writes_exactly_what_replay_sends(capture_server, tmp_path):
    archive = tmp_path / "logs"
    write(
        archive / "x.json",
        [
            msg(1, day=9),
            msg(2, "identify", day=2, anonymousId="a"),
            msg(3, "page", day=9, name="P"),
        ],
    )
    write(
        archive / "y.json",
        [
            msg(4, "group", day=2),
            msg(5, "alias", day=5),
            msg(6, "screen", day=2, name="S"),
            msg(7, context={"ip": "203.0.113.9", "os": {"name": "Android"}}),
        ],
        compress=True,
    )
    out = tmp_path / "out"
    result = cli("export", str(archive), "--out", str(out))
    assert result.returncode == 0, result.stderr
    files = exported(out)
    assert [name for name, _ in files] == [
        "2024-05-02.jsonl.gz",
        "2024-05-05.jsonl.gz",
        "2024-05-09.jsonl.gz",
        "2024-05-17.jsonl.gz",
    ]
    written = [event for _, events in files for event in events]
    code, _, _ = run(capture_server, [str(archive)])
    assert code == 0
    assert capture_server.wait_for_events(7) == written
    assert (
        written[0]["uuid"] == event_uuid("m-2")
        and "$python_version" not in written[0]["properties"]
    )
    assert [e["properties"].get("$os") for e in written[-1:]] == ["Android"]


def test_export_with_jobs_writes_the_same_files(tmp_path):
    archive = tmp_path / "logs"
    for n in range(6):
        write(
            archive / ("%d.json" % n),
            [msg(10 * n + i, day=1 + (n + i) % 4) for i in range(5)] + ["{x"],
            compress=True,
        )
    one, two = tmp_path / "one", tmp_path / "two"
    assert (
        cli("export", str(archive), "--out", str(one), "--rejects", str(tmp_path / "r1")).returncode
        == 1
    )
    assert (
        cli(
            "export",
            str(archive),
            "--out",
            str(two),
            "--rejects",
            str(tmp_path / "r2"),
            "--jobs",
            "2",
        ).returncode
        == 1
    )
    assert exported(one) == exported(two) and len(exported(one)) == 4
    assert open(tmp_path / "r1").read() == open(tmp_path / "r2").read()
    assert len(rejects_of(tmp_path / "r1")) == 6


def test_sigterm_stops_with_130_and_the_next_run_goes_on(capture_server, tmp_path):
    path = write(tmp_path / "export.jsonl", [msg(i) for i in range(60)])
    env = {**ENV, "POSTHOG_API_KEY": "phc_cli"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "analytics_posthog",
            "replay",
            path,
            "--rate",
            "20",
            "--posthog-host",
            capture_server.url,
        ],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    capture_server.wait_for_events(1, timeout=10)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == replay.EXIT_INTERRUPTED and "Traceback" not in err
    state = json.loads(open(path + ".replay-checkpoint.json").read())
    assert 0 < state["done"] == state["sent"]["track"] < 60 and state["complete"] is False
    code, _, err = run(capture_server, [path])
    assert code == 0 and "%d events already sent" % state["done"] in err
    assert {e["uuid"] for e in capture_server.events} == {event_uuid("m-%d" % i) for i in range(60)}


def test_version_and_usage_errors():
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("analytics-posthog ")
    # The versions behind it, which a bug report needs.
    assert (
        "(posthog %s, segment-analytics-python %s)"
        % (
            posthog.version.VERSION,
            segment_version.VERSION,
        )
        in result.stdout
    )
    result = cli("--help")
    assert "check that your keys and hosts work" in result.stdout
    assert "replay.cli" not in result.stdout
    result = cli("export", "/nonexistent/segment-logs", "--out", "/tmp/x")
    assert result.returncode == replay.EXIT_USAGE and "/nonexistent/segment-logs" in result.stderr
    assert "Traceback" not in result.stderr


def test_merges_posthog_will_refuse_are_counted_and_named_but_sent(capture_server, tmp_path):
    """An identify or alias on an id PostHog takes for a placeholder is sent
    as the archive has it; the summary counts it and the rejects file names
    it, marked sent, and the exit code stays 0."""
    path = write(
        tmp_path / "ids.jsonl",
        [
            msg(1, "identify", userId="None", anonymousId="anon-1"),
            msg(2, "alias", previousId="undefined"),
            msg(3, "identify", anonymousId="anon-3"),
            msg(4),
        ],
    )
    code, _, err = run(capture_server, [path])
    assert code == 0, err
    assert len(capture_server.wait_for_events(4)) == 4
    assert "2 identify/alias calls PostHog will not merge persons on" in err
    notes = rejects_of(path + ".rejects.jsonl")
    assert [(n["line"], n["sent"]) for n in notes] == [(1, True), (2, True)]
    assert "userId 'None' is a placeholder id to PostHog" in notes[0]["reason"]
    assert "previousId 'undefined' is a placeholder id to PostHog" in notes[1]["reason"]
