"""Promises at the edges a real app reaches (issue 19): integrations that enable
PostHog in dual-write, NaN in a dual-write call, timestamps at datetime's
ends, debug logging with several clients, and ``proxies`` on both legs."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import posthog
import pytest
from forward_proxy import ForwardProxy

import analytics_posthog
from analytics_posthog import Client
from analytics_posthog._patches import register as reaches
from analytics_posthog.mapping import event_uuid
from analytics_posthog.testing import CaptureServer


def dual(capture_server: CaptureServer, segment_server: CaptureServer, **settings) -> Client:
    return Client(
        "wk",
        host=segment_server.url,
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        upload_interval=0.05,
        **settings,
    )


# -- integrations that enable PostHog -------------------------------------------

ENABLING = [{"All": False, "PostHog": True}, {"PostHog": True}, {"posthog": {"opt": 1}}]


@pytest.mark.parametrize("sync_mode", [True, False], ids=["sync", "queued"])
def test_a_call_that_enables_posthog_reaches_it_once(capture_server, segment_server, sync_mode):
    """Our leg delivers it, so Segment's copy has its PostHog destination off,
    whatever the call said; a call that keeps PostHog out keeps its own flags."""
    client = dual(capture_server, segment_server, sync_mode=sync_mode)
    sent = [
        client.track("u1", "e%d" % i, integrations=flags)[1] for i, flags in enumerate(ENABLING)
    ]
    skipped = client.track("u1", "not for PostHog", integrations={"All": False, "Mixpanel": True})[
        1
    ]
    client.flush()
    events = capture_server.wait_for_events(3)
    assert sorted(e["uuid"] for e in events) == sorted(event_uuid(m["messageId"]) for m in sent)
    copies = {m["messageId"]: m["integrations"] for m in segment_server.wait_for_segment(4)}
    assert [copies[m["messageId"]] for m in sent] == [
        {"All": False, "PostHog": False},
        {"PostHog": False},
        {"PostHog": False},
    ]
    assert copies[skipped["messageId"]] == {"All": False, "Mixpanel": True}
    client.shutdown()


def test_without_a_posthog_leg_segment_routes_as_the_call_says(segment_server):
    """Segment only: nothing of ours delivers to PostHog, so Segment's own
    PostHog destination keeps receiving what the call routes to it."""
    client = Client("wk", host=segment_server.url, sync_mode=True)
    client.track("u1", "e", integrations={"PostHog": True})
    client.track("u1", "f")
    assert [m["integrations"] for m in segment_server.wait_for_segment(2)] == [
        {"PostHog": True},
        {},
    ]
    client.shutdown()


# -- timestamps beyond datetime's range once in UTC -----------------------------

EDGES = [
    (
        datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))),
        "9999-12-31T23:59:59.999",
    ),
    (datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))), "0001-01-01T00:00:00"),
]


@pytest.mark.parametrize("sync_mode", [True, False], ids=["sync", "queued"])
def test_a_timestamp_segment_sends_reaches_posthog_clamped(
    capture_server, segment_server, sync_mode
):
    """Segment's client accepts and sends them; PostHog gets the event at the
    nearest instant a datetime can hold, with nothing refused or reported."""
    errors = []
    client = dual(
        capture_server,
        segment_server,
        sync_mode=sync_mode,
        on_error=lambda error, batch: errors.append(error),
    )
    built = {}
    for i, (moment, _) in enumerate(EDGES):
        ok, msg = client.track("u1", "edge%d" % i, timestamp=moment)
        assert ok
        built[msg["event"]] = msg["timestamp"]
    client.flush()
    events = {e["event"]: e for e in capture_server.wait_for_events(2)}
    for i, (_, clamped) in enumerate(EDGES):
        assert events["edge%d" % i]["timestamp"].startswith(clamped)
    sent = {m["event"]: m["timestamp"] for m in segment_server.wait_for_segment(2)}
    assert sent == built
    assert errors == []
    stats = client.stats()
    assert stats["posthog"]["delivered"] == 2 and stats["posthog"]["failed"] == 0
    client.shutdown()


# -- NaN and infinities in a dual-write call ------------------------------------


@pytest.mark.parametrize("sync_mode", [True, False], ids=["sync", "queued"])
def test_nan_costs_no_event_on_either_leg(capture_server, segment_server, sync_mode):
    """The loopback endpoints parse strictly, as Segment's and PostHog's do: a
    bare NaN would cost the whole batch, its innocent neighbours included."""
    errors = []
    client = dual(
        capture_server,
        segment_server,
        sync_mode=sync_mode,
        upload_size=100,
        on_error=lambda error, batch: errors.append(error),
    )
    weird = {"nan": math.nan, "inf": math.inf, "deep": [{"x": -math.inf}, 1.5]}
    for i in range(10):
        assert client.track("u1", "e%d" % i, weird if i == 4 else {"n": i})[0]
    client.flush()
    assert len(capture_server.wait_for_events(10)) == 10
    messages = {m["event"]: m for m in segment_server.wait_for_segment(10)}
    assert messages["e4"]["properties"] == {"nan": None, "inf": None, "deep": [{"x": None}, 1.5]}
    assert errors == [] and client.stats()["segment"]["failed"] == 0
    assert all(r.status == 200 for r in segment_server.requests)
    client.shutdown()


def test_the_loopback_endpoints_refuse_nan_as_a_strict_server_does(capture_server):
    for path in ("/v1/batch", "/batch/"):
        body = b'{"writeKey": "wk", "api_key": "k", "batch": [{"type": "track", "x": NaN}]}'
        request = urllib.request.Request(capture_server.url + path, data=body, method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 400
    assert capture_server.event_count == capture_server.segment_count == 0


# -- debug=True -------------------------------------------------------------------

DEBUG_SCRIPT = """
import logging
from analytics_posthog import Client
clients = [
    Client("wk", host="{url}", posthog_api_key="phc_test", posthog_host="{url}", debug=True,
           sync_mode=True)
    for _ in range(5)
]
root = logging.getLogger()
assert root.handlers == [] and root.level == logging.WARNING, (root.handlers, root.level)
ours = logging.getLogger("analytics_posthog")
for name in ("analytics_posthog", "posthog", "segment"):
    assert len(logging.getLogger(name).handlers) == 1, (name, logging.getLogger(name).handlers)
ours.debug("line before the app's logging")
logging.getLogger("posthog").debug("posthog's line")
logging.getLogger("segment").debug("segment's line")
logging.basicConfig(level=logging.INFO, format="APP %(name)s: %(message)s")
logging.getLogger("app").info("the app's info line")
ours.debug("line after the app's logging")
for client in clients:
    client.track("u1", "e")
    client.shutdown()
"""


def test_debug_adds_one_handler_and_leaves_the_root_logger_to_the_app(capture_server):
    """Five clients print each line once; the app's later ``basicConfig(level=INFO)``
    takes effect (posthog's debug mode would have configured the root logger
    first). In a process of its own: the root logger is the process's."""
    result = subprocess.run(
        [sys.executable, "-c", DEBUG_SCRIPT.format(url=capture_server.url)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines.count("line before the app's logging") == 1, lines
    assert sum(line.endswith("posthog's line") for line in lines) == 1, lines
    assert lines.count("segment's line") == 1, lines
    assert lines.count("APP app: the app's info line") == 1, lines
    assert [line for line in lines if "line after the app's logging" in line] == [
        "APP analytics_posthog: line after the app's logging"
    ], lines
    assert capture_server.event_count == capture_server.segment_count == 5


# -- proxies ----------------------------------------------------------------------


@pytest.fixture
def proxy():
    with ForwardProxy() as running:
        yield running


@pytest.mark.parametrize("capture_mode", ["v0", "v1"])
@pytest.mark.parametrize("sync_mode", [True, False], ids=["sync", "queued"])
def test_proxies_carry_both_legs_and_no_one_elses_requests(
    capture_server, segment_server, proxy, sync_mode, capture_mode, monkeypatch
):
    """Behind an egress proxy both legs deliver through it (posthog's capture
    v0 and v1 alike); an app's own posthog client in the same process keeps
    connecting directly."""
    monkeypatch.setenv("POSTHOG_CAPTURE_MODE", capture_mode)
    path = {"v0": "/batch/", "v1": "/i/v1/analytics/events"}[capture_mode]
    client = dual(capture_server, segment_server, sync_mode=sync_mode, proxies={"http": proxy.url})
    apps_own = posthog.Client("phc_app", host=capture_server.url, sync_mode=True)
    for i in range(3):
        assert client.track("u1", "e%d" % i)[0]
    apps_own.capture("the app's own", distinct_id="u2")
    client.flush()
    assert len(capture_server.wait_for_events(4)) == 4
    assert len(segment_server.wait_for_segment(3)) == 3
    paths = [path for _, path in proxy.seen]
    posthog_requests = [
        r for r in capture_server.requests if r.path == path and r.key == "phc_test"
    ]
    assert posthog_requests and len(posthog_requests) == paths.count(path)
    assert paths.count("/v1/batch") == len(segment_server.requests) > 0
    assert [r.key for r in capture_server.requests].count("phc_app") == 1
    assert len(paths) == len(posthog_requests) + len(segment_server.requests)
    client.shutdown()
    apps_own.shutdown()


def test_proxies_with_an_apps_own_posthog_client_are_refused():
    apps_own = posthog.Client("phc_app", send=False)
    with pytest.raises(ValueError, match="proxies"):
        Client(posthog_client=apps_own, proxies={"https": "http://proxy.example:3128"})
    with pytest.raises(ValueError, match="proxies"):
        analytics_posthog.configure(
            posthog_client=apps_own, proxies={"https": "http://proxy.example:3128"}
        )


def test_proxies_are_refused_where_the_reach_cannot_apply(capture_server):
    """With the patches off, the PostHog leg has no way to use proxies: refused
    at configuration, never silently sent around the proxy."""
    script = (
        "from analytics_posthog import Client\n"
        "try:\n"
        "    Client(posthog_api_key='phc_test', posthog_host=%r, proxies={'http': 'http://127.0.0.1:9'})\n"
        "except ValueError as error:\n"
        "    print('refused:', error)\n"
        "Client('wk', host=%r, proxies={'http': 'http://127.0.0.1:9'}, send=True).shutdown()\n"
        "print('segment only: accepted')\n" % (capture_server.url, capture_server.url)
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, reaches.SWITCH: "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "refused: proxies cannot be applied to the PostHog leg" in result.stdout
    assert "segment only: accepted" in result.stdout


def test_capture_v1_per_event_results_are_counted_per_event(capture_server, monkeypatch):
    """PostHog's capture v1 answers 2xx with one event of ten dropped: nine
    are delivered, one failed, and only that one is told to ``on_error``."""
    monkeypatch.setenv("POSTHOG_CAPTURE_MODE", "v1")
    capture_server.reject_events(lambda event: event["properties"].get("i") == 3)
    told = []
    client = Client(
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        on_error=lambda error, batch: told.append(batch),
    )
    for i in range(10):
        client.track("u", "Counted", {"i": i})
    client.flush()
    stats = client.stats()["posthog"]
    client.shutdown()
    assert capture_server.requests[0].path == "/i/v1/analytics/events"
    assert sorted(e["properties"]["i"] for e in capture_server.events) == [
        0,
        1,
        2,
        4,
        5,
        6,
        7,
        8,
        9,
    ]
    assert (stats["delivered"], stats["failed"]) == (9, 1), stats
    assert [[event["properties"]["i"] for event in batch] for batch in told] == [[3]]


def test_sync_mode_failures_give_on_error_the_real_exception_on_both_legs(
    capture_server, segment_server, caplog
):
    """As Segment's leg always did: posthog's own exception, and no traceback
    per failed call (posthog logs one from inside ``capture()``)."""
    told = []
    client = Client(
        "wk",
        host=segment_server.url,
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        sync_mode=True,
        max_retries=0,
        on_error=lambda error, batch: told.append(error),
    )
    capture_server.fail(400, leg="posthog")
    segment_server.fail(400, leg="segment")
    with caplog.at_level(logging.DEBUG):
        accepted, _ = client.track("u", "Refused")
    assert accepted is False
    assert sorted(type(error).__module__.split(".")[0] for error in told) == [
        "posthog",
        "segment",
    ], told
    assert all(getattr(error, "status", None) == 400 for error in told), told
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
    assert {leg: counts["failed"] for leg, counts in client.stats().items()} == {
        "posthog": 1,
        "segment": 1,
    }


# -- an app's own posthog client -------------------------------------------------


def apps_client(capture_server: CaptureServer, app_told: list) -> posthog.Client:
    return posthog.Client(
        "phc_app",
        host=capture_server.url,
        flush_interval=0.05,
        on_error=lambda error, batch: app_told.append([e["event"] for e in batch]),
    )


@pytest.mark.parametrize("capture_mode", ["v0", "v1"])
def test_our_events_refused_in_an_apps_own_client_are_counted_and_told(
    capture_server, capture_mode, monkeypatch
):
    """PostHog refuses a batch holding the app's events and ours: our
    ``on_error`` hears ours only and ``stats()`` counts them failed, while the
    app's own ``on_error`` still hears its whole batch."""
    monkeypatch.setenv("POSTHOG_CAPTURE_MODE", capture_mode)
    app_told: list = []
    told: list = []
    own = apps_client(capture_server, app_told)
    client = Client(
        posthog_client=own,
        on_error=lambda error, batch: told.append(sorted(e["event"] for e in batch)),
    )
    capture_server.fail(400, leg="posthog")
    own.capture("App", distinct_id="app-user")
    for i in range(3):
        client.track("u", "Ours %d" % i)
    own.capture("App", distinct_id="app-user")
    client.flush()
    stats = client.stats()["posthog"]
    client.shutdown()
    own.shutdown()
    assert (stats["delivered"], stats["failed"], stats["queued"]) == (0, 3, 0), stats
    assert sorted(sum(told, [])) == ["Ours 0", "Ours 1", "Ours 2"]
    assert sorted(sum(app_told, [])) == ["App", "App", "Ours 0", "Ours 1", "Ours 2"]


def test_only_the_events_v1_dropped_in_an_apps_own_client_count_as_failed(
    capture_server, monkeypatch
):
    monkeypatch.setenv("POSTHOG_CAPTURE_MODE", "v1")
    capture_server.reject_events(lambda event: event["properties"].get("i") in (3, "app"))
    told: list = []
    own = apps_client(capture_server, [])
    client = Client(posthog_client=own, on_error=lambda error, batch: told.append(batch))
    own.capture("App", distinct_id="app-user", properties={"i": "app"})
    for i in range(10):
        client.track("u", "Counted", {"i": i})
    client.flush()
    stats = client.stats()["posthog"]
    client.shutdown()
    own.shutdown()
    assert (stats["delivered"], stats["failed"]) == (9, 1), stats
    assert [[event["properties"]["i"] for event in batch] for batch in told] == [[3]]


def test_an_apps_own_retries_are_not_counted_as_ours(capture_server):
    own = apps_client(capture_server, [])
    client = Client(posthog_client=own)
    capture_server.fail(503, leg="posthog", times=1)
    own.capture("App", distinct_id="app-user")
    own.flush()
    assert capture_server.wait_for_events(1)
    assert client.stats()["posthog"]["retried"] == 0
    capture_server.fail(503, leg="posthog", times=1)
    client.track("u", "Ours")
    client.flush()
    stats = client.stats()["posthog"]
    client.shutdown()
    own.shutdown()
    assert (stats["delivered"], stats["retried"], stats["failed"]) == (1, 1, 0), stats
