"""A host that cannot be reached, or answers with an error, is named in a
warning within seconds of the first failed attempt, with default retries."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest

from analytics_posthog._delivery import outages

POSTHOG_KEY = "phc_SECRET_posthog_key"
WRITE_KEY = "SECRET_segment_write_key"

#: Each leg's warnings, with the seconds since the call, then the process
#: ends without waiting for the retries (which go on for minutes).
SCRIPT = """
import logging, os, time
from analytics_posthog import Client

warnings = []

class Keep(logging.Handler):
    def emit(self, record):
        warnings.append((time.monotonic(), record.getMessage()))

logging.getLogger("analytics_posthog").addHandler(Keep(logging.WARNING))
client = Client({write_key!r}, host={segment!r}, posthog_api_key={posthog_key!r}, posthog_host={posthog!r})
started = time.monotonic()
client.track("u1", "Lost")
while time.monotonic() - started < 6 and sum("cannot deliver" in w for _, w in warnings) < 2:
    time.sleep(0.02)
for at, warning in warnings:
    print("%.2f %s" % (at - started, warning))
os._exit(0)
"""


def warnings_of(posthog: str, segment: str):
    script = SCRIPT.format(
        write_key=WRITE_KEY, posthog_key=POSTHOG_KEY, posthog=posthog, segment=segment
    )
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert POSTHOG_KEY not in result.stdout + result.stderr
    assert WRITE_KEY not in result.stdout + result.stderr
    lines = [line.split(" ", 1) for line in result.stdout.splitlines()]
    return {
        leg: [(float(at), text) for at, text in lines if "the %s leg cannot deliver" % leg in text]
        for leg in ("posthog", "segment")
    }


@pytest.mark.parametrize(
    "fault, reason",
    [
        ("refused", "connection refused"),
        ("401", "HTTP 401, the key was refused"),
        ("404", "HTTP 404, no such endpoint"),
        ("dns", "DNS lookup failed"),
    ],
)
def test_an_unreachable_or_wrong_host_is_named_within_seconds(
    capture_server, segment_server, fault, reason
):
    hosts = {"posthog": capture_server.url, "segment": segment_server.url}
    if fault == "refused":
        capture_server.refuse()
        segment_server.refuse()
    elif fault == "dns":
        hosts = {
            "posthog": "http://posthog.nonexistent.invalid",
            "segment": "http://segment.nonexistent.invalid:8080",
        }
    else:
        capture_server.fail(int(fault))
        segment_server.fail(int(fault))
    warned = warnings_of(hosts["posthog"], hosts["segment"])
    for leg, host in hosts.items():
        assert len(warned[leg]) == 1, warned
        at, text = warned[leg][0]
        assert at < 3.0, "%s warned after %.2f s" % (leg, at)
        assert host in text and reason in text


def test_one_warning_per_leg_host_and_reason_per_interval(caplog, monkeypatch):
    caplog.set_level(logging.WARNING, logger="analytics_posthog")
    monkeypatch.setattr(outages, "_warned_at", {})
    for _ in range(5):
        outages.failed_attempt(
            "posthog", "https://user:pass@eu.example.com:8443/ingest?token=x", 503
        )
    outages.failed_attempt("posthog", "https://user:pass@eu.example.com:8443/ingest?token=x", 401)
    outages.failed_attempt("segment", "https://user:pass@eu.example.com:8443/ingest?token=x", 503)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert all("https://eu.example.com:8443:" in m for m in messages)
    assert not any("pass" in m or "token" in m or "ingest" in m for m in messages)
