"""Hostile requests for the hook tests: what a broken or malicious client can send, and what must come of it."""

from __future__ import annotations

import json
from typing import Any

from segment.analytics.consumer import MAX_MSG_SIZE

import analytics_posthog
from analytics_posthog._context import fields as request_fields
from analytics_posthog._context import request as request_context

#: Bytes 0x80-0xFF as a server hands them to an app (latin-1): 6 bytes of JSON each.
HOSTILE = bytes(range(0x80, 0x100)).decode("latin-1") * 40
HOSTILE_HEADERS = {
    "User-Agent": HOSTILE,
    "Referer": HOSTILE,
    "X-POSTHOG-SESSION-ID": HOSTILE,
    "X-POSTHOG-DISTINCT-ID": "anon-hostile",
}
#: The same bytes percent-encoded, for a path or query string.
HOSTILE_QUOTED = "".join("%%%02X" % byte for byte in range(0x80, 0x100)) * 40


def hostile_calls() -> str:
    """A view's calls: one naming nobody, one that fits only without the request's
    context, one too large on its own (which must still raise Segment's error)."""
    analytics_posthog.track(event="Hostile")
    analytics_posthog.track(event="Big", anonymous_id="a1", properties={"blob": "x" * 25_000})
    try:
        analytics_posthog.track(
            event="Too big", anonymous_id="a1", properties={"blob": "x" * 33_000}
        )
    except RuntimeError as error:
        return "too big: " + str(error.args[0])[:15]
    return "too big went through"


def assert_hostile(legs: Any, body: str, truncated: tuple[str, ...]) -> None:
    """``hostile_calls``' events arrived: the first with the request's fields cut
    to their limits and marked, the second without the request's context and marked."""
    assert body == "too big: Message exceeds"
    events, messages = legs.wait(2)
    event, message = events["Hostile"], messages["Hostile"]
    context = message["context"]
    assert set(truncated) <= set(context[request_context.TRUNCATED_KEY])
    assert (
        event["segment_" + request_context.TRUNCATED_KEY] == context[request_context.TRUNCATED_KEY]
    )
    assert (
        message["anonymousId"] == "anon-hostile" and event["$current_url"] == context["page"]["url"]
    )
    limits = {"userAgent": request_fields.USER_AGENT_LIMIT, "sessionId": request_fields.ID_LIMIT}
    fields = {
        "userAgent": context.get("userAgent"),
        "sessionId": context.get("sessionId"),
        **{"page." + k: v for k, v in context["page"].items()},
    }
    for name, value in fields.items():
        if value is not None:
            assert len(json.dumps(value)) - 2 <= limits.get(name, request_fields.URL_LIMIT), name
    assert len(json.dumps(message)) < MAX_MSG_SIZE
    big, big_event = messages["Big"], events["Big"]
    assert big["context"][request_context.OMITTED_KEY] is True and "page" not in big["context"]
    assert (
        big_event["segment_" + request_context.OMITTED_KEY] is True
        and len(big_event["blob"]) == 25_000
    )
