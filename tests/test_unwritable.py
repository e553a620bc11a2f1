"""Values a leg's library cannot send: an int too long for JSON fails at the
call as in Segment, and a message that only the Segment leg's own fields take
over Segment's limit is counted and reported; neither wedges flush(). Every
other call of any shape arrives on both legs."""

from __future__ import annotations

import marshal
import random
import sys
import threading

import pytest
from segment.analytics import Client as SegmentClient
from segment.analytics.consumer import MAX_MSG_SIZE
from shapes import calls

from analytics_posthog import Client
from analytics_posthog._delivery.segment_leg import segment_message
from analytics_posthog._message import build as message
from analytics_posthog.errors import Unsendable

LIMIT = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0
needs_limit = pytest.mark.skipif(not LIMIT, reason="this Python writes ints of any length")
TOO_LONG = 10 ** (LIMIT or 1)


def finishes(call, timeout=10.0):
    """Whether ``call`` returns within ``timeout`` (it runs on a daemon thread)."""
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


@needs_limit
@pytest.mark.parametrize("where", ["properties", "context"])
def test_an_int_too_long_for_json_raises_at_the_call_as_in_segment(where):
    call = dict(user_id="u1", event="e", **{where: {"n": -TOO_LONG}})
    with pytest.raises(ValueError) as theirs:
        SegmentClient("wk", send=False).track(**call)
    with pytest.raises(ValueError) as ours:
        Client(send=False).track(**call)
    assert str(ours.value) == str(theirs.value)
    assert "integer string conversion" in str(ours.value)


@needs_limit
@pytest.mark.parametrize("sync_mode", [False, True])
def test_after_an_int_too_long_flush_returns_and_later_events_arrive(
    capture_server, segment_server, sync_mode
):
    client = Client(
        "wk",
        host=segment_server.url,
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        sync_mode=sync_mode,
        upload_interval=0.05,
    )
    client.track("u1", "Before")
    with pytest.raises(ValueError):
        client.track("u1", "Too long", {"n": TOO_LONG})
    client.track("u1", "After")
    assert finishes(client.flush)
    assert [e["event"] for e in capture_server.wait_for_events(2)] == ["Before", "After"]
    assert [m["event"] for m in segment_server.wait_for_segment(2)] == ["Before", "After"]
    assert finishes(client.shutdown)


@pytest.mark.parametrize("sync_mode", [False, True], ids=["queued", "sync"])
def test_a_message_only_the_segment_legs_fields_take_over_the_limit_is_reported(
    capture_server, segment_server, sync_mode
):
    """The call fits (Segment's client accepts it too), but with
    ``integrations.PostHog = false`` it is over Segment's limit: Segment's
    consumer would drop it and never join again."""
    base = message.json_size(Client(send=False).track("u1", "Near the limit", {"pad": ""})[1])
    near = {"pad": "x" * (MAX_MSG_SIZE - base - 4)}
    SegmentClient("wk", send=False).track("u1", "Near the limit", near)
    errors = []
    client = Client(
        "wk",
        host=segment_server.url,
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        sync_mode=sync_mode,
        upload_interval=0.05,
        on_error=lambda error, batch: errors.append((error, [m["event"] for m in batch])),
    )
    # In sync mode the call says at once that a leg did not deliver it.
    assert client.track("u1", "Near the limit", near)[0] is not sync_mode
    client.track("u1", "After")
    assert finishes(client.flush)
    assert [e["event"] for e in capture_server.wait_for_events(2)] == ["Near the limit", "After"]
    assert [m["event"] for m in segment_server.wait_for_segment(1)] == ["After"]
    assert [(type(error), batch) for error, batch in errors] == [(Unsendable, ["Near the limit"])]
    assert "over Segment's" in str(errors[0][0])
    stats = client.stats()
    assert (stats["segment"]["failed"], stats["segment"]["queued"], stats["posthog"]["failed"]) == (
        1,
        0,
        0,
    )
    assert (stats["segment"]["delivered"], stats["posthog"]["delivered"]) == (1, 2)
    assert finishes(client.shutdown)


@pytest.mark.parametrize(
    "integrations",
    [{}, {"Amplitude": True}, {"All": False, "Mixpanel": {"x": 1}}, {"posthog": True}],
)
def test_the_segment_legs_fields_add_at_most_the_margin(integrations):
    msg = Client(send=False).track("u1", "e", {"n": 1}, integrations=integrations)[1]
    grown = message.json_size(segment_message(msg, True)) - message.json_size(msg)
    assert grown <= message.WIRE_MARGIN


@needs_limit
def test_the_marshal_path_never_misses_an_int_too_long():
    """Every int of more than the limit's digits is flagged, wherever it sits
    among strings that look like marshal's int headers."""
    rng = random.Random(20261130)
    texts = ["url", "l", "email", "x" * 5, "y" * 700, "", "ll\x03"]
    for _ in range(400):
        big = rng.choice([1, -1]) * (TOO_LONG + rng.randrange(10**6))
        items = [rng.choice(texts) for _ in range(rng.randrange(6))]
        items.insert(rng.randrange(len(items) + 1), big)
        msg = {"properties": {"k%d" % i: item for i, item in enumerate(items)}}
        assert message.may_hold_unwritable_int(marshal.dumps(msg, 2))


def test_ordinary_messages_keep_the_marshal_path(monkeypatch):
    """Large ints within the limit, and text, do not cost the exact check."""
    checked = []
    monkeypatch.setattr(message, "json_size", lambda msg: checked.append(msg) or 0)
    client = Client(send=False)
    client.track(
        "u1",
        "Order",
        {"total": 10**18, "ids": [2**63, -(2**70)], "url": "https://example.com/" + "p" * 300},
    )
    client.track("u1", "Page", {"title": "l" * 40, "path": "/" * 5, "referrer": "x" * 1500})
    assert checked == []


def test_a_near_limit_message_is_sized_again_whatever_else_shares_its_message_id(
    capture_server, segment_server
):
    """Callers choose message ids: a second message with the same id, turned
    away by our full queue, must not spare the queued one its second sizing
    (which would reach Segment's consumer, be dropped there, and wedge
    ``flush()``)."""
    base = message.json_size(
        Client(send=False).track("u1", "Near the limit", {"pad": ""}, message_id="X")[1]
    )
    near = {"pad": "x" * (MAX_MSG_SIZE - base - 4)}
    capture_server.hang(1, leg="posthog")
    errors = []
    client = Client(
        "wk",
        host=segment_server.url,
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        max_queue_size=1,
        on_error=lambda error, batch: errors.append(error),
    )
    results = [client.track("u1", "Near the limit", near, message_id="X")[0] for _ in range(20)]
    assert results.count(False) > 0
    capture_server.restore()
    assert finishes(client.flush)
    assert results.count(True) == sum(isinstance(error, Unsendable) for error in errors)
    assert finishes(client.shutdown)


@pytest.mark.parametrize("sync_mode", [True, False], ids=["sync", "queued"])
def test_every_call_of_any_shape_that_returns_true_reaches_both_legs(
    capture_server, segment_server, sync_mode
):
    """Seeded random calls of every shape a caller can pass (``shapes``): each
    fails at the call exactly when Segment's own client fails it, and
    otherwise arrives once on each leg, with nothing reported to ``on_error``."""
    errors = []
    client = Client(
        "wk",
        host=segment_server.url,
        posthog_api_key="phc_test",
        posthog_host=capture_server.url,
        sync_mode=sync_mode,
        on_error=lambda error, batch: errors.append(error),
    )
    segment = SegmentClient("wk", send=False)
    accepted = 0
    for call in calls(random.Random(20261201), 600):
        outcomes = []
        for each in (segment, client):
            try:
                outcomes.append(call(each)[0])
            except Exception as error:
                outcomes.append(type(error))
        assert outcomes[1] == outcomes[0]
        accepted += outcomes[1] is True
    assert finishes(client.flush)
    assert accepted > 0
    assert (
        len(capture_server.wait_for_events(accepted))
        == len(segment_server.wait_for_segment(accepted))
        == accepted
    )
    assert capture_server.event_count == segment_server.segment_count == accepted
    assert errors == []
    assert finishes(client.shutdown)
