"""What reaches the wire, over real HTTP to loopback capture servers."""

from __future__ import annotations

import json
import math
import threading
import time
from datetime import datetime, timezone

import pytest

from analytics_posthog import Client
from analytics_posthog.mapping import event_uuid

T = datetime(2024, 5, 17, 9, 30, 15, 123000, tzinfo=timezone.utc)
CONTEXT = {
    "ip": "203.0.113.9",
    "userAgent": "Mozilla/5.0 (iPhone)",
    "os": {"name": "iOS", "version": "17.4"},
    "page": {"url": "https://shop.example.com/cart?x=1", "path": "/cart"},
}


def six_calls(client):
    return [
        client.identify(
            "u1",
            {"email": "a@example.com"},
            context=CONTEXT,
            timestamp=T,
            anonymous_id="a1",
            message_id="m-identify",
        ),
        client.track(
            "u1",
            "Order Completed",
            {"total": 30},
            context=CONTEXT,
            timestamp=T,
            message_id="m-track",
        ),
        client.page(
            "u1",
            "Shop",
            "Cart",
            {"url": "https://shop.example.com/cart"},
            timestamp=T,
            message_id="m-page",
        ),
        client.screen("u1", "Onboarding", "Welcome", timestamp=T, message_id="m-screen"),
        client.group("u1", "acme", {"name": "Acme"}, timestamp=T, message_id="m-group"),
        client.alias("a1", "u1", timestamp=T, message_id="m-alias"),
    ]


@pytest.mark.parametrize("sync_mode", [True, False])
def test_six_calls_reach_posthog_mapped(capture_server, sync_mode):
    client = Client(
        posthog_api_key="phc_test", posthog_host=capture_server.url, sync_mode=sync_mode
    )
    results = six_calls(client)
    assert all(ok for ok, _ in results)
    if not sync_mode:
        client.flush()
    events = {e["event"]: e for e in capture_server.wait_for_events(6)}
    assert sorted(events) == sorted(
        ["$identify", "Order Completed", "$pageview", "$screen", "$groupidentify", "$create_alias"]
    )
    for (_ok, msg), name in zip(
        results,
        ["$identify", "Order Completed", "$pageview", "$screen", "$groupidentify", "$create_alias"],
        strict=False,
    ):
        assert events[name]["uuid"] == event_uuid(msg["messageId"])
        assert events[name]["timestamp"].startswith("2024-05-17T09:30:15.123")
        assert events[name]["distinct_id"] == "u1"
    identify = events["$identify"]["properties"]
    assert identify["$set"] == {"email": "a@example.com"}
    assert identify["$anon_distinct_id"] == "a1"
    track = events["Order Completed"]["properties"]
    assert track["total"] == 30
    assert (track["$os"], track["$os_version"]) == ("iOS", "17.4")
    assert "$analytics_posthog_context_os" not in track
    assert track["$ip"] == "203.0.113.9"
    assert "$geoip_disable" not in track
    assert track["$raw_user_agent"] == "Mozilla/5.0 (iPhone)"
    assert track["$current_url"] == "https://shop.example.com/cart?x=1"
    assert track["$host"] == "shop.example.com"
    assert events["$pageview"]["properties"]["$geoip_disable"] is True
    assert events["$pageview"]["properties"]["name"] == "Cart"
    assert events["$screen"]["properties"]["$screen_name"] == "Welcome"
    group = events["$groupidentify"]["properties"]
    assert (group["$group_type"], group["$group_key"], group["$group_set"]) == (
        "segment_group",
        "acme",
        {"name": "Acme"},
    )
    assert events["$create_alias"]["properties"]["alias"] == "a1"
    assert all(r.key == "phc_test" for r in capture_server.requests)


SERVER_OS = ("$os", "$os_version", "$os_distro")


def test_the_servers_os_never_poses_as_the_users(capture_server):
    """posthog stamps the server's OS on every event: on ours only ``context.os``
    may say what OS the user has; the app's own events through the same posthog
    client keep the server's."""
    import posthog.utils

    server_os = {
        name: value for name, value in posthog.utils.system_context().items() if name in SERVER_OS
    }
    assert server_os  # what posthog would stamp, so the absences below can fail
    shared = posthog.Client("phc_test", host=capture_server.url, sync_mode=True)
    client = Client(posthog_client=shared)
    client.track("u1", "No OS")
    client.group("u1", "acme")
    client.track("u1", "With OS", context={"os": {"name": "iOS", "version": "17.4"}})
    client.track("u1", "Name only", context={"os": {"name": "Android"}})
    shared.capture("App's own", distinct_id="u1")
    events = {e["event"]: e["properties"] for e in capture_server.wait_for_events(5)}
    assert [name for name in SERVER_OS if name in events["No OS"]] == []
    assert [name for name in SERVER_OS if name in events["$groupidentify"]] == []
    assert {name: events["With OS"].get(name) for name in SERVER_OS} == {
        "$os": "iOS",
        "$os_version": "17.4",
        "$os_distro": None,
    }
    assert {name: events["Name only"].get(name) for name in SERVER_OS} == {
        "$os": "Android",
        "$os_version": None,
        "$os_distro": None,
    }
    assert {name: events["App's own"].get(name) for name in server_os} == server_os
    assert events["No OS"]["$python_version"] == events["App's own"]["$python_version"]


def test_group_type_setting_reaches_wire(capture_server):
    client = Client(
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        sync_mode=True,
        group_type="company",
    )
    client.group("u1", "acme")
    client.track("u1", "In group", context={"groupId": "acme"})
    events = capture_server.wait_for_events(2)
    assert events[0]["properties"]["$group_type"] == "company"
    assert events[1]["properties"]["$groups"] == {"company": "acme"}


def test_send_false_sends_nothing(capture_server):
    client = Client(posthog_api_key="phc_test", posthog_host=capture_server.url, send=False)
    assert client.track("u1", "e")[0] is True
    client.flush()
    time.sleep(0.2)
    assert capture_server.request_count == 0


def test_async_calls_return_before_delivery_and_flush_delivers(capture_server):
    client = Client(posthog_api_key="phc_test", posthog_host=capture_server.url, upload_interval=30)
    for i in range(50):
        assert client.track("u1", "e%d" % i)[0] is True
    client.flush()
    assert capture_server.event_count == 50
    assert [e["event"] for e in capture_server.events] == ["e%d" % i for i in range(50)]
    client.shutdown()


def test_dual_write_same_message_id_and_posthog_switched_off(capture_server, segment_server):
    client = Client(
        "seg_write_key",
        host=segment_server.url,
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        upload_interval=0.05,
    )
    results = six_calls(client)
    client.flush()
    seg = {m["messageId"]: m for m in segment_server.wait_for_segment(6)}
    events = {e["uuid"]: e for e in capture_server.wait_for_events(6)}
    for _ok, msg in results:
        wire = seg[msg["messageId"]]
        assert wire["integrations"] == {"PostHog": False}
        expected = {k: v for k, v in msg.items() if k not in ("context", "integrations")}
        assert {k: v for k, v in wire.items() if k in expected} == expected
        assert {k: v for k, v in wire["context"].items() if k != "library"} == {
            k: v for k, v in msg["context"].items() if k != "library"
        }
        assert event_uuid(msg["messageId"]) in events
    assert segment_server.requests[0].key == "seg_write_key"
    client.shutdown()


def test_integrations_posthog_false_skips_posthog_only(capture_server, segment_server):
    client = Client(
        "wk",
        host=segment_server.url,
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        sync_mode=True,
    )
    client.track("u1", "Not for PostHog", integrations={"PostHog": False})
    client.track("u1", "Explicitly for PostHog", integrations={"All": False, "posthog": True})
    seg = segment_server.wait_for_segment(2)
    assert [m["integrations"] for m in seg] == [
        {"PostHog": False},
        {"All": False, "PostHog": False},
    ]
    assert [e["event"] for e in capture_server.wait_for_events(1)] == ["Explicitly for PostHog"]


def test_dead_segment_leg_does_not_delay_posthog(capture_server, segment_server):
    errors = []
    segment_server.drop(leg="segment")
    client = Client(
        "wk",
        host=segment_server.url,
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        max_retries=1,
        on_error=lambda error, batch: errors.append((error, batch)),
    )
    started = time.monotonic()
    for i in range(20):
        client.track("u1", "e%d" % i)
    client.delivery.dispatcher.flush()
    client.delivery.legs[0].flush(5)
    assert capture_server.event_count == 20
    assert time.monotonic() - started < 3
    deadline = time.monotonic() + 5
    while not errors and time.monotonic() < deadline:
        time.sleep(0.05)
    assert errors, "on_error must hear about the Segment leg's failure"
    assert errors[0][1][0]["type"] == "track"
    client.delivery.legs[1].flush(5)


def test_dead_posthog_leg_does_not_delay_segment(capture_server, segment_server):
    errors = []
    capture_server.fail(500, leg="posthog")
    client = Client(
        "wk",
        host=segment_server.url,
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        max_retries=1,
        on_error=lambda error, batch: errors.append((error, batch)),
    )
    for i in range(20):
        client.track("u1", "e%d" % i)
    segment_server.wait_for_segment(20, timeout=3)
    client.delivery.legs[0].flush(5)
    assert capture_server.event_count == 0
    assert errors and errors[0][1][0]["event"] == "e0"


def test_sync_mode_failure_goes_to_on_error_not_the_caller(capture_server):
    errors = []
    capture_server.fail(500, leg="posthog")
    client = Client(
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        sync_mode=True,
        on_error=lambda e, b: errors.append(b),
    )
    ok, msg = client.track("u1", "Fails")
    assert ok is False
    assert errors == [[msg]]


def test_on_error_that_raises_does_not_kill_delivery(capture_server):
    capture_server.fail(500, leg="posthog", times=1)

    def broken(error, batch):
        raise ValueError("bad handler")

    client = Client(
        posthog_api_key="phc_test", posthog_host=capture_server.url, max_retries=0, on_error=broken
    )
    client.track("u1", "Lost to 500")
    client.flush()
    client.track("u1", "After")
    client.flush()
    assert [e["event"] for e in capture_server.events] == ["After"]
    assert all(
        t.is_alive() for t in threading.enumerate() if t.name == "analytics-posthog-dispatcher"
    )


def test_contextvars_of_the_caller_reach_posthog(capture_server):
    import posthog

    client = Client(posthog_api_key="phc_test", posthog_host=capture_server.url, upload_interval=30)
    with posthog.new_context():
        posthog.tag("tenant", "t-42")
        client.track("u1", "Tagged")
    client.track("u1", "Untagged")
    client.flush()
    events = {e["event"]: e["properties"] for e in capture_server.wait_for_events(2)}
    assert events["Tagged"]["tenant"] == "t-42"
    assert "tenant" not in events["Untagged"]
    client.shutdown()


def test_sync_mode_dual_write_client_shuts_down(capture_server, segment_server):
    client = Client(
        "wk",
        host=segment_server.url,
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        sync_mode=True,
    )
    client.track("u1", "e")
    client.shutdown()
    assert segment_server.segment_count == 1


def test_posthog_server_context_is_computed_once_with_the_same_values(capture_server):
    import posthog.client
    import posthog.utils

    Client(posthog_api_key="phc_test", posthog_host=capture_server.url, sync_mode=True).track(
        "u1", "e"
    )
    assert hasattr(posthog.client.system_context.__wrapped__, "cache_info")
    assert posthog.client.system_context() == posthog.utils.system_context()
    props = capture_server.wait_for_events(1)[0]["properties"]
    assert props["$python_version"] == posthog.utils.system_context()["$python_version"]


@pytest.mark.parametrize("sync_mode", [True, False])
def test_segment_leg_sends_what_segments_client_builds(segment_server, sync_mode):
    from segment.analytics import Client as SegmentClient

    ours = Client("wk", host=segment_server.url, sync_mode=sync_mode, upload_interval=0.05)
    reference = SegmentClient("wk", send=False)
    calls = [
        (
            "track",
            dict(
                user_id="u1",
                event="e",
                properties={"n": 1},
                context={"ip": "203.0.113.9"},
                integrations={"All": False},
            ),
        ),
        ("identify", dict(user_id=7, traits={"a": 1}, anonymous_id="a1")),
        (
            "page",
            dict(
                anonymous_id="a1",
                category="Docs",
                name="Install",
                properties={"url": "https://x.example/"},
            ),
        ),
        ("screen", dict(user_id="u1", name="Home")),
        ("group", dict(user_id="u1", group_id=9, traits={"name": "Acme"})),
        ("alias", dict(previous_id="a1", user_id="u1", integrations={"posthog": True})),
    ]
    expected = {}
    for method, kwargs in calls:
        _, msg = getattr(ours, method)(timestamp=T, **kwargs)
        # No PostHog leg of ours: the calls' own integrations, Segment's routing.
        _, ref = getattr(reference, method)(timestamp=T, message_id=msg["messageId"], **kwargs)
        expected[msg["messageId"]] = ref
    ours.flush()
    arrived = {m["messageId"]: m for m in segment_server.wait_for_segment(len(calls))}
    assert arrived == expected
    ours.shutdown()


@pytest.mark.parametrize("sync_mode", [True, False])
def test_nan_and_infinity_reach_posthog_as_null(capture_server, sync_mode):
    """A bare NaN or Infinity token is not JSON, and PostHog's ingestion rejects it."""
    client = Client(
        posthog_api_key="phc_test", posthog_host=capture_server.url, sync_mode=sync_mode
    )
    client.track(
        "u1",
        "Measured",
        {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "deep": [{"x": math.nan}, 1.5]},
    )
    client.flush()
    event = capture_server.wait_for_events(1)[0]
    props = event["properties"]
    assert (props["nan"], props["inf"], props["ninf"], props["deep"]) == (
        None,
        None,
        None,
        [{"x": None}, 1.5],
    )
    json.dumps(event, allow_nan=False)
    client.shutdown()
