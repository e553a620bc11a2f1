"""``flush_after``: both legs have delivered when a handler returns or raises, checked on the wire."""

from __future__ import annotations

import asyncio

import pytest

import analytics_posthog as analytics
from analytics_posthog import Client
from analytics_posthog.integrations.serverless import flush_after


@pytest.fixture
def configured(legs):
    """Queued delivery (not the fixture's sync mode), keys pointing at both capture servers."""
    analytics.sync_mode = False
    analytics.posthog_api_key, analytics.posthog_host = "phc_test", legs.posthog.url
    analytics.write_key, analytics.host = "seg_key", legs.segment.url
    return legs


def delivered(legs):
    """What has arrived by now, without waiting."""
    return legs.posthog.event_count, legs.segment.segment_count


def test_sync_handler_has_delivered_when_it_returns(configured):
    @flush_after
    def handler(event, context):
        """A Lambda handler."""
        for n in range(3):
            analytics.track("u1", "Invoked", {"n": n, "id": event["id"]})
        return {"statusCode": 200}

    assert handler({"id": 7}, None) == {"statusCode": 200}
    assert delivered(configured) == (3, 3)
    assert handler.__name__ == "handler" and handler.__doc__ == "A Lambda handler."


def test_handler_that_raises_has_delivered_before_the_error_propagates(configured):
    @flush_after
    def handler(event, context):
        analytics.track("u1", "Before Failure")
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        handler({}, None)
    assert delivered(configured) == (1, 1)


def test_async_handler_and_an_explicit_client(configured):
    client = Client(
        "seg_key",
        host=configured.segment.url,
        posthog_api_key="phc_test",
        posthog_host=configured.posthog.url,
        upload_interval=0.05,
    )

    @flush_after(client=client)
    async def handler(event, context):
        await asyncio.sleep(0)
        client.track("u2", "Async Invoked")
        return "done"

    assert asyncio.run(handler({}, None)) == "done"
    assert delivered(configured) == (1, 1)
    assert (
        configured.posthog.events[0]["distinct_id"]
        == configured.segment.segment_messages[0]["userId"]
        == "u2"
    )
    client.shutdown()


def test_a_handler_that_made_no_call_creates_no_client(configured):
    flush_after(lambda: "nothing")()
    assert analytics.default_client is None
