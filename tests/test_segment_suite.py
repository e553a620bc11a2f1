"""segment-analytics-python's own shipped test suite (``segment/analytics/test/``
of the installed package, 2.4.0) against analytics_posthog installed as
``segment.analytics``, and against Segment's own client for comparison.

Both runs are subprocesses of pytest with ``segment_suite_plugin`` (same
directory), which sends both legs to one loopback server. Segment's own
client must pass every test there (the harness is sound); under the shim,
exactly the tests listed below differ, each for the reason given.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

from segment.analytics import request as segment_request

#: The installed package's tests (``request`` stays Segment's own module even under the shim).
SUITE = Path(segment_request.__file__).parent / "test"

#: Tests that read Segment's internal queue and consumer threads, which our
#: Client does not have (it dispatches to two legs, each with its own client).
INSPECT_INTERNALS = {
    "test_client.py::TestClient::test_default_timeout_15": "reads client.consumers[i].timeout",
    "test_client.py::TestClient::test_user_defined_timeout": "reads client.consumers[i].timeout",
    "test_client.py::TestClient::test_synchronous": "reads client.consumers and client.queue",
    "test_client.py::TestClient::test_flush": "reads client.queue",
    "test_client.py::TestClient::test_shutdown": "reads client.queue and client.consumers",
    "test_init.py::TestInit::test_max_queue_size": "reads client.queue.maxsize",
    "test_init.py::TestInit::test_max_retries": "reads client.consumers[i].retries",
    "test_consumer.py::TestConsumer::test_client_defaults_to_the_documented_rate_limit_budget": "reads client.consumers[0]",
}

#: The run gives PostHog its key through POSTHOG_API_KEY (so that every Client
#: the tests make has both legs); a Client with no argument is then configured.
KEY_FROM_ENVIRONMENT = {
    "test_client.py::TestClient::test_requires_write_key": "expects Client() to raise for want of a key",
}

#: Not run under the shim: they replace ``requests.Session.post`` for the whole
#: process and count every POST. The PostHog leg's requests reach their stub
#: too, which answers 404; posthog retries for its whole backoff (about 3 min
#: a test) and on_error hears of it, so their counts and on_error checks differ.
STUB_ALL_HTTP = {
    "test_oauth.py::TestOauthIntegration::test_oauth_integration_success": "counts 2 POSTs, expects no on_error",
    "test_oauth.py::TestOauthIntegration::test_oauth_integration_recovery": "counts 4 POSTs, expects no on_error",
    "test_oauth.py::TestOauthIntegration::test_oauth_integration_failure": "counts 1 POST",
    "test_oauth.py::TestOauthIntegration::test_oauth_integration_fail_bad_key": "expects on_error (called either way)",
}

#: The whole 2.4.0 suite: a run that collected less did not run it.
SUITE_SIZE = 140


#: The suite in two parts run side by side (its time is mostly waiting:
#: test_consumer.py takes about 26 s, the other files about 16 s).
SLOWEST = "test_consumer.py"
PARTS = ([SLOWEST], sorted(path.name for path in SUITE.glob("test_*.py") if path.name != SLOWEST))


def start_suite(tmp_path: Path, shim: bool, files: List[str]) -> "tuple[subprocess.Popen[bytes], Path]":
    outcomes = tmp_path / ("%s-%s.json" % ("shim" if shim else "segment", files[0]))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])),
        "SEGMENT_SUITE_OUTCOMES": str(outcomes),
        "SEGMENT_SUITE_SHIM": "1" if shim else "",
        "SEGMENT_SUITE_DESELECT": "\n".join(STUB_ALL_HTTP) if shim else "",
    }
    for name in ("POSTHOG_API_KEY", "POSTHOG_PROJECT_API_KEY", "POSTHOG_HOST", "SEGMENT_WRITE_KEY"):
        env.pop(name, None)
    command = [sys.executable, "-m", "pytest", *(str(SUITE / name) for name in files), "--import-mode=importlib"]
    command += ["-p", "segment_suite_plugin", "-q", "-p", "no:cacheprovider"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return process, outcomes


def run_suite(tmp_path: Path) -> "tuple[Dict[str, str], Dict[str, str]]":
    """Outcomes with Segment's own client, and under the shim."""
    runs = {(shim, files[0]): start_suite(tmp_path, shim, files) for shim in (False, True) for files in PARTS}
    outcomes: Dict[bool, Dict[str, str]] = {False: {}, True: {}}
    for (shim, _), (process, path) in runs.items():
        output, _ = process.communicate(timeout=240)
        assert path.exists(), output.decode(errors="replace")[-3000:]
        outcomes[shim].update(json.loads(path.read_text()))
    return outcomes[False], outcomes[True]


def failures(outcomes: Dict[str, str]) -> Dict[str, str]:
    return {name: outcome for name, outcome in outcomes.items() if outcome != "passed"}


def test_segments_own_suite_passes_against_the_shim(tmp_path):
    segment_outcomes, shim_outcomes = run_suite(tmp_path)

    assert len(segment_outcomes) == SUITE_SIZE
    assert failures(segment_outcomes) == {}
    assert set(shim_outcomes) == set(segment_outcomes) - set(STUB_ALL_HTTP)
    expected_to_differ = {**INSPECT_INTERNALS, **KEY_FROM_ENVIRONMENT}
    assert failures(shim_outcomes) == {name: "failed" for name in expected_to_differ}
