"""Tests for analytics_posthog.testing: the loopback capture server.

Every test drives the server over real loopback HTTP, mostly with the real
posthog and Segment clients, so the server is checked against what those
clients actually send and how they read the answers.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import posthog
import pytest
import requests
from posthog.request import APIError as PostHogAPIError
from posthog.request import batch_post
from segment.analytics.client import Client as SegmentClient
from segment.analytics.request import APIError as SegmentAPIError

from analytics_posthog.testing import CaptureServer, capture_server  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


# -- helpers -------------------------------------------------------------------


def _post(
    url: str,
    body: Any,
    *,
    headers: Optional[Dict[str, str]] = None,
    raw: Optional[bytes] = None,
    timeout: float = 5.0,
) -> Tuple[int, Dict[str, str], Any]:
    data = raw if raw is not None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(
        url,
        data=data,
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, dict(res.headers), json.loads(res.read() or b"null")
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), json.loads(err.read() or b"null")


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as res:
        return json.loads(res.read())


def _posthog(server: CaptureServer, **kwargs: Any) -> posthog.Client:
    kwargs.setdefault("sync_mode", True)
    return posthog.Client("phc_test", host=server.url, **kwargs)


def _segment(server: CaptureServer, **kwargs: Any) -> SegmentClient:
    kwargs.setdefault("sync_mode", True)
    return SegmentClient("wk", host=server.url, **kwargs)


def _event(name: str = "raw event") -> Dict[str, Any]:
    return {
        "event": name,
        "distinct_id": "u1",
        "properties": {"k": "v"},
        "uuid": str(uuid.uuid4()),
    }


# -- posthog leg -----------------------------------------------------------------


def test_posthog_capture_roundtrip(capture_server: CaptureServer) -> None:
    client = _posthog(capture_server)
    try:
        sent = client.capture("signed up", distinct_id="u1", properties={"plan": "pro"})
    finally:
        client.shutdown()

    events = capture_server.events
    assert [e["uuid"] for e in events] == [sent]
    assert events[0]["event"] == "signed up"
    assert events[0]["distinct_id"] == "u1"
    assert events[0]["properties"]["plan"] == "pro"
    assert capture_server.event_count == 1
    assert capture_server.segment_count == 0

    (req,) = capture_server.requests
    assert (req.method, req.path, req.leg, req.status) == ("POST", "/batch/", "posthog", 200)
    assert req.key == "phc_test"
    assert req.gzip is False and req.delivered is True and req.count == 1
    assert req.body["historical_migration"] is False
    assert "sent_at" in req.body
    assert req.headers["content-type"] == "application/json"


def test_posthog_gzip(capture_server: CaptureServer) -> None:
    client = _posthog(capture_server, gzip=True)
    try:
        sent = client.capture("zipped", distinct_id="u2")
    finally:
        client.shutdown()

    assert [e["uuid"] for e in capture_server.events] == [sent]
    (req,) = capture_server.requests
    assert req.gzip is True
    assert req.encoding == "gzip"
    assert req.headers["content-encoding"] == "gzip"
    assert req.body["batch"][0]["event"] == "zipped"


@pytest.mark.parametrize("compression", ["none", "gzip", "deflate"])
def test_posthog_capture_v1(capture_server: CaptureServer, compression: str) -> None:
    errors: List[Any] = []
    client = _posthog(
        capture_server,
        capture_mode="v1",
        capture_compression=compression,
        on_error=lambda e, batch: errors.append(e),
    )
    try:
        sent = client.capture("v1 event", distinct_id="u3")
    finally:
        client.shutdown()

    assert sent is not None
    events = capture_server.wait_for_events(1, timeout=2)
    assert [e["uuid"] for e in events] == [sent]
    assert events[0]["event"] == "v1 event"
    (req,) = capture_server.requests
    assert req.path == "/i/v1/analytics/events"
    assert req.status == 200
    assert req.key == "phc_test"  # from the Bearer header
    assert req.encoding == (None if compression == "none" else compression)
    assert errors == []


def test_posthog_single_event_courtesy_paths(capture_server: CaptureServer) -> None:
    single = {"api_key": "phc_single", **_event("single")}
    status, _, body = _post(capture_server.url + "/i/v0/e/", single)
    assert (status, body) == (200, {"status": 1})

    batch = {"api_key": "phc_batch", "batch": [_event("b1"), _event("b2")]}
    status, _, _ = _post(capture_server.url + "/e/", batch)
    assert status == 200

    gz = gzip.compress(json.dumps({"api_key": "phc_gz", **_event("gz")}).encode())
    status, _, _ = _post(
        capture_server.url + "/capture/", None, raw=gz, headers={"Content-Encoding": "gzip"}
    )
    assert status == 200

    assert [e["event"] for e in capture_server.events] == ["single", "b1", "b2", "gz"]
    assert "api_key" not in capture_server.events[0]
    assert [r.key for r in capture_server.requests] == ["phc_single", "phc_batch", "phc_gz"]


def test_unknown_path_and_bad_body(capture_server: CaptureServer) -> None:
    status, _, _ = _post(capture_server.url + "/nope", {"batch": []})
    assert status == 404
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(capture_server.url + "/batch/", timeout=5)
    assert info.value.code == 404
    info.value.close()

    status, _, body = _post(capture_server.url + "/batch/", None, raw=b"{not json")
    assert status == 400
    assert "invalid JSON" in body["detail"]
    assert capture_server.event_count == 0
    assert [r.status for r in capture_server.requests] == [400]
    assert capture_server.failed_count == 1


# -- segment leg --------------------------------------------------------------------


def test_segment_track_roundtrip(capture_server: CaptureServer) -> None:
    client = _segment(capture_server)
    ok, msg = client.track("user-1", "Order Completed", {"revenue": 9.5})
    assert ok is True

    (received,) = capture_server.segment_messages
    assert received["messageId"] == msg["messageId"]
    assert received["event"] == "Order Completed"
    assert received["properties"] == {"revenue": 9.5}
    assert capture_server.segment_count == 1
    assert capture_server.events == []

    (req,) = capture_server.requests
    assert (req.path, req.leg, req.status, req.key) == ("/v1/batch", "segment", 200, "wk")
    assert req.headers["authorization"].startswith("Basic ")
    assert req.body["writeKey"] == "wk" and "sentAt" in req.body


def test_segment_gzip(capture_server: CaptureServer) -> None:
    client = _segment(capture_server, gzip=True)
    client.identify("user-2", {"email": "a@example.com"})
    (received,) = capture_server.wait_for_segment(1, timeout=2)
    assert received["type"] == "identify"
    assert received["traits"] == {"email": "a@example.com"}
    assert capture_server.requests[0].gzip is True


# -- failure simulation ---------------------------------------------------------------


def test_fail_once_then_posthog_retry_delivers(capture_server: CaptureServer) -> None:
    capture_server.fail(503, leg="posthog", times=1)
    errors: List[Any] = []
    client = posthog.Client(
        "phc_test",
        host=capture_server.url,
        max_retries=1,
        flush_interval=0.05,
        on_error=lambda e, batch: errors.append(e),
    )
    try:
        sent = client.capture("retried", distinct_id="u1")
        client.flush()  # the consumer backs off 1 s before the retry
        events = capture_server.wait_for_events(1, timeout=5)
    finally:
        client.shutdown()

    assert [e["uuid"] for e in events] == [sent]
    reqs = capture_server.requests
    assert [r.status for r in reqs] == [503, 200]
    assert [r.delivered for r in reqs] == [False, True]
    # The failed attempt carried the same event but delivered nothing.
    assert reqs[0].body["batch"][0]["uuid"] == sent
    assert errors == []


def test_fail_error_bodies_understood_by_both_clients(capture_server: CaptureServer) -> None:
    capture_server.fail(429, retry_after=1)

    status, headers, body = _post(capture_server.url + "/batch/", {"api_key": "k", "batch": []})
    assert status == 429
    assert headers["Retry-After"] == "1"
    assert body["detail"] and body["code"] == "too_many_requests" and body["message"]

    # posthog's own request code parses detail and Retry-After.
    with pytest.raises(PostHogAPIError) as ph_err:
        batch_post("phc_test", capture_server.url, batch=[_event()])
    assert ph_err.value.status == 429
    assert ph_err.value.retry_after == 1.0
    assert "simulated 429" in ph_err.value.message

    # Segment's post() needs "code" and "message", else it reports "unknown".
    with pytest.raises(SegmentAPIError) as seg_err:
        _segment(capture_server).track("user-1", "Blocked")
    assert seg_err.value.status == 429
    assert seg_err.value.code == "too_many_requests"
    assert seg_err.value.response.headers["Retry-After"] == "1"

    assert capture_server.event_count == 0 and capture_server.segment_count == 0
    assert [r.status for r in capture_server.requests] == [429, 429, 429]

    capture_server.restore()
    _segment(capture_server).track("user-1", "Allowed")
    assert [m["event"] for m in capture_server.segment_messages] == ["Allowed"]


def test_fail_one_leg_only(capture_server: CaptureServer) -> None:
    capture_server.fail(500, leg="segment")
    client = _posthog(capture_server)
    try:
        sent = client.capture("ph still works", distinct_id="u1")
    finally:
        client.shutdown()
    with pytest.raises(SegmentAPIError):
        _segment(capture_server).track("user-1", "seg fails")

    assert [e["uuid"] for e in capture_server.events] == [sent]
    assert capture_server.segment_messages == []
    assert {r.leg: r.status for r in capture_server.requests} == {"posthog": 200, "segment": 500}


def test_fail_for_seconds_expires(capture_server: CaptureServer) -> None:
    capture_server.fail(502, leg="posthog", seconds=0.2)
    url = capture_server.url + "/batch/"
    assert _post(url, {"api_key": "k", "batch": [_event("early")]})[0] == 502
    time.sleep(0.25)
    assert _post(url, {"api_key": "k", "batch": [_event("late")]})[0] == 200
    assert [e["event"] for e in capture_server.events] == ["late"]


def test_fail_times_counts_per_leg(capture_server: CaptureServer) -> None:
    capture_server.fail(503, times=2)
    ph, seg = capture_server.url + "/batch/", capture_server.url + "/v1/batch"
    ph_body = {"api_key": "k", "batch": [_event()]}
    seg_body = {"writeKey": "wk", "batch": [{"type": "track", "event": "e"}]}
    statuses = [
        _post(ph, ph_body)[0],
        _post(seg, seg_body)[0],
        _post(ph, ph_body)[0],
        _post(ph, ph_body)[0],
        _post(seg, seg_body)[0],
        _post(seg, seg_body)[0],
    ]
    assert statuses == [503, 503, 503, 200, 503, 200]
    assert capture_server.event_count == 1 and capture_server.segment_count == 1


def test_hang_delays_the_leg_and_restore_releases(capture_server: CaptureServer) -> None:
    capture_server.hang(0.3, leg="segment", times=1)
    started = time.monotonic()
    _segment(capture_server).track("user-1", "slow")
    assert time.monotonic() - started >= 0.3
    assert [m["event"] for m in capture_server.segment_messages] == ["slow"]

    # PostHog leg is unaffected.
    started = time.monotonic()
    assert _post(capture_server.url + "/batch/", {"api_key": "k", "batch": [_event()]})[0] == 200
    assert time.monotonic() - started < 0.3

    # A long hang is released early by restore().
    capture_server.hang(30, leg="posthog")
    result: Dict[str, Any] = {}

    def slow_post() -> None:
        result["status"] = _post(
            capture_server.url + "/batch/", {"api_key": "k", "batch": [_event("held")]}
        )[0]

    started = time.monotonic()
    thread = threading.Thread(target=slow_post)
    thread.start()
    time.sleep(0.2)
    assert "status" not in result  # still held
    capture_server.restore()
    thread.join(timeout=5)
    assert result.get("status") == 200
    assert time.monotonic() - started < 5
    assert capture_server.events[-1]["event"] == "held"


def test_drop_closes_without_answer(capture_server: CaptureServer) -> None:
    capture_server.drop(leg="posthog", times=1)
    conn = http.client.HTTPConnection("127.0.0.1", capture_server.port, timeout=5)
    try:
        conn.request(
            "POST",
            "/batch/",
            body=json.dumps({"api_key": "k", "batch": [_event("dropped")]}),
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            conn.getresponse()
    finally:
        conn.close()

    # The real client sees a transport error.
    capture_server.drop(leg="posthog", times=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        batch_post("phc_test", capture_server.url, batch=[_event("dropped too")])

    # Segment leg was never affected; the rule is used up for posthog.
    _segment(capture_server).track("user-1", "ok")
    assert _post(capture_server.url + "/batch/", {"api_key": "k", "batch": [_event("ok")]})[0] == 200
    assert [e["event"] for e in capture_server.events] == ["ok"]
    assert [(r.leg, r.status) for r in capture_server.requests] == [
        ("posthog", 0),
        ("posthog", 0),
        ("segment", 200),
        ("posthog", 200),
    ]


def test_refuse_and_restore_keep_the_port(capture_server: CaptureServer) -> None:
    url, port = capture_server.url, capture_server.port
    session = requests.Session()
    body = json.dumps({"api_key": "k", "batch": [_event("before")]})
    assert session.post(url + "/batch/", data=body, timeout=5).status_code == 200

    capture_server.refuse()
    with pytest.raises(urllib.error.URLError) as info:
        urllib.request.urlopen(url + "/_stats", timeout=2)
    assert isinstance(info.value.reason, ConnectionRefusedError)
    # The pooled keep-alive connection was closed too: nothing gets through.
    with pytest.raises(requests.exceptions.ConnectionError):
        session.post(url + "/batch/", data=body, timeout=2)

    capture_server.restore()
    assert capture_server.port == port and capture_server.url == url
    client = _posthog(capture_server)
    try:
        sent = client.capture("after", distinct_id="u1")
    finally:
        client.shutdown()
    assert [e["event"] for e in capture_server.events] == ["before", "after"]
    assert capture_server.events[-1]["uuid"] == sent
    session.close()


def test_refuse_for_seconds_reopens_itself(capture_server: CaptureServer) -> None:
    capture_server.refuse(seconds=0.2)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(capture_server.url + "/_stats", timeout=2)
    time.sleep(0.4)
    assert _get_json(capture_server.url + "/_stats")["events"] == 0


# -- recording and waiting ---------------------------------------------------------


def test_wait_for_events_blocks_until_arrival(capture_server: CaptureServer) -> None:
    def later() -> None:
        time.sleep(0.15)
        _post(capture_server.url + "/batch/", {"api_key": "k", "batch": [_event("a"), _event("b")]})

    thread = threading.Thread(target=later)
    thread.start()
    started = time.monotonic()
    events = capture_server.wait_for_events(2, timeout=5)
    thread.join()
    assert time.monotonic() - started >= 0.1
    assert [e["event"] for e in events] == ["a", "b"]


def test_wait_timeouts_raise_assertion_error(capture_server: CaptureServer) -> None:
    _post(capture_server.url + "/batch/", {"api_key": "k", "batch": [_event("only one")]})
    with pytest.raises(AssertionError) as info:
        capture_server.wait_for_events(2, timeout=0.1)
    message = str(info.value)
    assert "expected >= 2 PostHog events" in message
    assert "got 1" in message
    assert "only one" in message

    with pytest.raises(AssertionError, match="Segment messages"):
        capture_server.wait_for_segment(1, timeout=0.05)


def test_clear_forgets_everything(capture_server: CaptureServer) -> None:
    _post(capture_server.url + "/batch/", {"api_key": "k", "batch": [_event()]})
    _segment(capture_server).track("user-1", "x")
    assert capture_server.event_count == 1 and capture_server.segment_count == 1
    capture_server.clear()
    assert capture_server.events == [] and capture_server.segment_messages == []
    assert capture_server.requests == []
    assert capture_server.stats() == {"events": 0, "segment": 0, "requests": 0, "failed": 0}


def test_keep_false_counts_but_stores_nothing() -> None:
    with CaptureServer(keep=False) as server:
        status, _, _ = _post(
            server.url + "/batch/", {"api_key": "k", "batch": [_event(), _event(), _event()]}
        )
        assert status == 200
        _segment(server).track("user-1", "counted")
        server.fail(503, leg="posthog", times=1)
        assert _post(server.url + "/batch/", {"api_key": "k", "batch": [_event()]})[0] == 503

        assert server.wait_for_events(3, timeout=1) == []
        assert server.event_count == 3
        assert server.segment_count == 1
        assert server.events == [] and server.segment_messages == [] and server.requests == []
        assert _get_json(server.url + "/_stats") == {
            "events": 3,
            "segment": 1,
            "requests": 3,
            "failed": 1,
        }
    # stopped: the port no longer answers
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url + "/_stats", timeout=1)


def test_stats_and_reset_endpoints(capture_server: CaptureServer) -> None:
    _post(capture_server.url + "/batch/", {"api_key": "k", "batch": [_event(), _event()]})
    assert _get_json(capture_server.url + "/_stats")["events"] == 2
    status, _, body = _post(capture_server.url + "/_reset", None, raw=b"")
    assert status == 200 and body["events"] == 0
    assert capture_server.event_count == 0 and capture_server.events == []


def test_context_manager_start_stop() -> None:
    server = CaptureServer()
    assert server.port == 0
    with server as started:
        assert started is server
        assert server.port != 0
        assert server.url == "http://127.0.0.1:%d" % server.port
        assert _get_json(server.url + "/_stats")["events"] == 0
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url + "/_stats", timeout=1)


# -- module hygiene and process mode ----------------------------------------------------


def test_module_imports_no_clients_and_no_pytest() -> None:
    """Loaded by path so the package __init__ (which may import posthog) is skipped."""
    path = REPO / "analytics_posthog" / "testing.py"
    code = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('cs_testing', %r)\n"
        "mod = importlib.util.module_from_spec(spec); sys.modules[spec.name] = mod\n"
        "spec.loader.exec_module(mod)\n"
        "loaded = [m for m in ('posthog', 'segment', 'pytest', 'requests') if m in sys.modules]\n"
        "print(loaded, 'capture_server' in vars(mod))\n"
        "with mod.CaptureServer() as s: print(s.url.startswith('http://127.0.0.1:'))\n"
    ) % str(path)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=True
    ).stdout.split("\n")
    assert out[0] == "[] False"
    assert out[1] == "True"


def test_main_process_mode() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-m", "analytics_posthog.testing", "--port", "0", "--count-only"],
        cwd=str(REPO),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line: List[str] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()))
        reader.start()
        reader.join(timeout=20)
        assert line and line[0].startswith("listening on http://127.0.0.1:"), (
            line,
            proc.poll(),
        )
        url = line[0].split("listening on ", 1)[1].strip()
        port = int(url.rsplit(":", 1)[1])
        assert port > 0

        status, _, _ = _post(url + "/batch/", {"api_key": "k", "batch": [_event(), _event()]})
        assert status == 200
        _segment_status = _post(
            url + "/v1/batch", {"writeKey": "wk", "batch": [{"type": "track", "event": "e"}]}
        )[0]
        assert _segment_status == 200
        assert _get_json(url + "/_stats") == {
            "events": 2,
            "segment": 1,
            "requests": 2,
            "failed": 0,
        }

        # Outages can be driven from another process too.
        assert _post(url + "/_fail", {"status": 500, "leg": "posthog", "times": 1})[0] == 200
        assert _post(url + "/batch/", {"api_key": "k", "batch": [_event()]})[0] == 500
        assert _post(url + "/batch/", {"api_key": "k", "batch": [_event()]})[0] == 200
        assert _post(url + "/_fail", {"status": 500, "bogus": 1})[0] == 400

        assert _post(url + "/_reset", None, raw=b"")[0] == 200
        assert _get_json(url + "/_stats")["events"] == 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.stderr.close()
    assert proc.returncode == 0


def test_pytest_plugin_provides_fixture(tmp_path: Path) -> None:
    """What the pytest11 entry point does: load the module as a plugin."""
    (tmp_path / "test_uses_fixture.py").write_text(
        "import urllib.request, json\n"
        "def test_it(capture_server):\n"
        "    url = capture_server.url\n"
        "    assert json.load(urllib.request.urlopen(url + '/_stats'))['events'] == 0\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    # Installed (pip install -e .): the pytest11 entry point loads it, and
    # passing -p too would register it twice. Not installed: load it by hand.
    registered = any(
        ep.value == "analytics_posthog.testing" for ep in entry_points(group="pytest11")
    )
    plugin_args = [] if registered else ["-p", "analytics_posthog.testing"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *plugin_args, "-p", "no:cacheprovider"]
        + [str(tmp_path)],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
