"""pytest plugin for running segment-analytics-python's shipped test suite
(``pytest --pyargs segment.analytics.test -p segment_suite_plugin``), with no
network: Segment's tests post to the default host ``https://api.segment.io``
and PostHog gets a key only here, so both legs are sent to one loopback
``CaptureServer`` that starts with the run.

``SEGMENT_SUITE_SHIM=1`` runs the suite against analytics_posthog installed
as ``segment.analytics`` (``install_as_segment()``), with a PostHog key in the
environment so every ``Client`` the tests make delivers to both legs; without
it, against Segment's own client. ``SEGMENT_SUITE_SEGMENT_ONLY`` lists test ids
(``test_file.py::Class::test``, one a line) run with no PostHog key, as a team
that has only Segment's key configured. ``SEGMENT_SUITE_SHARD=k/n`` runs
only every n-th collected test, starting at the k-th (from 0), so that one
slow file can be run as n processes side by side.
``SEGMENT_SUITE_OUTCOMES`` names a JSON file that receives
``{"outcomes": {test id: "passed" | "failed" | "skipped"}, "posthog_events": n}``
(how many events the PostHog leg delivered, so that a run whose second leg
never sent anything cannot pass for one that did).

Segment's tests leave about forty clients behind, whose exit handlers each
wait out an upload interval (some 20 s in all): once the outcomes are written
the run ends without them.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest
from requests.adapters import HTTPAdapter

from analytics_posthog.testing import CaptureServer

SEGMENT_API = "https://api.segment.io"

#: Tests that need the server to take longer than their timeout (0.1 ms, which
#: api.segment.io always does and a loopback server never does): the server
#: holds its answer to their request a little.
SLOW_SERVER_TESTS = ("test_request.py::TestRequests::test_should_timeout",)

_outcomes: dict[str, str] = {}
_server: dict[str, CaptureServer] = {}
_exit_status: dict[str, int] = {}


def test_id(nodeid: str) -> str:
    """``test_file.py::Class::test``, wherever the installed package lives."""
    return nodeid.rpartition("segment/analytics/test/")[2]


class LoopbackAdapter(HTTPAdapter):
    """Sends what was addressed to ``SEGMENT_API`` to the loopback server."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        request.url = self.url + request.url[len(SEGMENT_API) :]
        return super().send(request, **kwargs)


def pytest_configure(config: pytest.Config) -> None:
    server = _server["capture"] = CaptureServer().start()
    config.add_cleanup(server.stop)
    # Segment's own request module, whichever client the run uses: both legs'
    # Segment traffic goes through its session.
    import segment.analytics.request

    segment.analytics.request._session.mount(SEGMENT_API, LoopbackAdapter(server.url))
    if os.environ.get("SEGMENT_SUITE_SHIM") == "1":
        os.environ["POSTHOG_HOST"] = server.url
        import analytics_posthog

        analytics_posthog.install_as_segment()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    shard, _, shards = os.environ.get("SEGMENT_SUITE_SHARD", "0/1").partition("/")
    kept = items[int(shard) :: int(shards)]
    dropped = [item for item in items if item not in kept]
    if dropped:
        items[:] = kept
        config.hook.pytest_deselected(items=dropped)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before the test's own set-up, where its clients are made."""
    if item.nodeid.endswith(SLOW_SERVER_TESTS):
        _server["capture"].hang(0.05, leg="segment", times=1)
    if os.environ.get("SEGMENT_SUITE_SHIM") == "1":
        segment_only = set(os.environ.get("SEGMENT_SUITE_SEGMENT_ONLY", "").split())
        if test_id(item.nodeid) in segment_only:
            os.environ.pop("POSTHOG_API_KEY", None)
        else:
            os.environ["POSTHOG_API_KEY"] = "phc_segment_suite"


def pytest_runtest_teardown(item: pytest.Item) -> None:
    if item.nodeid.endswith(SLOW_SERVER_TESTS):
        _server["capture"].restore()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    name = test_id(report.nodeid)
    if report.when == "call" or report.outcome != "passed":
        if _outcomes.get(name) in (None, "passed"):
            _outcomes[name] = report.outcome


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status["status"] = int(exitstatus)
    path = os.environ.get("SEGMENT_SUITE_OUTCOMES")
    if path:
        with open(path, "w") as out:
            json.dump(
                {"outcomes": _outcomes, "posthog_events": _server["capture"].event_count},
                out,
                indent=1,
                sort_keys=True,
            )


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status.get("status", 0))
