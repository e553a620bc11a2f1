"""Builds Segment-spec messages exactly as segment-analytics-python does.

This is the only work a call does on the caller's thread. Parity with Segment
is the point, so validation, cleaning and id handling reuse Segment's own
helpers instead of re-implementing them; each builder mirrors the
corresponding ``segment.analytics.Client`` method line for line (same
defaults, same ``require`` order, same keys), which is what makes the returned
``msg`` and the exceptions identical.
"""

from __future__ import annotations

import contextvars
import functools
import marshal
import re
import sys
import threading
from datetime import datetime, timezone
from re import Pattern
from typing import Any

from analytics_posthog._message.clean import with_fast_path
from analytics_posthog._message.ids import new_message_id
from analytics_posthog._patches.segment import (
    ID_TYPES,
    MAX_MSG_SIZE,
    DatetimeSerializer,
    guess_timezone,
    require,
    stringify_id,
)
from analytics_posthog._patches.segment import clean as segment_clean
from analytics_posthog._patches.segment import log as segment_log
from analytics_posthog.version import VERSION

Message = dict[str, Any]

LIBRARY = {"name": "analytics-posthog", "version": VERSION}
JSON_PER_MARSHAL_BYTE = 8
#: The most the Segment leg's own fields add to a message's JSON:
#: ``, "PostHog": false`` in ``integrations``, and Segment's library name
#: and version in place of ours (``tests/test_unwritable.py`` checks it).
WIRE_MARGIN = 64
#: The first argument of Segment's ``RuntimeError`` for a message over the
#: limit (as Segment raises it, unformatted): how a caller tells it apart.
TOO_LARGE = "Message exceeds %skb limit. (%s)"
#: The last message built on each thread that is within WIRE_MARGIN of the limit.
_near_limit = threading.local()
#: True in the context a message found near the limit is delivered in (the
#: dispatcher keeps one context per queued message): the Segment leg sizes
#: that message again, with its own fields, before it queues it.
delivering_near_limit: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "analytics_posthog_near_limit", default=False
)
_encode = DatetimeSerializer().encode
#: Segment's ``clean``, with the fast path for plain JSON values.
clean = with_fast_path(segment_clean, segment_log)


def identify(
    user_id: Any = None,
    traits: dict | None = None,
    context: dict | None = None,
    timestamp: datetime | None = None,
    anonymous_id: Any = None,
    integrations: dict | None = None,
    message_id: Any = None,
) -> Message:
    traits = traits or {}
    context = context or {}
    integrations = integrations or {}
    require("user_id or anonymous_id", user_id or anonymous_id, ID_TYPES)
    require("traits", traits, dict)
    return _finish(
        {
            "integrations": integrations,
            "anonymousId": anonymous_id,
            "timestamp": timestamp,
            "context": context,
            "type": "identify",
            "userId": user_id,
            "traits": traits,
            "messageId": message_id,
        }
    )


def track(
    user_id: Any = None,
    event: str | None = None,
    properties: dict | None = None,
    context: dict | None = None,
    timestamp: datetime | None = None,
    anonymous_id: Any = None,
    integrations: dict | None = None,
    message_id: Any = None,
) -> Message:
    properties = properties or {}
    context = context or {}
    integrations = integrations or {}
    require("user_id or anonymous_id", user_id or anonymous_id, ID_TYPES)
    require("properties", properties, dict)
    require("event", event, str)
    return _finish(
        {
            "integrations": integrations,
            "anonymousId": anonymous_id,
            "properties": properties,
            "timestamp": timestamp,
            "context": context,
            "userId": user_id,
            "type": "track",
            "event": event,
            "messageId": message_id,
        }
    )


def alias(
    previous_id: Any = None,
    user_id: Any = None,
    context: dict | None = None,
    timestamp: datetime | None = None,
    integrations: dict | None = None,
    message_id: Any = None,
) -> Message:
    context = context or {}
    integrations = integrations or {}
    require("previous_id", previous_id, ID_TYPES)
    require("user_id", user_id, ID_TYPES)
    return _finish(
        {
            "integrations": integrations,
            "previousId": previous_id,
            "timestamp": timestamp,
            "context": context,
            "userId": user_id,
            "type": "alias",
            "messageId": message_id,
        }
    )


def group(
    user_id: Any = None,
    group_id: Any = None,
    traits: dict | None = None,
    context: dict | None = None,
    timestamp: datetime | None = None,
    anonymous_id: Any = None,
    integrations: dict | None = None,
    message_id: Any = None,
) -> Message:
    traits = traits or {}
    context = context or {}
    integrations = integrations or {}
    require("user_id or anonymous_id", user_id or anonymous_id, ID_TYPES)
    require("group_id", group_id, ID_TYPES)
    require("traits", traits, dict)
    return _finish(
        {
            "integrations": integrations,
            "anonymousId": anonymous_id,
            "timestamp": timestamp,
            "groupId": group_id,
            "context": context,
            "userId": user_id,
            "traits": traits,
            "type": "group",
            "messageId": message_id,
        }
    )


def page(
    user_id: Any = None,
    category: str | None = None,
    name: str | None = None,
    properties: dict | None = None,
    context: dict | None = None,
    timestamp: datetime | None = None,
    anonymous_id: Any = None,
    integrations: dict | None = None,
    message_id: Any = None,
) -> Message:
    return _page_or_screen(
        "page",
        user_id,
        category,
        name,
        properties,
        context,
        timestamp,
        anonymous_id,
        integrations,
        message_id,
    )


def screen(
    user_id: Any = None,
    category: str | None = None,
    name: str | None = None,
    properties: dict | None = None,
    context: dict | None = None,
    timestamp: datetime | None = None,
    anonymous_id: Any = None,
    integrations: dict | None = None,
    message_id: Any = None,
) -> Message:
    return _page_or_screen(
        "screen",
        user_id,
        category,
        name,
        properties,
        context,
        timestamp,
        anonymous_id,
        integrations,
        message_id,
    )


def _page_or_screen(
    type_: str,
    user_id: Any,
    category: str | None,
    name: str | None,
    properties: dict | None,
    context: dict | None,
    timestamp: datetime | None,
    anonymous_id: Any,
    integrations: dict | None,
    message_id: Any,
) -> Message:
    properties = properties or {}
    context = context or {}
    integrations = integrations or {}
    require("user_id or anonymous_id", user_id or anonymous_id, ID_TYPES)
    require("properties", properties, dict)
    if name:
        require("name", name, str)
    if category:
        require("category", category, str)
    return _finish(
        {
            "integrations": integrations,
            "anonymousId": anonymous_id,
            "properties": properties,
            "timestamp": timestamp,
            "category": category,
            "context": context,
            "userId": user_id,
            "type": type_,
            "name": name,
            "messageId": message_id,
        }
    )


def _finish(msg: Message) -> Message:
    """Segment's ``Client._enqueue`` up to the point where it queues.

    Deliberate differences: the caller's ``context`` dict is copied before
    ``library`` is added, where Segment writes into the caller's own dict; and
    every message shares the one ``LIBRARY`` dict (a backlog of queued
    messages would otherwise hold a copy each), so treat it as read-only.
    """
    timestamp = msg["timestamp"]
    message_id = msg.get("messageId")
    if message_id is None:
        message_id = new_message_id()

    require("integrations", msg["integrations"], dict)
    require("type", msg["type"], str)
    if timestamp is None:
        # Aware and UTC already: Segment's timestamp check and timezone guess
        # have nothing to do, and C's UTC formats faster than dateutil's.
        timestamp = datetime.now(tz=timezone.utc)
    else:
        require("timestamp", timestamp, datetime)
        timestamp = guess_timezone(timestamp)
    require("context", msg["context"], dict)

    msg["timestamp"] = timestamp.isoformat(timespec="milliseconds")
    msg["messageId"] = stringify_id(message_id)
    # ``library`` goes in after cleaning: its place in the dict is taken now,
    # as Segment takes it, with a value that needs no cleaning.
    msg["context"] = {**msg["context"], "library": None}
    msg["userId"] = stringify_id(msg.get("userId", None))
    msg["anonymousId"] = stringify_id(msg.get("anonymousId", None))

    unusual: list = []
    msg = clean(msg, unusual)
    msg["context"]["library"] = LIBRARY

    if unusual or not certainly_fits(msg):
        # Segment's own check: raises ValueError for an int too long for JSON.
        size = json_size(msg)
        if size > MAX_MSG_SIZE:
            raise RuntimeError(TOO_LARGE, str(int(MAX_MSG_SIZE / 1024)), str(msg))
        if size > MAX_MSG_SIZE - WIRE_MARGIN:
            _near_limit.msg = msg
    return msg


def near_limit(msg: Message) -> bool:
    """Whether ``msg``, the last message built on this thread, is within
    WIRE_MARGIN of MAX_MSG_SIZE: the Segment leg's own fields may take it over."""
    return getattr(_near_limit, "msg", None) is msg


def segment_json(msg: Message) -> str:
    """Segment's JSON for ``msg``, as its client writes it (``ValueError`` for
    an int that Python refuses to write: more than
    ``sys.get_int_max_str_digits()`` digits)."""
    text: str = _encode(msg)
    return text


def json_size(msg: Message) -> int:
    """Bytes of Segment's JSON for ``msg`` (``segment_json``)."""
    return len(segment_json(msg).encode())


#: The last message this thread proved small, with its marshal (``marshalled``).
_last_marshal = threading.local()


def marshalled(msg: Message) -> bytes | None:
    """``msg``'s marshal (version 2) if ``certainly_fits`` just made it on this
    thread: the spool writes those bytes rather than serialise the message again."""
    last = getattr(_last_marshal, "pair", None)
    return last[1] if last is not None and last[0] is msg else None


def certainly_fits(msg: Message) -> bool:
    """Whether Segment's JSON for ``msg`` can be written and is within
    MAX_MSG_SIZE, from its ``marshal`` bytes, which C computes about 3.5 times
    faster than the JSON.

    Only for a message that cleaning found to hold nothing but dicts, lists
    and plain values under ``str`` keys. Each such value's JSON, with the
    ``", "`` that follows it, is at most JSON_PER_MARSHAL_BYTE times its
    marshal (version 2, which never shares repeated objects): ``false`` is
    5 characters + 2 for 1 byte; a string's characters escape to at most 6
    for each UTF-8 byte; numbers and containers are wider in marshal than in
    JSON. A message over the bound, or one that may hold an int too long to
    write (``may_hold_unwritable_int``), gets Segment's own exact check. The
    bound leaves WIRE_MARGIN bytes, so a message proven here also fits as the
    Segment leg sends it.
    """
    data = marshal.dumps(msg, 2)
    _last_marshal.pair = (msg, data)
    return JSON_PER_MARSHAL_BYTE * len(
        data
    ) <= MAX_MSG_SIZE - WIRE_MARGIN and not may_hold_unwritable_int(data)


#: The most 15-bit digits an int can have in a message that passes the bound.
_MOST_DIGITS = (MAX_MSG_SIZE // JSON_PER_MARSHAL_BYTE - 5) // 2


def may_hold_unwritable_int(data: bytes) -> bool:
    """Whether the marshal ``data`` of a message within the bound may hold an
    int too long for JSON. Such an int makes Segment's client raise at the
    call, and a consumer that meets one drops it (Segment's without marking
    it done, so its queue never joins again): it must get the exact check.

    marshal writes an int beyond 32 bits as ``b"l"``, its number of 15-bit
    digits as a signed 32-bit little-endian count, then the digits. An int of
    more than the limit's decimal digits has at least ``fewest`` of them, and
    in a message within the bound at most ``_MOST_DIGITS``: its header matches
    ``pattern`` and its digits fit in what follows. Text can match too (a
    string ending in ``l`` before a short string's length); that only costs
    the exact check.
    """
    limit = _int_digits_limit()
    if not limit:
        return False
    pattern, fewest = _long_headers(limit)
    for match in pattern.finditer(data, 0, len(data) - 2 * fewest):
        digits = abs(int.from_bytes(match.group()[1:], "little", signed=True))
        if digits >= fewest and match.start() + 5 + 2 * digits <= len(data):
            return True
    return False


def _int_digits_limit() -> int:
    get = getattr(sys, "get_int_max_str_digits", None)
    return get() if get is not None else 0


@functools.lru_cache(maxsize=4)
def _long_headers(limit: int) -> tuple[Pattern[bytes], int]:
    """The marshal headers of ints with more than ``limit`` decimal digits, and
    their fewest 15-bit digits (those of ``10 ** limit``)."""
    fewest = ((10**limit).bit_length() + 14) // 15
    top = min(fewest, _MOST_DIGITS)
    positive = rb"l[\x00-\xff][\x%02x-\x%02x]\x00\x00" % (top >> 8, _MOST_DIGITS >> 8)
    negative = rb"l[\x00-\xff][\x%02x-\x%02x]\xff\xff" % (
        (0x10000 - _MOST_DIGITS) >> 8,
        (0x10000 - top) >> 8,
    )
    return re.compile(positive + b"|" + negative), fewest
