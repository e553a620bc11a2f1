"""Each framework example runs offline and its calls arrive with the request's context."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("example", ["flask_app.py", "fastapi_app.py", "django_app/app.py"])
def test_example_runs_offline(example):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTHOG_", "SEGMENT_"))}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, str(ROOT / "examples" / example)], env=env, capture_output=True, text=True, timeout=30, check=True).stdout
    first = json.loads(out[: out.index("\n}\n") + 2])
    assert first["distinct_id"] == "browser-1"
    assert first["properties"]["$session_id"] == "session-1"
    assert first["properties"]["$raw_user_agent"] == "Mozilla/5.0 (demo)"
