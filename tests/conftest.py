"""Shared fixtures: the loopback endpoints of both legs, and the hooks' settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import analytics_posthog
from analytics_posthog.settings import NAMES
from analytics_posthog.testing import CaptureServer


class Legs:
    """Both loopback endpoints, and the hook settings that point the module's default client at them."""

    def __init__(self, posthog: CaptureServer, segment: CaptureServer) -> None:
        self.posthog = posthog
        self.segment = segment
        self.settings = {
            "API_KEY": "phc_test",
            "HOST": posthog.url,
            "WRITE_KEY": "seg_key",
            "SEGMENT_HOST": segment.url,
        }

    def wait(self, n: int) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """Flush the default client; the n PostHog events and n Segment messages, each by event name."""
        analytics_posthog.flush()
        events = {e["event"]: e["properties"] for e in self.posthog.wait_for_events(n)}
        messages = {m.get("event") or m["type"]: m for m in self.segment.wait_for_segment(n)}
        assert len(events) == len(messages) == n
        return events, messages

    @staticmethod
    def assert_request(
        event: dict[str, Any], message: dict[str, Any], ip: str, url: str, **page: str
    ) -> None:
        """The request's context reached PostHog (as properties) and Segment (as context)."""
        context = message["context"]
        assert (event["$ip"], context["ip"]) == (ip, ip)
        assert event["$current_url"] == context["page"]["url"] == url
        assert event["$pathname"] == context["page"]["path"]
        for key, value in page.items():
            assert context["page"][key] == value
        if "referrer" in page:
            assert event["$referrer"] == page["referrer"]


@pytest.fixture
def legs(capture_server: CaptureServer) -> Iterator[Legs]:
    """The hooks configure module settings and the default client: undone after the test.

    Calls are delivered in sync mode; tests about queued delivery set
    ``analytics_posthog.sync_mode = False``. Segment's upload window is cut to
    50 ms: at its default 0.5 s, every queued flush and every shutdown of the
    default client would wait it out, and what these tests check does not
    depend on it.
    """
    saved = {name: getattr(analytics_posthog, name) for name in NAMES}
    # These tests point each leg at a server of its own, so the plugin's
    # redirect of both hosts to capture_server steps aside.
    redirect, analytics_posthog._redirected_to = analytics_posthog._redirected_to, None
    analytics_posthog.default_client = None
    analytics_posthog.sync_mode = True
    analytics_posthog.upload_interval = 0.05
    with CaptureServer() as segment:
        yield Legs(capture_server, segment)
        if analytics_posthog.default_client is not None:
            analytics_posthog.default_client.shutdown()
    analytics_posthog.default_client = None
    analytics_posthog._redirected_to = redirect
    for name, value in saved.items():
        setattr(analytics_posthog, name, value)


@pytest.fixture
def segment_server() -> Iterator[CaptureServer]:
    """A second loopback endpoint, for the Segment leg (``capture_server`` is PostHog's)."""
    with CaptureServer() as server:
        yield server
