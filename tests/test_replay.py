"""``analytics-posthog replay`` over the loopback capture endpoint."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analytics_posthog import _backfill as replay
from analytics_posthog import mapping
from analytics_posthog.mapping import event_uuid

ROOT = Path(__file__).resolve().parent.parent
ENV = {
    "PATH": "/usr/bin:/bin",
    "NO_PROXY": "127.0.0.1",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
}


def msg(i, type_="track", day=17, **extra):
    base = {
        "type": type_,
        "messageId": "m-%d" % i,
        "timestamp": "2024-05-%02dT09:30:15.123Z" % day,
        "userId": "u%d" % i,
        "context": {"os": {"name": "iOS", "version": "17.4"}},
    }
    base.update(
        {
            "track": {"event": "E%d" % i},
            "group": {"groupId": "g"},
            "alias": {"previousId": "a"},
        }.get(type_, {})
    )
    base.update(extra)
    return base


def write(path: Path, messages, compress=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join((m if isinstance(m, str) else json.dumps(m)) + "\n" for m in messages).encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return str(path)


def run(server, paths, **options):
    out, err = io.StringIO(), io.StringIO()
    options.setdefault("api_key", "phc_test")
    options.setdefault("host", server.url if server else None)
    code = replay.replay(replay.Options(paths=paths, **options), out, err)
    return code, out.getvalue(), err.getvalue()


def test_gzip_archive_directory_is_replayed_in_historical_mode(capture_server, tmp_path):
    archive = tmp_path / "segment-logs" / "src"
    write(
        archive / "1715904000000" / "a.gz",
        [msg(1), msg(2, "identify", anonymousId="anon")],
        compress=True,
    )
    # gzip detected by its magic bytes, whatever the name says
    write(archive / "1715990400000" / "b.json", [msg(3, "page", name="Home")], compress=True)
    code, _, err = run(capture_server, [str(archive)])
    assert code == 0, err
    events = {e["uuid"]: e for e in capture_server.wait_for_events(3)}
    assert set(events) == {event_uuid("m-1"), event_uuid("m-2"), event_uuid("m-3")}
    track = events[event_uuid("m-1")]
    assert track["event"] == "E1"
    assert track["timestamp"].startswith("2024-05-17T09:30:15.123")
    assert (track["properties"]["$os"], track["properties"]["$os_version"]) == ("iOS", "17.4")
    assert "$python_version" not in track["properties"]
    assert events[event_uuid("m-2")]["properties"]["$anon_distinct_id"] == "anon"
    assert all(r.body.get("historical_migration") is True for r in capture_server.requests)
    assert "track 1, identify 1, page 1" in err


def test_stdin_through_the_console_command(capture_server):
    lines = "".join(json.dumps(msg(i)) + "\n" for i in range(3))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "analytics_posthog",
            "replay",
            "-",
            "--posthog-host",
            capture_server.url,
        ],
        input=lines,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**ENV, "POSTHOG_API_KEY": "phc_env"},
    )
    assert result.returncode == 0, result.stderr
    assert sorted(e["event"] for e in capture_server.wait_for_events(3)) == ["E0", "E1", "E2"]
    assert capture_server.requests[0].key == "phc_env"


def test_bad_lines_are_reported_with_file_and_line_and_the_rest_is_sent(capture_server, tmp_path):
    path = write(
        tmp_path / "export.jsonl",
        [
            msg(1),
            "{not json",
            {k: v for k, v in msg(3).items() if k != "messageId"},
            msg(4, "bogus"),
            {k: v for k, v in msg(5).items() if k != "userId"},
            msg(6, timestamp="yesterday"),
            msg(7, "group", groupId=None),
            msg(8),
        ],
    )
    code, _, err = run(capture_server, [path])
    assert code == replay.EXIT_REJECTS
    assert sorted(e["event"] for e in capture_server.wait_for_events(2)) == ["E1", "E8"]
    for number in range(2, 8):
        assert "%s:%d: rejected" % (path, number) in err
    rejects = [json.loads(line) for line in open(path + ".rejects.jsonl")]
    assert [r["line"] for r in rejects] == [2, 3, 4, 5, 6, 7]
    assert rejects[0]["raw"] == "{not json" and rejects[0]["reason"].startswith("invalid JSON")
    assert "messageId" in rejects[1]["reason"]
    assert "bogus" in rejects[2]["reason"]
    assert "userId" in rejects[3]["reason"]
    assert "timestamp" in rejects[4]["reason"]
    assert "groupId" in rejects[5]["reason"]
    assert "rejected 6" in err


def test_interrupted_replay_resumes_from_the_checkpoint(capture_server, tmp_path):
    path = write(tmp_path / "export.jsonl.gz", [msg(i) for i in range(5)], compress=True)
    code, _, _ = run(capture_server, [path], limit=3)
    assert code == 0
    assert [e["event"] for e in capture_server.wait_for_events(3)] == ["E0", "E1", "E2"]
    checkpoint = json.loads(open(path + ".replay-checkpoint.json").read())
    assert (checkpoint["day"], checkpoint["done"], checkpoint["complete"]) == (
        "2024-05-17",
        3,
        False,
    )
    code, _, err = run(capture_server, [path])
    assert code == 0
    assert [e["event"] for e in capture_server.events] == ["E0", "E1", "E2", "E3", "E4"]
    assert "3 events already sent" in err
    checkpoint = json.loads(open(path + ".replay-checkpoint.json").read())
    assert (checkpoint["complete"], checkpoint["sent"]) == (True, {"track": 5})


def test_a_rerun_sends_the_same_uuids(capture_server, tmp_path):
    path = write(tmp_path / "export.jsonl", [msg(i, t) for i, t in enumerate(replay.TYPES)])
    run(capture_server, [path], checkpoint=str(tmp_path / "first.json"))
    first = [e["uuid"] for e in capture_server.wait_for_events(6)]
    capture_server.clear()
    run(capture_server, [path], checkpoint=str(tmp_path / "second.json"))
    assert [e["uuid"] for e in capture_server.wait_for_events(6)] == first
    assert first == [event_uuid("m-%d" % i) for i in range(6)]


def test_dry_run_prints_events_and_sends_nothing(capture_server, tmp_path):
    path = write(tmp_path / "export.jsonl", [msg(1), msg(2, "screen", name="Welcome")])
    code, out, err = run(capture_server, [path], dry_run=True)
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["event"], e["uuid"]) for e in events] == [
        ("E1", event_uuid("m-1")),
        ("$screen", event_uuid("m-2")),
    ]
    assert events[1]["properties"]["$screen_name"] == "Welcome"
    assert "would send 2 events" in err
    assert capture_server.request_count == 0
    assert not os.path.exists(path + ".replay-checkpoint.json")


def test_since_until_and_types_filter(capture_server, tmp_path):
    path = write(
        tmp_path / "export.jsonl",
        [msg(1, day=1), msg(2, day=10), msg(3, "page", day=10), msg(4, day=20)],
    )
    code, out, err = run(
        None,
        [path],
        dry_run=True,
        since=replay.parse_moment("2024-05-05"),
        until=replay.parse_moment("2024-05-20"),
        types=replay.parse_types("track"),
    )
    assert code == 0
    assert [json.loads(line)["event"] for line in out.splitlines()] == ["E2"]
    assert "skipped 3 outside" in err
    with pytest.raises(ValueError):
        replay.parse_types("track,purchase")


def test_rate_limit_is_obeyed(capture_server, tmp_path):
    path = write(tmp_path / "export.jsonl", [msg(i) for i in range(10)])
    started = time.monotonic()
    code, _, _ = run(capture_server, [path], rate=25.0)
    elapsed = time.monotonic() - started
    assert code == 0
    assert capture_server.event_count == 10
    # The lower bound is the check (10 events at 25/s take at least 0.36 s);
    # the upper one only that the run ends, with room for a loaded machine.
    assert 9 / 25.0 <= elapsed < 30


def test_timestamps_in_segment_forms_parse_on_python_310():
    assert (
        replay.parse_timestamp is mapping.parse_timestamp
    )  # one parser, shared with the live mapping
    assert (
        replay.parse_timestamp("2024-05-17T09:30:15.1Z").isoformat()
        == "2024-05-17T09:30:15.100000+00:00"
    )
    assert (
        replay.parse_timestamp("2024-05-17T11:30:15+02:00").isoformat()
        == "2024-05-17T09:30:15+00:00"
    )
    assert replay.parse_timestamp("2024-05-17T09:30:15").isoformat() == "2024-05-17T09:30:15+00:00"
    assert (
        replay.parse_timestamp("2024-05-17T09:30:15.123456789Z").isoformat()
        == "2024-05-17T09:30:15.123456+00:00"
    )
    for bad in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "yesterday", 1715938215):
        with pytest.raises(ValueError):
            replay.parse_timestamp(bad)
