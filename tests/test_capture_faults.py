"""Fault injection on the capture server, as the real clients experience it: error answers
they parse, slow answers, dropped and refused connections."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import posthog
import pytest
import requests
from capture_http import get_json, post, posthog_client, raw_event, segment_client
from posthog.request import APIError as PostHogAPIError
from posthog.request import batch_post
from segment.analytics.request import APIError as SegmentAPIError

from analytics_posthog.testing import CaptureServer


def test_fail_once_then_posthog_retry_delivers(capture_server: CaptureServer) -> None:
    capture_server.fail(503, leg="posthog", times=1)
    errors: list[Any] = []
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

    status, headers, body = post(capture_server.url + "/batch/", {"api_key": "k", "batch": []})
    assert status == 429
    assert headers["Retry-After"] == "1"
    assert body["detail"] and body["code"] == "too_many_requests" and body["message"]

    # posthog's own request code parses detail and Retry-After.
    with pytest.raises(PostHogAPIError) as ph_err:
        batch_post("phc_test", capture_server.url, batch=[raw_event()])
    assert ph_err.value.status == 429
    assert ph_err.value.retry_after == 1.0
    assert "simulated 429" in ph_err.value.message

    # Segment's post() needs "code" and "message", else it reports "unknown".
    with pytest.raises(SegmentAPIError) as seg_err:
        segment_client(capture_server).track("user-1", "Blocked")
    assert seg_err.value.status == 429
    assert seg_err.value.code == "too_many_requests"
    assert seg_err.value.response.headers["Retry-After"] == "1"

    assert capture_server.event_count == 0 and capture_server.segment_count == 0
    assert [r.status for r in capture_server.requests] == [429, 429, 429]

    capture_server.restore()
    segment_client(capture_server).track("user-1", "Allowed")
    assert [m["event"] for m in capture_server.segment_messages] == ["Allowed"]


def test_fail_one_leg_only(capture_server: CaptureServer) -> None:
    capture_server.fail(500, leg="segment")
    client = posthog_client(capture_server)
    try:
        sent = client.capture("ph still works", distinct_id="u1")
    finally:
        client.shutdown()
    with pytest.raises(SegmentAPIError):
        segment_client(capture_server).track("user-1", "seg fails")

    assert [e["uuid"] for e in capture_server.events] == [sent]
    assert capture_server.segment_messages == []
    assert {r.leg: r.status for r in capture_server.requests} == {"posthog": 200, "segment": 500}


def test_fail_for_seconds_expires(capture_server: CaptureServer) -> None:
    capture_server.fail(502, leg="posthog", seconds=0.2)
    url = capture_server.url + "/batch/"
    assert post(url, {"api_key": "k", "batch": [raw_event("early")]})[0] == 502
    time.sleep(0.25)
    assert post(url, {"api_key": "k", "batch": [raw_event("late")]})[0] == 200
    assert [e["event"] for e in capture_server.events] == ["late"]


def test_fail_times_counts_per_leg(capture_server: CaptureServer) -> None:
    capture_server.fail(503, times=2)
    ph, seg = capture_server.url + "/batch/", capture_server.url + "/v1/batch"
    ph_body = {"api_key": "k", "batch": [raw_event()]}
    seg_body = {"writeKey": "wk", "batch": [{"type": "track", "event": "e"}]}
    statuses = [
        post(ph, ph_body)[0],
        post(seg, seg_body)[0],
        post(ph, ph_body)[0],
        post(ph, ph_body)[0],
        post(seg, seg_body)[0],
        post(seg, seg_body)[0],
    ]
    assert statuses == [503, 503, 503, 200, 503, 200]
    assert capture_server.event_count == 1 and capture_server.segment_count == 1


def test_hang_delays_the_leg_and_restore_releases(capture_server: CaptureServer) -> None:
    capture_server.hang(0.3, leg="segment", times=1)
    started = time.monotonic()
    segment_client(capture_server).track("user-1", "slow")
    assert time.monotonic() - started >= 0.3
    assert [m["event"] for m in capture_server.segment_messages] == ["slow"]

    # PostHog leg is unaffected.
    started = time.monotonic()
    assert post(capture_server.url + "/batch/", {"api_key": "k", "batch": [raw_event()]})[0] == 200
    assert time.monotonic() - started < 0.3

    # A long hang is released early by restore().
    capture_server.hang(30, leg="posthog")
    result: dict[str, Any] = {}

    def slow_post() -> None:
        result["status"] = post(
            capture_server.url + "/batch/", {"api_key": "k", "batch": [raw_event("held")]}
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
            body=json.dumps({"api_key": "k", "batch": [raw_event("dropped")]}),
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            conn.getresponse()
    finally:
        conn.close()

    # The real client sees a transport error.
    capture_server.drop(leg="posthog", times=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        batch_post("phc_test", capture_server.url, batch=[raw_event("dropped too")])

    # Segment leg was never affected; the rule is used up for posthog.
    segment_client(capture_server).track("user-1", "ok")
    assert (
        post(capture_server.url + "/batch/", {"api_key": "k", "batch": [raw_event("ok")]})[0] == 200
    )
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
    body = json.dumps({"api_key": "k", "batch": [raw_event("before")]})
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
    client = posthog_client(capture_server)
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
    assert get_json(capture_server.url + "/_stats")["events"] == 0
