"""``python -m analytics_posthog demo``: the six Segment calls, and what PostHog receives.

Offline by default: an embedded capture endpoint on loopback stands in for
PostHog (and for Segment, to show dual-write), the real posthog and Segment
clients deliver to it over HTTP, and the events are printed as they arrived.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

from analytics_posthog._keys import POSTHOG_KEY_VARIABLES
from analytics_posthog.client import Client
from analytics_posthog.testing import CaptureServer

CONTEXT = {
    "ip": "203.0.113.42",
    "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15",
    "locale": "en-GB",
    "timezone": "Europe/London",
    "os": {"name": "iOS", "version": "17.4"},
    "device": {"id": "device-7f3a", "manufacturer": "Apple", "model": "iPhone15,2", "type": "ios"},
    "app": {"name": "Acme Shop", "version": "4.2.0", "build": "420"},
    "page": {
        "url": "https://shop.acme.test/checkout?step=2",
        "path": "/checkout",
        "referrer": "https://www.google.com/",
        "title": "Checkout",
    },
    "campaign": {"source": "newsletter", "medium": "email", "name": "spring-sale"},
}


def make_calls(client: Client) -> list[dict[str, Any]]:
    """The six calls a Segment integration typically makes, with realistic context."""
    now = datetime.now(timezone.utc)
    calls = [
        client.identify(
            "user-1001", {"email": "ann@acme.test", "plan": "pro"}, CONTEXT, now, "anon-42"
        ),
        client.track(
            "user-1001",
            "Order Completed",
            {"order_id": "o-77", "revenue": 42.5, "currency": "GBP"},
            CONTEXT,
            now,
        ),
        client.page(
            "user-1001",
            "Shop",
            "Checkout",
            {"url": "https://shop.acme.test/checkout?step=2"},
            CONTEXT,
            now,
        ),
        client.screen("user-1001", "Onboarding", "Welcome", {"step": 1}, CONTEXT, now),
        client.group("user-1001", "acme-inc", {"name": "Acme Inc", "employees": 120}, CONTEXT, now),
        client.alias("anon-42", "user-1001", CONTEXT, now),
    ]
    return [msg for _, msg in calls]


def run(live: bool = False, out: TextIO = sys.stdout) -> int:
    if live:
        return _run_live(out)
    with CaptureServer() as server:
        client = Client(
            "demo-segment-write-key",
            host=server.url,
            posthog_api_key="phc_demo",
            posthog_host=server.url,
        )
        messages = make_calls(client)
        client.shutdown()
        events = server.wait_for_events(len(messages))
        segment = server.wait_for_segment(len(messages))
    out.write(
        "PostHog received %d events at %s/batch/, each printed as it arrived "
        "(keys sorted):\n\n" % (len(events), server.url)
    )
    for event in events:
        out.write(json.dumps(event, indent=2, sort_keys=True, ensure_ascii=False) + "\n\n")
    out.write(
        "Segment received %d messages (dual-write), each with the same messageId:\n" % len(segment)
    )
    for msg in segment:
        out.write(
            "  %-8s messageId=%s integrations=%s\n"
            % (msg["type"], msg["messageId"], json.dumps(msg["integrations"]))
        )
    return 0


def _run_live(out: TextIO) -> int:
    if not any(os.environ.get(name) for name in POSTHOG_KEY_VARIABLES):
        out.write(
            "--live needs POSTHOG_API_KEY (and POSTHOG_HOST for a non-US-cloud project) in the environment.\n"
        )
        return 2
    client = Client(sync_mode=True)
    messages = make_calls(client)
    client.shutdown()
    out.write(
        "Sent %d calls to %s; find them in PostHog by these messageIds:\n"
        % (len(messages), client.posthog_host)
    )
    for msg in messages:
        out.write("  %-8s %s\n" % (msg["type"], msg["messageId"]))
    return 0
