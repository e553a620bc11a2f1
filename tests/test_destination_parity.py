"""Our PostHog events against Segment's own PostHog destination.

Each vector in ``vectors/destination.json`` is a Segment message and what the
destination sends for it (docs/mapping.md says how they were written). Every
property the destination sets must arrive with the same value; ``$lib`` and
``segment_library`` may differ and are left out of the vectors; our richer
mapping may add properties. Checked twice: on the pure mapping, and on the
wire through a real ``Client`` and posthog's client (which adds the server's
own properties, the OS among them, that must not reach these events).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from analytics_posthog import Client
from analytics_posthog.mapping import to_posthog

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "vectors" / "destination.json").read_text()
)["vectors"]


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_like_destination(
    vector: dict[str, Any],
    event: str,
    distinct_id: str,
    uuid: str,
    timestamp: str,
    properties: dict[str, Any],
) -> None:
    expected = vector["expected"]
    assert (event, distinct_id, uuid) == (
        expected["event"],
        expected["distinct_id"],
        expected["uuid"],
    )
    assert instant(timestamp) == instant(expected["timestamp"])
    wanted = {**expected["properties"], **vector.get("ours_also", {})}
    assert {name: properties.get(name, "<absent>") for name in wanted} == wanted
    assert [name for name in vector["absent"] if name in properties] == []


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_mapping_sets_what_the_destination_sets(vector):
    event = to_posthog(vector["message"])
    assert event is not None
    geoip = (
        {"$geoip_disable": True} if event.disable_geoip else {}
    )  # posthog's capture() adds it so
    properties = {**event.properties, **geoip}
    assert_like_destination(
        vector, event.event, event.distinct_id, event.uuid, event.timestamp.isoformat(), properties
    )


def replay(client: Client, msg: dict[str, Any]) -> None:
    """Make the Segment call that builds ``msg``."""
    common = dict(
        context=msg.get("context"),
        timestamp=instant(msg["timestamp"]),
        integrations=msg.get("integrations"),
        message_id=msg["messageId"],
    )
    user, anonymous = msg.get("userId"), msg.get("anonymousId")
    type_ = msg["type"]
    if type_ == "track":
        ok, _ = client.track(
            user, msg["event"], msg.get("properties"), anonymous_id=anonymous, **common
        )
    elif type_ == "identify":
        ok, _ = client.identify(user, msg.get("traits"), anonymous_id=anonymous, **common)
    elif type_ == "group":
        ok, _ = client.group(
            user, msg["groupId"], msg.get("traits"), anonymous_id=anonymous, **common
        )
    elif type_ in ("page", "screen"):
        call = client.page if type_ == "page" else client.screen
        ok, _ = call(
            user,
            msg.get("category"),
            msg.get("name"),
            msg.get("properties"),
            anonymous_id=anonymous,
            **common,
        )
    else:
        ok, _ = client.alias(msg["previousId"], user, **common)
    assert ok


def test_the_wire_carries_what_the_destination_sets(capture_server):
    client = Client(posthog_api_key="phc_test", posthog_host=capture_server.url, sync_mode=True)
    for vector in VECTORS:
        replay(client, vector["message"])
    events = capture_server.wait_for_events(len(VECTORS))
    assert len(events) == len(VECTORS)
    for vector, event in zip(VECTORS, events, strict=False):
        assert_like_destination(
            vector,
            event["event"],
            event["distinct_id"],
            event["uuid"],
            event["timestamp"],
            event["properties"],
        )
