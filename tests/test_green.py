"""gevent and eventlet: both legs deliver under each one's monkey-patching.

Each case is a script started as a process, as the patching must come
before anything else is imported; events are counted at the loopback
endpoints. gunicorn's gevent worker is in ``test_forks``.
"""

from __future__ import annotations

import json

import pytest
from processes import counted, run_script

pytestmark = pytest.mark.slow

CALLS = 3000

SCRIPT = (
    """
import sys
if sys.argv[1] == "gevent":
    from gevent import monkey
    monkey.patch_all()
else:
    import eventlet
    eventlet.monkey_patch()
import json, os
import analytics_posthog as analytics
from analytics_posthog import integrations

analytics.write_key = "wk"
analytics.host = os.environ["SEGMENT_HOST"]
analytics.posthog_api_key = "phc_test"
analytics.posthog_host = os.environ["POSTHOG_HOST"]
# Under eventlet the PostHog leg sends one request per event: on a loaded
# machine 3,000 of them can take longer than the default 5 s at exit.
analytics.exit_timeout = 60
reasons = []
analytics.on_error = lambda error, batch: reasons.append(str(error))
if sys.argv[2] == "own-posthog-client":
    import posthog
    analytics.posthog_client = posthog.Client("phc_own", host=os.environ["POSTHOG_HOST"])
for i in range(%d):
    analytics.track("user", "Green", {"i": i})
if sys.argv[3] == "lifespan":
    integrations.deliver_at_shutdown()
elif sys.argv[3] == "flush":
    analytics.flush()
print(json.dumps({"stats": analytics.default_client.stats(), "reasons": sorted(set(reasons)),
                  "told": len(reasons)}))
"""
    % CALLS
)


def run(tmp_path, posthog, segment, runtime: str, client: str, ending: str) -> dict:
    done = run_script(tmp_path / "green.py", SCRIPT, [runtime, client, ending], posthog, segment)
    assert "AttributeError" not in done.stderr, done.stderr
    return json.loads(done.stdout)


def assert_once(items, id_key: str) -> None:
    arrived = counted(items, "event", id_key, lambda item: item["properties"]["i"])
    assert dict(arrived) == {("Green", "user", i): 1 for i in range(CALLS)}


@pytest.mark.parametrize("ending", ["exit", "lifespan"])
@pytest.mark.parametrize("runtime", ["gevent", "eventlet"])
def test_both_legs_deliver_every_event_once(
    tmp_path, capture_server, segment_server, runtime, ending
):
    """At the interpreter's exit, or at a server's shutdown hook (a timed flush)."""
    result = run(tmp_path, capture_server, segment_server, runtime, "ours", ending)
    assert result["told"] == 0, result
    assert_once(capture_server.events, "distinct_id")
    assert_once(segment_server.segment_messages, "userId")


def test_an_apps_own_posthog_client_that_cannot_queue_is_counted_with_the_reason(
    tmp_path, capture_server, segment_server
):
    """posthog cannot queue under eventlet: every event it drops is counted,
    and told to ``on_error``, as that, not as a full queue; Segment's leg delivers."""
    result = run(
        tmp_path, capture_server, segment_server, "eventlet", "own-posthog-client", "flush"
    )
    assert result["stats"]["posthog"]["dropped"] == CALLS, result
    assert result["told"] == CALLS
    assert result["reasons"] == ["posthog cannot queue events in this runtime (its log says why)"]
    assert capture_server.events == []
    assert_once(segment_server.segment_messages, "userId")
