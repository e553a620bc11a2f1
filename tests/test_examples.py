"""Each framework example runs offline: a posthog-js browser, a visitor with no identity
at all and a browser known only by posthog-js's cookie all get 200, and their calls
arrive with the request's context, each visitor under one id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

# Each test starts a Python process of its own.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("example", ["flask_app.py", "fastapi_app.py", "django_app/app.py"])
def test_example_runs_offline_and_anonymous_visitors_get_a_cookie_id(example):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTHOG_", "SEGMENT_"))}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    lines = out.splitlines()
    assert [line.rsplit(" ", 1)[1] for line in lines if "->" in line] == [
        "200",
        "200",
        "200",
        "200",
    ]
    events = [json.loads(line) for line in lines if line.startswith("{")]
    first = events[0]
    assert first["distinct_id"] == "browser-1"
    assert first["properties"]["$session_id"] == "session-1"
    assert first["properties"]["$raw_user_agent"] == "Mozilla/5.0 (demo)"
    # The visitor with no identity: both its requests' events under the one id its cookie keeps.
    anonymous = [e for e in events if e["distinct_id"] not in ("browser-1", "browser-2")]
    assert len(anonymous) == 2 and anonymous[0]["event"] == first["event"]
    assert len({e["distinct_id"] for e in anonymous}) == 1 and uuid.UUID(
        anonymous[0]["distinct_id"]
    )
    assert all(
        "$session_id" not in e["properties"] and "$current_url" in e["properties"]
        for e in anonymous
    )
    # Known only by posthog-js's cookie: the app's own event joins the hook's id, not a new one.
    assert first["event"] in [e["event"] for e in events if e["distinct_id"] == "browser-2"]
