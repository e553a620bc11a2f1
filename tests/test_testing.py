"""The capture server as a package, as a process of its own, and as a pytest plugin.

The process is what people testing their own apps run beside them: everything
it captured must be readable over HTTP, and its faults armed over HTTP.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import posthog
import pytest
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


def run_user_tests(tmp_path: Path, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a user's test files with pytest in a process of its own, the plugin loaded."""
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    # Installed (pip install -e .): the entry point loads it, and passing -p
    # too would register it twice. Not installed: load it by hand.
    registered = any(ep.value == PLUGIN for ep in entry_points(group="pytest11"))
    plugin_args = [] if registered else ["-p", PLUGIN]
    return subprocess.run(
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
        timeout=120,
    )


def test_pytest_plugin_provides_fixture(tmp_path: Path) -> None:
    """What the pytest11 entry point does: load the plugin module."""
    result = run_user_tests(
        tmp_path,
        {
            "test_uses_fixture.py": "import urllib.request, json\n"
            "def test_it(capture_server):\n"
            "    url = capture_server.url\n"
            "    assert json.load(urllib.request.urlopen(url + '/_stats'))['events'] == 0\n"
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


#: App code as Segment code is written: production settings at import, calls
#: through the module-level API; and the team's tests of it, one server each.
USER_APP = """
import analytics_posthog as analytics

analytics.write_key = "prod-write-key"
analytics.host = "https://api.segment.invalid"
analytics.posthog_api_key = "phc_production"
analytics.posthog_host = "https://posthog.invalid"


def sign_up(user):
    analytics.track(user, "Signed up", {"plan": "pro"})
"""
USER_TESTS = """
import analytics_posthog as analytics
from app import sign_up


def check(capture_server, user):
    sign_up(user)
    assert analytics.flush(timeout=10) is True
    assert [(e["event"], e["distinct_id"]) for e in capture_server.events] == [("Signed up", user)]
    assert [(m["event"], m["userId"]) for m in capture_server.segment_messages] == [("Signed up", user)]


def test_first(capture_server):
    check(capture_server, "first")


def test_second(capture_server):
    check(capture_server, "second")


def test_the_settings_are_the_apps_again_after():
    assert analytics.default_client is None
    assert analytics.posthog_host == "https://posthog.invalid"
"""


@pytest.mark.slow
def test_a_teams_tests_of_module_level_calls_each_get_their_own_server(tmp_path: Path) -> None:
    """The default client is rebuilt around each test, pointed at its server on
    every leg the app configured: no event goes to the production hosts."""
    result = run_user_tests(tmp_path, {"app.py": USER_APP, "test_app.py": USER_TESTS})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    assert "invalid" not in result.stdout + result.stderr


USER_UNITTEST = """
import unittest
import analytics_posthog as analytics
from analytics_posthog.testing import CaptureServer, capture_to
from app import sign_up


class SignUpTests(unittest.TestCase):
    def setUp(self):
        self.server = self.enterContext(CaptureServer())
        self.enterContext(capture_to(self.server))

    def test_first(self):
        sign_up("first")
        self.assertTrue(analytics.flush(timeout=10))
        self.assertEqual([e["distinct_id"] for e in self.server.events], ["first"])

    def test_second(self):
        sign_up("second")
        self.assertTrue(analytics.flush(timeout=10))
        self.assertEqual([m["userId"] for m in self.server.segment_messages], ["second"])
"""


@pytest.mark.slow
def test_unittest_users_get_the_same_through_capture_to(tmp_path: Path) -> None:
    """docs/testing.md's unittest example, run as a team would run it."""
    (tmp_path / "app.py").write_text(USER_APP)
    (tmp_path / "test_app.py").write_text(USER_UNITTEST)
    result = subprocess.run(
        [sys.executable, "-m", "unittest", "-v", "test_app"],
        cwd=str(tmp_path),
        env=with_repo_on_path(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Ran 2 tests" in result.stderr and "OK" in result.stderr


def test_hosts_a_flask_app_sets_during_the_test_do_not_take_the_calls_away(
    capture_server, monkeypatch
):
    """An app factory run inside the test (init_app configures the hosts
    from app.config) still delivers to the test's server."""
    from flask import Flask

    import analytics_posthog
    from analytics_posthog.integrations.flask import FlaskAnalytics

    for name in ("posthog_host", "posthog_api_key"):  # init_app sets them: put back after
        monkeypatch.setattr(analytics_posthog, name, getattr(analytics_posthog, name))
    app = Flask(__name__)
    app.config.update(
        ANALYTICS_POSTHOG_API_KEY="phc_production",
        ANALYTICS_POSTHOG_HOST="https://posthog.invalid",
    )
    FlaskAnalytics(app)

    @app.get("/")
    def home():
        analytics_posthog.track("u1", "Home")
        return "ok"

    assert app.test_client().get("/").status_code == 200
    assert analytics_posthog.flush(timeout=10) is True
    assert [e["event"] for e in capture_server.events] == ["Home"]


def test_a_celery_task_run_eagerly_delivers_to_the_tests_server(capture_server):
    """docs/testing.md's Celery example: the task's call reaches the test's server."""
    from celery import Celery

    import analytics_posthog

    app = Celery("tasks", broker="memory://", backend="cache+memory://")
    app.conf.task_always_eager = True

    @app.task
    def send_receipt(user: str) -> None:
        analytics_posthog.track(user, "Receipt Sent")

    send_receipt.delay("u1")
    assert analytics_posthog.flush(timeout=10) is True
    assert [(e["event"], e["distinct_id"]) for e in capture_server.events] == [
        ("Receipt Sent", "u1")
    ]


DJANGO_SETTINGS = """
SECRET_KEY = "test"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "urls"
INSTALLED_APPS = ["analytics_posthog.integrations.django.AnalyticsPostHogConfig"]
MIDDLEWARE = ["analytics_posthog.integrations.django.AnalyticsMiddleware"]
ANALYTICS_POSTHOG = {"API_KEY": "phc_production", "HOST": "https://posthog.invalid",
                     "WRITE_KEY": "prod-write-key", "SEGMENT_HOST": "https://api.segment.invalid"}
"""
DJANGO_URLS = """
import analytics_posthog as analytics
from django.http import HttpResponse
from django.urls import path


def signup(request):
    analytics.track(request.GET["user"], "Signed up")
    return HttpResponse("ok")


urlpatterns = [path("signup/", signup)]
"""
DJANGO_TESTS = """
import analytics_posthog as analytics
from django.test import SimpleTestCase
from analytics_posthog.testing import CaptureServer, capture_to


class SignUpTests(SimpleTestCase):
    def setUp(self):
        self.server = self.enterContext(CaptureServer())
        self.enterContext(capture_to(self.server))

    def test_first(self):
        self.client.get("/signup/", {"user": "first"})
        self.assertTrue(analytics.flush(timeout=10))
        self.assertEqual([e["distinct_id"] for e in self.server.events], ["first"])
        self.assertEqual([m["userId"] for m in self.server.segment_messages], ["first"])

    def test_second(self):
        self.client.get("/signup/", {"user": "second"})
        self.assertTrue(analytics.flush(timeout=10))
        self.assertEqual([e["distinct_id"] for e in self.server.events], ["second"])
"""


@pytest.mark.slow
def test_a_django_testcase_gets_its_own_server_whatever_the_settings_say(tmp_path: Path) -> None:
    """docs/testing.md's Django example, run by Django's own test runner."""
    for name, text in (
        ("settings.py", DJANGO_SETTINGS),
        ("urls.py", DJANGO_URLS),
        ("test_signup.py", DJANGO_TESTS),
    ):
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "django", "test", "--settings=settings", "-v", "2"],
        cwd=str(tmp_path),
        env={**with_repo_on_path(), "PYTHONPATH": str(tmp_path) + os.pathsep + str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Ran 2 tests" in result.stderr and "invalid" not in result.stderr
