"""The Celery example runs offline: its task's event joins the visitor and session of the request that enqueued it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def test_celery_example_task_joins_the_requests_visitor():
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("POSTHOG_", "SEGMENT_", "CELERY_"))
    }
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "celery_app.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    events = {event["event"]: event for event in map(json.loads, out.splitlines())}
    assert set(events) == {"Order Completed", "Receipt Sent"}
    for event in events.values():
        assert (event["distinct_id"], event["$session_id"]) == ("browser-1", "session-1")
