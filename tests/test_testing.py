"""The capture server as a package, as a process of its own, and as a pytest plugin.

The process is what people testing their own apps run beside them: everything
it captured must be readable over HTTP, and its faults armed over HTTP.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import posthog
from capture_http import REPO, cli_server, get, get_json, post, raw_event, with_repo_on_path
from segment.analytics.client import Client as SegmentClient

PLUGIN = "analytics_posthog.testing.plugin"


def test_package_imports_no_clients_and_no_pytest() -> None:
    """Loaded by path under another name, so analytics_posthog itself (which imports posthog) stays out."""
    package = REPO / "analytics_posthog" / "testing"
    code = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('cs_testing', %r, submodule_search_locations=[%r])\n"
        "mod = importlib.util.module_from_spec(spec); sys.modules[spec.name] = mod\n"
        "spec.loader.exec_module(mod)\n"
        "print([m for m in ('posthog', 'segment', 'pytest', 'requests', 'analytics_posthog') if m in sys.modules])\n"
        "with mod.CaptureServer() as s: print(s.url.startswith('http://127.0.0.1:'))\n"
    ) % (str(package / "__init__.py"), str(package))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=True
    )
    assert out.stdout.split("\n")[:2] == ["[]", "True"], out.stderr


def test_cli_server_serves_what_it_captured() -> None:
    """An app in this process delivers with the real clients; the test reads the captures over HTTP."""
    with cli_server() as url:
        ph = posthog.Client("phc_test", host=url, sync_mode=True)
        sent = ph.capture("signed up", distinct_id="u1", properties={"plan": "pro"})
        ph.shutdown()
        ok, message = SegmentClient("wk", host=url, sync_mode=True).track(
            "u1", "Order Completed", {"total": 3}
        )
        assert ok

        (event,) = get_json(url + "/_captured/events")
        assert (event["uuid"], event["event"], event["properties"]["plan"]) == (
            sent,
            "signed up",
            "pro",
        )
        (segment,) = get_json(url + "/_captured/segment")
        assert (segment["messageId"], segment["event"]) == (message["messageId"], "Order Completed")
        requests = get_json(url + "/_captured/requests")
        assert [(r["path"], r["leg"], r["key"], r["status"], r["count"]) for r in requests] == [
            ("/batch/", "posthog", "phc_test", 200, 1),
            ("/v1/batch", "segment", "wk", 200, 1),
        ]
        assert requests[0]["body"]["batch"][0]["uuid"] == sent

        assert post(url + "/_fail", {"status": 503, "leg": "posthog", "times": 1})[0] == 200
        assert post(url + "/batch/", {"api_key": "k", "batch": [raw_event("refused")]})[0] == 503
        assert [r["status"] for r in get_json(url + "/_captured/requests")] == [200, 200, 503]
        assert len(get_json(url + "/_captured/events")) == 1

        assert post(url + "/_reset", None, raw=b"")[0] == 200
        assert get_json(url + "/_captured/events") == get_json(url + "/_captured/requests") == []


def test_count_only_cli_server_counts_and_takes_faults() -> None:
    with cli_server("--count-only") as url:
        assert (
            post(url + "/batch/", {"api_key": "k", "batch": [raw_event(), raw_event()]})[0] == 200
        )
        assert (
            post(url + "/v1/batch", {"writeKey": "wk", "batch": [{"type": "track", "event": "e"}]})[
                0
            ]
            == 200
        )
        assert get_json(url + "/_stats") == {"events": 2, "segment": 1, "requests": 2, "failed": 0}
        status, body = get(url + "/_captured/events")
        assert status == 409 and "count-only" in body["detail"]
        assert post(url + "/_fail", {"status": 500, "leg": "posthog", "times": 1})[0] == 200
        assert post(url + "/batch/", {"api_key": "k", "batch": [raw_event()]})[0] == 500
        assert post(url + "/batch/", {"api_key": "k", "batch": [raw_event()]})[0] == 200
        assert post(url + "/_fail", {"status": 500, "bogus": 1})[0] == 400
        assert post(url + "/_reset", None, raw=b"")[0] == 200
        assert get_json(url + "/_stats")["events"] == 0


def test_pytest_plugin_provides_fixture(tmp_path: Path) -> None:
    """What the pytest11 entry point does: load the plugin module."""
    (tmp_path / "test_uses_fixture.py").write_text(
        "import urllib.request, json\n"
        "def test_it(capture_server):\n"
        "    url = capture_server.url\n"
        "    assert json.load(urllib.request.urlopen(url + '/_stats'))['events'] == 0\n"
    )
    # Installed (pip install -e .): the entry point loads it, and passing -p
    # too would register it twice. Not installed: load it by hand.
    registered = any(ep.value == PLUGIN for ep in entry_points(group="pytest11"))
    plugin_args = [] if registered else ["-p", PLUGIN]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            *plugin_args,
            "-p",
            "no:cacheprovider",
            str(tmp_path),
        ],
        cwd=str(tmp_path),
        env=with_repo_on_path(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
