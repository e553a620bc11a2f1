"""The capture server's fake endpoints, driven over loopback HTTP by the real posthog and
Segment clients: what they send is recorded as they sent it, and they read its answers."""

from __future__ import annotations

import gzip
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from capture_http import get_json, post, posthog_client, raw_event, segment_client

from analytics_posthog.testing import CaptureServer

# -- posthog leg -----------------------------------------------------------------


def test_posthog_capture_roundtrip(capture_server: CaptureServer) -> None:
    client = posthog_client(capture_server)
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
    client = posthog_client(capture_server, gzip=True)
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
    errors: list[Any] = []
    client = posthog_client(
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
    single = {"api_key": "phc_single", **raw_event("single")}
    status, _, body = post(capture_server.url + "/i/v0/e/", single)
    assert (status, body) == (200, {"status": 1})

    batch = {"api_key": "phc_batch", "batch": [raw_event("b1"), raw_event("b2")]}
    status, _, _ = post(capture_server.url + "/e/", batch)
    assert status == 200

    gz = gzip.compress(json.dumps({"api_key": "phc_gz", **raw_event("gz")}).encode())
    status, _, _ = post(
        capture_server.url + "/capture/", None, raw=gz, headers={"Content-Encoding": "gzip"}
    )
    assert status == 200

    assert [e["event"] for e in capture_server.events] == ["single", "b1", "b2", "gz"]
    assert "api_key" not in capture_server.events[0]
    assert [r.key for r in capture_server.requests] == ["phc_single", "phc_batch", "phc_gz"]


def test_ai_lane_counts_and_otlp_exports_are_only_logged(capture_server: CaptureServer) -> None:
    status, _, body = post(
        capture_server.url + "/i/v0/ai/batch/",
        {"api_key": "phc_ai", "batch": [raw_event("$ai_generation")]},
    )
    assert (status, body) == (200, {"status": 1})
    status, _, body = post(
        capture_server.url + "/i/v1/traces",
        None,
        raw=b"\x0a\x02protobuf",
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert (status, body) == (200, {})
    assert [e["event"] for e in capture_server.events] == ["$ai_generation"]
    assert [(r.path, r.status, r.count, r.delivered, r.body) for r in capture_server.requests][
        1
    ] == ("/i/v1/traces", 200, 0, True, None)
    assert capture_server.stats() == {"events": 1, "segment": 0, "requests": 2, "failed": 0}


def test_unknown_path_and_bad_body(capture_server: CaptureServer) -> None:
    status, _, _ = post(capture_server.url + "/nope", {"batch": []})
    assert status == 404
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(capture_server.url + "/batch/", timeout=5)
    assert info.value.code == 404
    info.value.close()

    status, _, body = post(capture_server.url + "/batch/", None, raw=b"{not json")
    assert status == 400
    assert "invalid JSON" in body["detail"]
    assert capture_server.event_count == 0
    assert [r.status for r in capture_server.requests] == [400]
    assert capture_server.failed_count == 1


# -- segment leg --------------------------------------------------------------------


def test_segment_track_roundtrip(capture_server: CaptureServer) -> None:
    client = segment_client(capture_server)
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
    client = segment_client(capture_server, gzip=True)
    client.identify("user-2", {"email": "a@example.com"})
    (received,) = capture_server.wait_for_segment(1, timeout=2)
    assert received["type"] == "identify"
    assert received["traits"] == {"email": "a@example.com"}
    assert capture_server.requests[0].gzip is True


# -- recording and waiting ---------------------------------------------------------


def test_wait_for_events_blocks_until_arrival(capture_server: CaptureServer) -> None:
    def later() -> None:
        time.sleep(0.15)
        post(
            capture_server.url + "/batch/",
            {"api_key": "k", "batch": [raw_event("a"), raw_event("b")]},
        )

    thread = threading.Thread(target=later)
    thread.start()
    started = time.monotonic()
    events = capture_server.wait_for_events(2, timeout=5)
    thread.join()
    assert time.monotonic() - started >= 0.1
    assert [e["event"] for e in events] == ["a", "b"]


def test_wait_timeouts_raise_assertion_error(capture_server: CaptureServer) -> None:
    post(capture_server.url + "/batch/", {"api_key": "k", "batch": [raw_event("only one")]})
    with pytest.raises(AssertionError) as info:
        capture_server.wait_for_events(2, timeout=0.1)
    message = str(info.value)
    assert "expected >= 2 PostHog events" in message
    assert "got 1" in message
    assert "only one" in message

    with pytest.raises(AssertionError, match="Segment messages"):
        capture_server.wait_for_segment(1, timeout=0.05)


def test_clear_forgets_everything(capture_server: CaptureServer) -> None:
    post(capture_server.url + "/batch/", {"api_key": "k", "batch": [raw_event()]})
    segment_client(capture_server).track("user-1", "x")
    assert capture_server.event_count == 1 and capture_server.segment_count == 1
    capture_server.clear()
    assert capture_server.events == [] and capture_server.segment_messages == []
    assert capture_server.requests == []
    assert capture_server.stats() == {"events": 0, "segment": 0, "requests": 0, "failed": 0}


def test_keep_false_counts_but_stores_nothing() -> None:
    with CaptureServer(keep=False) as server:
        status, _, _ = post(
            server.url + "/batch/",
            {"api_key": "k", "batch": [raw_event(), raw_event(), raw_event()]},
        )
        assert status == 200
        segment_client(server).track("user-1", "counted")
        server.fail(503, leg="posthog", times=1)
        assert post(server.url + "/batch/", {"api_key": "k", "batch": [raw_event()]})[0] == 503

        assert server.wait_for_events(3, timeout=1) == []
        assert server.event_count == 3
        assert server.segment_count == 1
        assert server.events == [] and server.segment_messages == [] and server.requests == []
        assert get_json(server.url + "/_stats") == {
            "events": 3,
            "segment": 1,
            "requests": 3,
            "failed": 1,
        }
    # stopped: the port no longer answers
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url + "/_stats", timeout=1)


def test_stats_and_reset_endpoints(capture_server: CaptureServer) -> None:
    post(capture_server.url + "/batch/", {"api_key": "k", "batch": [raw_event(), raw_event()]})
    assert get_json(capture_server.url + "/_stats")["events"] == 2
    status, _, body = post(capture_server.url + "/_reset", None, raw=b"")
    assert status == 200 and body["events"] == 0
    assert capture_server.event_count == 0 and capture_server.events == []


def test_context_manager_start_stop() -> None:
    server = CaptureServer()
    assert server.port == 0
    with server as started:
        assert started is server
        assert server.port != 0
        assert server.url == "http://127.0.0.1:%d" % server.port
        assert get_json(server.url + "/_stats")["events"] == 0
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url + "/_stats", timeout=1)
