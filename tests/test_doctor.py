"""``analytics-posthog doctor`` against the loopback capture endpoint."""

from __future__ import annotations

import io
import json
import socket

import pytest

from analytics_posthog._cli import doctor
from analytics_posthog.testing import CaptureServer


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("POSTHOG_API_KEY", "POSTHOG_PROJECT_API_KEY", "POSTHOG_HOST", "SEGMENT_WRITE_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


def run(**kwargs):
    out = io.StringIO()
    code = doctor.run(out=out, timeout=2.0, **kwargs)
    return code, out.getvalue()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_key_says_what_to_set():
    code, out = run()
    assert code == 1
    assert "PostHog: off (no POSTHOG_API_KEY / POSTHOG_PROJECT_API_KEY" in out
    assert "Segment: off (no SEGMENT_WRITE_KEY" in out
    assert "FIX: nothing would be sent" in out


def test_posthog_only_from_environment_with_masked_key(capture_server, monkeypatch):
    monkeypatch.setenv("POSTHOG_API_KEY", "phc_abcdefgh123456789z")
    monkeypatch.setenv("POSTHOG_HOST", capture_server.url)
    code, out = run()
    assert code == 0, out
    assert (
        "PostHog: on (key phc_…9z from POSTHOG_API_KEY), host %s (POSTHOG_HOST)"
        % capture_server.url
        in out
    )
    assert "phc_abcdefgh123456789z" not in out
    assert "Segment: off (no SEGMENT_WRITE_KEY" in out
    assert "reachable" in out and capture_server.event_count == 0


def test_phc_write_key_counts_as_posthog(capture_server):
    code, out = run(write_key="phc_abcdefgh123456789z", posthog_host=capture_server.url)
    assert code == 0, out
    assert "from --write-key, a phc_ key counts as PostHog's" in out
    assert "Segment: off (the write key starts with phc_" in out


def test_both_legs_send_test_events(capture_server):
    with CaptureServer() as segment_server:
        code, out = run(
            posthog_api_key="phc_abcdefgh123456789z",
            posthog_host=capture_server.url,
            write_key="seg_write_key_1234",
            host=segment_server.url,
            send=True,
        )
        assert code == 0, out
        assert "Segment: on, dual-write (write key seg_…34 from --write-key)" in out
        assert "PostHog: test event 'analytics_posthog doctor test' accepted" in out
        assert "Segment: test event 'analytics_posthog doctor test' accepted" in out
        assert capture_server.wait_for_events(1)[0]["event"] == doctor.TEST_EVENT
        assert segment_server.wait_for_segment(1)[0]["event"] == doctor.TEST_EVENT
        assert "OK: everything configured works." in out


def test_rejected_posthog_key(capture_server):
    capture_server.fail(401, leg="posthog")
    code, out = run(
        posthog_api_key="phc_abcdefgh123456789z", posthog_host=capture_server.url, send=True
    )
    assert code == 1
    assert "PostHog: test event NOT accepted: the key was refused (HTTP 401)" in out
    assert "1 problem(s) found." in out


def test_unreachable_host():
    code, out = run(
        posthog_api_key="phc_abcdefgh123456789z",
        posthog_host="http://127.0.0.1:%d" % free_port(),
        send=True,
    )
    assert code == 1
    assert "unreachable: connection refused on 127.0.0.1 port" in out
    assert "test event" not in out


def test_unresolvable_host():
    code, out = run(
        posthog_api_key="phc_abcdefgh123456789z", posthog_host="http://no-such-host.invalid"
    )
    assert code == 1
    assert "the name no-such-host.invalid does not resolve (DNS)" in out


def test_console_command_wiring(capture_server):
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "analytics_posthog",
            "doctor",
            "--posthog-host",
            capture_server.url,
            "--send",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "NO_PROXY": "127.0.0.1",
            "POSTHOG_PROJECT_API_KEY": "phc_abcdefgh123456789z",
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "from POSTHOG_PROJECT_API_KEY" in result.stdout


def test_the_patches_are_one_line_unless_verbose(capture_server):
    code, out = run(posthog_api_key="phc_test", posthog_host=capture_server.url)
    assert code == 0, out
    patch_lines = [line for line in out.splitlines() if "patch" in line.lower()]
    assert patch_lines == ["Internal patches: all %d active." % len(doctor.reaches.REGISTER)]
    code, out = run(posthog_api_key="phc_test", posthog_host=capture_server.url, verbose=True)
    for name in doctor.reaches.REGISTER:
        assert any(line.split()[:1] == [name] for line in out.splitlines()), name


def test_json_reports_the_legs_the_patches_and_the_verdict(capture_server):
    code, out = run(
        posthog_api_key="phc_test", posthog_host=capture_server.url, send=True, as_json=True
    )
    report = json.loads(out)
    assert code == 0 and report["ok"] is True
    leg = report["legs"]["PostHog"]
    assert (leg["host"], leg["reachable"], leg["accepted"], leg["problem"]) == (
        capture_server.url,
        True,
        True,
        None,
    )
    assert "phc_test" not in out
    assert {p["name"] for p in report["patches"]} == set(doctor.reaches.REGISTER)
    assert {p["state"] for p in report["patches"]} == {"active"}
    assert report["text"][-1] == "OK: everything configured works."


def test_a_personal_key_and_a_bad_host_are_problems(capture_server):
    code, out = run(posthog_api_key="phx_personal", posthog_host=capture_server.url)
    assert code == 1 and "FIX: the PostHog key given is a personal API key" in out
    assert "phx_personal" not in out
    code, out = run(posthog_api_key="phc_test", posthog_host="us.i.posthog.com")
    assert code == 1 and "FIX: posthog_host must be an http(s) URL" in out
