"""Promises at the edges a real app reaches (issue 19): integrations that enable
PostHog in dual-write, NaN in a dual-write call, timestamps at datetime's
ends, debug logging with several clients, and ``proxies`` on both legs."""

from __future__ import annotations

import pytest

from analytics_posthog import Client
from analytics_posthog.mapping import event_uuid
from analytics_posthog.testing import CaptureServer


@pytest.fixture
def segment_server():
    with CaptureServer() as server:
        yield server


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
