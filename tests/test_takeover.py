"""install_as_segment(): every Segment import form resolves to analytics_posthog.

Each test runs in a fresh interpreter, because the takeover rewrites
sys.modules for the rest of the process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {
    "PATH": "/usr/bin:/bin",
    "NO_PROXY": "127.0.0.1",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
}


def run(code: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=ENV,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_import_form_resolves_to_analytics_posthog_and_settings_apply():
    checks = run(
        """
        import json
        import analytics_posthog
        analytics_posthog.install_as_segment()
        analytics_posthog.install_as_segment()  # idempotent

        import segment.analytics as a1
        from segment.analytics import Client
        from segment import analytics as a2
        import analytics as a3
        from segment.analytics.client import Client as C2

        a1.write_key = "wk-after-install"
        print(json.dumps({
            "forms": [m is analytics_posthog for m in (a1, a2, a3)],
            "client": Client is analytics_posthog.Client and C2 is analytics_posthog.Client,
            "setting": analytics_posthog.write_key,
            "install_exported": a3.install_as_segment is analytics_posthog.install_as_segment,
        }))
        """
    )
    assert checks == {
        "forms": [True, True, True],
        "client": True,
        "setting": "wk-after-install",
        "install_exported": True,
    }


def test_takeover_after_segment_was_already_imported():
    checks = run(
        """
        import json
        import segment.analytics as real
        import analytics_posthog
        analytics_posthog.install_as_segment()
        import segment.analytics as now
        print(json.dumps({"now": now is analytics_posthog, "held": real is not analytics_posthog}))
        """
    )
    assert checks == {"now": True, "held": True}


def test_dual_write_after_takeover_still_uses_segments_real_client():
    checks = run(
        """
        import json
        from analytics_posthog.testing import CaptureServer
        import analytics_posthog
        analytics_posthog.install_as_segment()
        import segment.analytics as analytics
        from analytics_posthog._delivery import segment_leg

        with CaptureServer() as posthog_server, CaptureServer() as segment_server:
            analytics.write_key = "seg-wk"
            analytics.host = segment_server.url
            analytics.posthog_api_key = "phc_test"
            analytics.posthog_host = posthog_server.url
            analytics.sync_mode = True
            ok, msg = analytics.track("u1", "Order Completed", {"total": 3}, message_id="m-1")
            seg = segment_server.wait_for_segment(1)[0]
            request = segment_server.requests[0]
            event = posthog_server.wait_for_events(1)[0]
        print(json.dumps({
            "ok": ok,
            "leg_class": segment_leg.SegmentClient.__module__,
            "library": seg["context"]["library"]["name"],
            "message_id": seg["messageId"],
            "integrations": seg["integrations"],
            "body_keys": sorted(request.body),
            "key": request.key,
            "posthog_event": event["event"],
        }))
        """
    )
    assert checks["ok"] is True
    assert checks["leg_class"] == "segment.analytics.client"
    # Segment's own client names itself on the wire; ours would say analytics-posthog.
    assert checks["library"] == "analytics-python"
    assert checks["message_id"] == "m-1"
    assert checks["integrations"] == {"PostHog": False}
    assert {"batch", "sentAt"} <= set(checks["body_keys"])
    assert checks["key"] == "seg-wk"
    assert checks["posthog_event"] == "Order Completed"


def test_segments_submodules_and_patch_targets_stay_segments_own():
    checks = run(
        """
        import json
        from unittest import mock
        import analytics_posthog
        analytics_posthog.install_as_segment()

        import segment.analytics.request as r
        from segment.analytics import request, utils
        import segment.analytics
        import segment.analytics.oauth_manager
        from segment.analytics.version import VERSION

        names = ("request", "utils", "consumer", "version", "oauth_manager")
        served = {n: getattr(segment.analytics, n).__name__ for n in names}
        with mock.patch("segment.analytics.request.post") as post:
            patched = r.post is post and request.post is post
        with mock.patch("segment.analytics.consumer.post") as post:
            patched_consumer = segment.analytics.consumer.post is post
        print(json.dumps({
            "served": served,
            "same": r is request and utils.remove_trailing_slash("h/") == "h",
            "patched": [patched, patched_consumer],
            "version": [segment.analytics.version.VERSION == VERSION, analytics_posthog.__version__ != VERSION],
        }))
        """
    )
    assert checks["served"] == {
        n: "segment.analytics." + n
        for n in ("request", "utils", "consumer", "version", "oauth_manager")
    }
    assert checks["same"] is True
    assert checks["patched"] == [True, True]
    assert checks["version"] == [True, True]


def test_client_has_segments_attributes():
    from analytics_posthog import Client

    client = Client(
        "wk",
        "https://events.example",
        False,
        1000,
        False,
        print,
        True,
        3,
        True,
        4.5,
        {"https": "p:1"},
    )
    assert (client.write_key, client.host, client.debug, client.send, client.on_error) == (
        "wk",
        "https://events.example",
        False,
        False,
        print,
    )
    assert (client.gzip, client.sync_mode, client.timeout, client.proxies) == (
        True,
        True,
        4.5,
        {"https": "p:1"},
    )


def test_a_module_that_imported_segment_first_is_named_in_one_warning(tmp_path):
    (tmp_path / "early_module.py").write_text("import segment.analytics as analytics\n")
    (tmp_path / "early_client.py").write_text("from segment.analytics import Client\n")
    checks = run(
        """
        import json, logging, sys
        sys.path.insert(0, %r)
        records = []
        logging.getLogger("analytics_posthog").addHandler(logging.Handler())
        logging.getLogger("analytics_posthog").handlers[-1].emit = records.append
        import early_module, early_client
        import analytics_posthog
        analytics_posthog.install_as_segment()
        print(json.dumps([r.getMessage() for r in records]))
        """
        % str(tmp_path)
    )
    assert len(checks) == 1, checks
    assert checks[0].startswith("analytics_posthog: early_client, early_module imported Segment")
    assert "Call install_as_segment() before they are imported" in checks[0]


def test_no_warning_when_nothing_imported_segment_first():
    checks = run(
        """
        import json, logging
        records = []
        logging.getLogger("analytics_posthog").addHandler(logging.Handler())
        logging.getLogger("analytics_posthog").handlers[-1].emit = records.append
        import analytics_posthog
        analytics_posthog.install_as_segment()
        print(json.dumps([r.getMessage() for r in records]))
        """
    )
    assert checks == []
