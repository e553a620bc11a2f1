"""PostHog's own client at hand, and posthog's contexts on our events, checked on both legs' wire."""

from __future__ import annotations

import posthog
import pytest

import analytics_posthog
from analytics_posthog import Client
from analytics_posthog._context import request as request_context
from analytics_posthog._context.request import RequestContext


def test_the_posthog_client_we_deliver_through_sends_its_own_events_with_ours(capture_server):
    client = Client(posthog_api_key="phc_test", posthog_host=capture_server.url)
    own = client.get_posthog_client()
    assert isinstance(own, posthog.Client) and own is client.get_posthog_client()
    assert own.api_key == "phc_test"
    client.track("u1", "Ours")
    own.capture_exception(ValueError("boom"), distinct_id="u1")
    client.flush()
    own.flush()
    events = {e["event"]: e for e in capture_server.wait_for_events(2)}
    assert set(events) == {"Ours", "$exception"}
    assert events["$exception"]["properties"]["$exception_list"][0]["value"] == "boom"
    client.shutdown()


def test_an_apps_own_posthog_client_is_the_one_handed_back(capture_server):
    own = posthog.Client("phc_app", host=capture_server.url)
    assert Client(posthog_client=own).get_posthog_client() is own
    own.shutdown()


def test_no_posthog_client_without_posthog(segment_server):
    assert Client("seg_key", host=segment_server.url).get_posthog_client() is None
    assert Client(posthog_api_key="phc_test", send=False).get_posthog_client() is None


def test_module_function_uses_the_default_client(capture_server):
    saved = (
        analytics_posthog.posthog_api_key,
        analytics_posthog.posthog_host,
        analytics_posthog.default_client,
    )
    analytics_posthog.posthog_api_key, analytics_posthog.posthog_host = (
        "phc_test",
        capture_server.url,
    )
    analytics_posthog.default_client = None
    try:
        assert (
            analytics_posthog.get_posthog_client()
            is analytics_posthog.default_client.get_posthog_client()
        )
        assert analytics_posthog.get_posthog_client() is not None
    finally:
        analytics_posthog.default_client.shutdown()
        (
            analytics_posthog.posthog_api_key,
            analytics_posthog.posthog_host,
            analytics_posthog.default_client,
        ) = saved


def test_posthog_context_identity_session_and_tags_reach_our_events(capture_server, segment_server):
    """Queued inside the context, delivered after it ended: each call keeps what the context said when it was made."""
    client = Client(
        "seg_key",
        host=segment_server.url,
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        upload_interval=0.05,
    )
    with posthog.new_context(capture_exceptions=False):
        posthog.identify_context("ctx-user")
        posthog.set_context_session("ctx-session")
        posthog.tag("plan", "pro")
        client.track(event="Nobody Named", properties={"n": 1})
        client.track("u1", "Explicit", context={"sessionId": "own-session"})
        posthog.tag("later", True)  # after those calls: only on the calls made from here on
        token = request_context.activate(
            RequestContext(context={"sessionId": "req-session"}, anonymous_id="req-anon")
        )
        client.track(event="In Request")
        request_context.reset(token)
    client.track("u2", "Outside")
    client.flush()
    events = {e["event"]: e for e in capture_server.wait_for_events(4)}
    messages = {m["event"]: m for m in segment_server.wait_for_segment(4)}

    nobody, message = events["Nobody Named"], messages["Nobody Named"]
    assert (
        nobody["distinct_id"] == message["anonymousId"] == "ctx-user" and message["userId"] is None
    )
    assert nobody["properties"]["$session_id"] == message["context"]["sessionId"] == "ctx-session"
    assert nobody["properties"]["plan"] == "pro" and nobody["properties"]["n"] == 1
    assert (
        "plan" not in message["properties"]
    )  # tags are posthog's: the Segment leg is as Segment sent it
    assert "later" not in nobody["properties"] and "later" not in events["Explicit"]["properties"]

    explicit = events["Explicit"]
    assert explicit["distinct_id"] == messages["Explicit"]["userId"] == "u1"
    assert (
        explicit["properties"]["$session_id"] == "own-session"
        and explicit["properties"]["plan"] == "pro"
    )

    in_request = events["In Request"]
    assert in_request["distinct_id"] == messages["In Request"]["anonymousId"] == "req-anon"
    assert in_request["properties"]["$session_id"] == "req-session"
    assert in_request["properties"]["later"] is True and in_request["properties"]["plan"] == "pro"

    outside = events["Outside"]["properties"]
    assert "plan" not in outside and "$session_id" not in outside
    client.shutdown()


def test_a_call_naming_nobody_outside_any_context_still_fails_as_in_segment(capture_server):
    client = Client(posthog_api_key="phc_test", posthog_host=capture_server.url)
    with posthog.new_context(capture_exceptions=False):
        posthog.tag("only", "a tag")
        with pytest.raises(AssertionError):
            client.track(event="Nobody")
    client.shutdown()
