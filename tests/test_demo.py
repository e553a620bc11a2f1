"""The README's first command: the offline demo prints what PostHog received."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Each test starts a Python process of its own.
pytestmark = pytest.mark.slow


def test_demo_runs_offline_and_prints_the_six_events():
    result = subprocess.run(
        [sys.executable, "-m", "analytics_posthog", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1",
        },
    )
    assert result.returncode == 0, result.stderr
    assert "PostHog received 6 events" in result.stdout
    for name in (
        "$identify",
        "Order Completed",
        "$pageview",
        "$screen",
        "$groupidentify",
        "$create_alias",
    ):
        assert '"event": "%s"' % name in result.stdout
    blocks = result.stdout.split("\n\n")
    track = json.loads(
        next(b for b in blocks if '"Order Completed"' in b and b.lstrip().startswith("{"))
    )
    assert track["properties"]["$os"] == "iOS"
    assert track["properties"]["$ip"] == "203.0.113.42"
    assert track["properties"]["utm_source"] == "newsletter"
    # Literally as it arrived: posthog's own fields and the whole-context copies too.
    assert "$lib" in track["properties"] and "segment_context" not in track
    assert any(key.startswith("segment_") for key in track["properties"])
    assert "Segment received 6 messages" in result.stdout
    assert result.stdout.count('integrations={"PostHog": false}') == 6


def test_live_demo_without_key_says_what_to_set():
    result = subprocess.run(
        [sys.executable, "-m", "analytics_posthog", "demo", "--live"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "POSTHOG_API_KEY" in result.stdout
