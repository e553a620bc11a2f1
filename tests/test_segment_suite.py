"""segment-analytics-python's own shipped test suite (``segment/analytics/test/``
of the installed package, 2.4.0) against analytics_posthog installed as
``segment.analytics``, and against Segment's own client for comparison.

Both runs are subprocesses of pytest with ``segment_suite_plugin`` (same
directory), which sends both legs to one loopback server. Segment's own
client must pass every test there (the harness is sound); under the shim,
every test passes but those that read Segment's internal queue and consumers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from segment.analytics import request as segment_request

pytestmark = pytest.mark.slow

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

#: Run under the shim with Segment's key alone (calls go to Segment only), as
#: a team that has not configured PostHog yet: every other test gets a
#: PostHog key through the environment as well, so that its clients deliver
#: to both legs. These five cannot have a second leg: one expects ``Client()``
#: to raise for want of any key, and the OAuth ones replace
#: ``requests.Session.post`` for the whole process and count every POST, so
#: the PostHog leg's requests would reach their stub too.
SEGMENT_ONLY = {
    "test_client.py::TestClient::test_requires_write_key": "expects Client() to raise for want of a key",
    "test_oauth.py::TestOauthIntegration::test_oauth_integration_success": "counts 2 POSTs, expects no on_error",
    "test_oauth.py::TestOauthIntegration::test_oauth_integration_recovery": "counts 4 POSTs, expects no on_error",
    "test_oauth.py::TestOauthIntegration::test_oauth_integration_failure": "counts 1 POST",
    "test_oauth.py::TestOauthIntegration::test_oauth_integration_fail_bad_key": "expects on_error from Segment's leg alone",
}

#: The whole 2.4.0 suite: a run that collected less did not run it.
SUITE_SIZE = 140


#: The suite in parts run side by side, each ``(files, shard)``: its time is
#: mostly waiting (with Segment's own client, test_consumer.py takes about
#: 27 s, test_client.py 10 s, the other files 10 s together), so the two
#: slow files' tests are dealt into shards.
SLOWEST = "test_consumer.py"
SLOW = "test_client.py"
PARTS = (
    *(([SLOWEST], "%d/3" % k) for k in range(3)),
    *(([SLOW], "%d/2" % k) for k in range(2)),
    (
        sorted(path.name for path in SUITE.glob("test_*.py") if path.name not in (SLOWEST, SLOW)),
        "0/1",
    ),
)


def start_suite(
    tmp_path: Path, shim: bool, files: list[str], shard: str
) -> tuple[subprocess.Popen[bytes], Path]:
    outcomes = tmp_path / (
        "%s-%s-%s.json" % ("shim" if shim else "segment", files[0], shard.replace("/", "of"))
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])
        ),
        "SEGMENT_SUITE_OUTCOMES": str(outcomes),
        "SEGMENT_SUITE_SHIM": "1" if shim else "",
        "SEGMENT_SUITE_SEGMENT_ONLY": "\n".join(SEGMENT_ONLY),
        "SEGMENT_SUITE_SHARD": shard,
    }
    for name in ("POSTHOG_API_KEY", "POSTHOG_PROJECT_API_KEY", "POSTHOG_HOST", "SEGMENT_WRITE_KEY"):
        env.pop(name, None)
    command = [
        sys.executable,
        "-m",
        "pytest",
        *(str(SUITE / name) for name in files),
        "--import-mode=importlib",
    ]
    command += ["-p", "segment_suite_plugin", "-q", "-p", "no:cacheprovider"]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    return process, outcomes


def run_suite(tmp_path: Path) -> tuple[dict[str, str], dict[str, str], dict[tuple[bool, str], int]]:
    """Outcomes with Segment's own client and under the shim, and the PostHog
    events each part delivered, by (shim, first file of the part)."""
    runs = {
        (shim, files[0], shard): start_suite(tmp_path, shim, files, shard)
        for shim in (False, True)
        for files, shard in PARTS
    }
    outcomes: dict[bool, dict[str, str]] = {False: {}, True: {}}
    posthog_events: dict[tuple[bool, str], int] = {}
    for (shim, first, _), (process, path) in runs.items():
        output, _ = process.communicate(timeout=240)
        assert path.exists(), output.decode(errors="replace")[-3000:]
        result = json.loads(path.read_text())
        outcomes[shim].update(result["outcomes"])
        posthog_events[shim, first] = (
            posthog_events.get((shim, first), 0) + result["posthog_events"]
        )
    return outcomes[False], outcomes[True], posthog_events


def failures(outcomes: dict[str, str]) -> dict[str, str]:
    return {name: outcome for name, outcome in outcomes.items() if outcome != "passed"}


def test_segments_own_suite_passes_against_the_shim(tmp_path):
    segment_outcomes, shim_outcomes, posthog_events = run_suite(tmp_path)
    # Under the shim, the part whose tests make Clients delivered to PostHog
    # too (test_consumer.py drives Segment's own Consumer class, which the
    # shim leaves as it is); with Segment's own client, nothing did.
    assert {part: events > 0 for part, events in posthog_events.items()} == {
        (shim, first): shim and first != SLOWEST
        for shim in (False, True)
        for (first, *_), _ in PARTS
    }

    assert len(segment_outcomes) == SUITE_SIZE
    assert failures(segment_outcomes) == {}
    assert set(shim_outcomes) == set(segment_outcomes)
    assert failures(shim_outcomes) == {name: "failed" for name in INSPECT_INTERNALS}
