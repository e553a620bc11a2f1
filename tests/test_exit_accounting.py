"""Exit against an endpoint that hangs: every drop is counted once, told to
``on_error`` and logged, in agreement, and posthog's queue is never overfilled."""

from __future__ import annotations

import collections
import json
import re
import subprocess
import sys
import textwrap

import pytest

from analytics_posthog.testing import CaptureServer

# Each test starts a Python process of its own.
pytestmark = pytest.mark.slow

CALLS = 20000

SCRIPT = """
import atexit, collections, json, logging, time
from analytics_posthog import Client

told = collections.Counter()

def on_error(error, batch):
    told[str(error)] += len(batch)

# Registered before the client's own exit handler, so it runs after it.
atexit.register(lambda: print(json.dumps({{"told": told, "stats": client.stats()}})))
logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
client = Client({write_key!r}, host={segment!r}, posthog_api_key="phc_test", posthog_host={posthog!r},
                on_error=on_error, exit_timeout=1.0, timeout=30, max_queue_size=2000)
for i in range({calls}):
    client.track("u1", "Before exit", {{"i": i}})
    if i == {calls} // 2:
        time.sleep(0.3)  # the legs take what they can meanwhile: at exit, posthog's queue is part full
"""

BOTH_LEGS = ("analytics-posthog queue is full", "exit came before delivery")


def logged_drops(stderr):
    """Per reason, the counts of every 'dropped' line, and how many were not kept for on_error."""
    counts, unkept = collections.Counter(), 0
    for line in stderr.splitlines():
        found = re.search(
            r"dropped (\d+) message\(s\)(?: \((\d+) of them too many.*?\))? \((.*)\); see stats",
            line,
        )
        if found:
            unkept += int(found.group(2) or 0)
            for reason, n in (item.rsplit(": ", 1) for item in found.group(3).split("; ")):
                counts[reason] += int(n)
    assert sum(counts.values()) > 0, stderr
    return counts, unkept


@pytest.mark.parametrize("dual", [False, True], ids=["posthog only", "dual-write"])
def test_exit_drops_agree_in_on_error_the_log_and_stats(capture_server, dual):
    with CaptureServer() as segment_server:
        capture_server.hang(30)
        segment_server.hang(30)
        script = SCRIPT.format(
            write_key="wk" if dual else None,
            segment=segment_server.url,
            posthog=capture_server.url,
            calls=CALLS,
        )
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        capture_server.restore()
        segment_server.restore()
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    logged, unkept = logged_drops(result.stderr)

    told = collections.Counter(report["told"])
    told.update({"analytics-posthog queue is full": unkept})
    assert told == logged, result.stderr
    legs = ("posthog", "segment") if dual else ("posthog",)
    assert set(report["stats"]) == set(legs)
    for leg in legs:
        stats = report["stats"][leg]
        mine = ("the %s leg's queue is full" % leg, "exit came before the %s leg delivered" % leg)
        assert stats["dropped"] == sum(
            n for reason, n in logged.items() if reason in BOTH_LEGS + mine
        )
        assert logged["exit came before the %s leg delivered" % leg] > 0
        in_flight = re.search(r"(\d+) message\(s\) were still in flight to %s" % leg, result.stderr)
        assert stats["queued"] == (int(in_flight.group(1)) if in_flight else 0), (
            "only what is in flight is queued"
        )
        assert stats["dropped"] + stats["queued"] == CALLS
        assert stats["delivered"] == 0
    overfilled = [
        line
        for line in result.stderr.splitlines()
        if "queue is full" in line and line.startswith("posthog")
    ]
    assert len(overfilled) <= 2, overfilled[:3]
