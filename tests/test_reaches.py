"""Reaches inside posthog and Segment: each checked, each falling back to the
library's own behaviour, all patches off with one switch; delivery holds either way.

Each case runs in a fresh process: the reaches are process-wide, and a
library is altered before analytics_posthog finds it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from analytics_posthog._patches import register as reaches

# Each test starts a Python process of its own.
pytestmark = pytest.mark.slow

BURST = 200

#: A dual-write burst, then the register as the process found it, as JSON on the last line.
BURST_SCRIPT = """
import json
from analytics_posthog import Client
from analytics_posthog._cli import doctor
from analytics_posthog._patches import register as reaches
client = Client("wk", host="{segment}", posthog_api_key="phc_test", posthog_host="{posthog}", upload_interval=0.05)
for i in range({n}):
    client.track("u%d" % i, "Burst", {{"i": i, "price": 1.5}})
client.group("u1", "acme")
client.shutdown()
{after}
doctor.posthog_internals.probe()
doctor.segment_internals.probe()
print(json.dumps({{r.name: [r.kind, r.state, r.reason] for r in reaches.REGISTER.values()}}))
"""


def run(script: str, env: dict | None = None) -> tuple:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result


def burst(capture_server, before: str = "", after: str = "", env: dict | None = None) -> dict:
    body = BURST_SCRIPT.format(
        segment=capture_server.url, posthog=capture_server.url, n=BURST, after=after
    )
    register, _ = run(before + body, env)
    assert capture_server.event_count == BURST + 1
    assert capture_server.segment_count == BURST + 1
    assert sorted(
        e["properties"]["i"] for e in capture_server.events if e["event"] == "Burst"
    ) == list(range(BURST))
    return register


def test_with_every_reach_active_a_burst_arrives(capture_server):
    register = burst(capture_server)
    assert {
        name: state for name, (_, state, _) in register.items() if state != reaches.ACTIVE
    } == {}


def test_the_switch_turns_every_patch_off_and_a_dual_write_burst_still_arrives(capture_server):
    after = (
        "import posthog.client, posthog.utils; assert posthog.client.clean is posthog.utils.clean"
    )
    register = burst(capture_server, after=after, env={reaches.SWITCH: "1"})
    patches = {name: state for name, (kind, state, _) in register.items() if kind == "patch"}
    assert set(patches) == {r.name for r in reaches.REGISTER.values() if r.kind == "patch"}
    assert set(patches.values()) == {reaches.SWITCHED_OFF}, patches
    server_os = [
        e["properties"].get("$os") for e in capture_server.events if e["event"] == "$groupidentify"
    ]
    assert server_os != [None], "without context_os, posthog's own system_context answers"


def test_doctor_says_which_reaches_are_off_and_why(capture_server):
    script = (
        """
    import io, json
    from analytics_posthog._cli import doctor
    out = io.StringIO()
    doctor.run(posthog_api_key="phc_test", posthog_host="%s", out=out, timeout=2, verbose=True)
    print(json.dumps(out.getvalue()))
    """
        % capture_server.url
    )
    text, _ = run(script, {reaches.SWITCH: "1"})
    assert "ANALYTICS_POSTHOG_NO_INTERNALS=1 turns the patches off; it is set" in text
    line = next(line for line in text.splitlines() if "clean_fast_path" in line)
    assert (
        " off " in line
        and "ANALYTICS_POSTHOG_NO_INTERNALS is set" in line
        and "instead: posthog's clean" in line
    )


#: reach -> code that alters what it replaces, before our first Client installs it,
#: into something unexpected that still behaves as the library's own.
ALTERED_BEFORE_INSTALL = {
    "system_context_once": "import posthog.client as m; f = m.system_context; m.system_context = lambda: f()",
    "clean_fast_path": "import posthog.client as m; f = m.clean; m.clean = lambda item: f(item)",
    "finite_first_encode": (
        "import posthog.request as m; f = m.DatetimeSerializer.encode\n"
        "m.DatetimeSerializer.encode = lambda self, o, extra=None: f(self, o)"
    ),
    "context_os": "import posthog.client as m; f = m.system_context; m.system_context = lambda: f()",
    "posthog_retry_jitter": (
        "import posthog.consumer as m; f = m._backoff\nm._backoff = lambda attempt_index, retry_after, extra=None: f(attempt_index, retry_after)"
    ),
    "posthog_attempt_watch": "import posthog.consumer as m; f = m.batch_post; m.batch_post = lambda *a, **k: f(*a, **k)",
    "posthog_outcome_watch": (
        "import posthog.consumer as m; f = m.Consumer.request\n"
        "m.Consumer.request = lambda self, batch: f(self, batch)"
    ),
    "posthog_exit_handoff": "import posthog; f = posthog.Client._atexit; posthog.Client._atexit = lambda self: f(self)",
    "segment_attempt_watch": "import segment.analytics.consumer as m; f = m.post; m.post = lambda *a, **k: f(*a, **k)",
    "segment_direct_queue": (
        "import segment.analytics.request as m; f = m.post\n"
        "m.post = lambda write_key, host=None, gzip=False, timeout=15, **k: f(write_key, host, gzip, timeout, **k)"
    ),
    "posthog_proxies": "import posthog.request as m; f = m._get_session; m._get_session = lambda: f()",
    "segment_finite_json": (
        "import json, segment.analytics.request as m\n"
        "m.DatetimeSerializer.encode = lambda self, o: json.JSONEncoder.encode(self, o)"
    ),
    "posthog_sync_failure": "import posthog.client as m; f = m.batch_post; m.batch_post = lambda *a, **k: f(*a, **k)",
    "posthog_session_close": (
        "import posthog.request as m\n"
        "class Wrapped:\n"
        "    def __init__(self, session): self.session = session\n"
        "    def __getattr__(self, name): return getattr(self.session, name)\n"
        "m._session = Wrapped(m._session)"
    ),
    "segment_session_in_child": (
        "import segment.analytics.request as m\n"
        "class Wrapped:\n"
        "    def __init__(self, session): self.session = session\n"
        "    def __getattr__(self, name): return getattr(self.session, name)\n"
        "m._session = Wrapped(m._session)"
    ),
}
#: What else the alteration takes away: posthog's own system_context (cached
#: and wrapped by two reaches), Segment's own ``request.post`` (which its consumer calls).
ALSO_FALLING_BACK = {
    "system_context_once": {"context_os"},
    "context_os": {"system_context_once"},
    "segment_direct_queue": {"segment_attempt_watch"},
}
#: reaches found at import: altered before analytics_posthog is imported.
ALTERED_BEFORE_IMPORT = {
    "context_pinning": "import posthog.contexts as m; f = m._get_current_context; m._get_current_context = lambda: f()",
    "context_identity": "import posthog.contexts as m; del m.get_context_distinct_id",
    "segment_message_helpers": "import segment.analytics.utils as m; del m.guess_timezone",
    "segment_limit_version": "import segment.analytics.version as m; del m.VERSION",
    "posthog_queue_check": "import posthog._disabled_lane_queue as m; del m._DisabledLaneQueue",
}


@pytest.mark.parametrize("name", sorted({**ALTERED_BEFORE_INSTALL, **ALTERED_BEFORE_IMPORT}))
def test_each_reach_falls_back_when_its_check_fails_and_delivery_holds(capture_server, name):
    if name in ALTERED_BEFORE_IMPORT:
        before = ALTERED_BEFORE_IMPORT[name] + "\n"
    else:
        before = "import analytics_posthog\n" + ALTERED_BEFORE_INSTALL[name] + "\n"
    register = burst(capture_server, before=before)
    kind, state, reason = register[name]
    assert state == reaches.FALLBACK and reason, register[name]
    others = {
        other: state
        for other, (_, state, _) in register.items()
        if state != reaches.ACTIVE and other != name
    }
    assert set(others) <= ALSO_FALLING_BACK.get(name, set()), others
