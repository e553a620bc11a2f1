"""One archived Segment line -> the PostHog event that replay sends and export writes.

Pure apart from reading the clock once per run (the 48-hour cutoff is passed
in): both commands call ``Converter.convert``, so what export writes is what
replay sends, byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import posthog

from analytics_posthog._patches import posthog as posthog_internals
from analytics_posthog.mapping import (
    EVENT_NAMES,
    MERGED_IDS,
    parse_timestamp,
    placeholder_ids,
    to_posthog,
)

TYPES = ("track", "identify", "page", "screen", "group", "alias")
#: Fields a type cannot be mapped without (beyond a userId or anonymousId).
REQUIRED = {"track": ("event",), "group": ("groupId",), "alias": ("userId", "previousId")}
#: PostHog event name -> Segment type, for counting what was sent per type.
TYPE_OF_EVENT = {**{name: type_ for type_, name in EVENT_NAMES.items()}, "$set": "identify"}

#: posthog drops (with only a log line) an event whose JSON is over this; it
#: is rejected here instead, so it is counted and kept in the rejects file.
MAX_EVENT_BYTES: int = posthog_internals.MAX_EVENT_BYTES
#: PostHog's historical-migration mode is for events older than this; newer
#: ones would be stored as history while their live copies are still arriving.
HISTORICAL_AFTER = timedelta(hours=48)
#: The library posthog names on live events; replayed events carry the same.
LIB = "posthog-python"
LIB_VERSION: str = getattr(posthog, "VERSION", "")

# outcomes of one line
EVENT, FILTERED, EXCLUDED = "event", "filtered", "excluded"
#: The merges a person record asks for, by PostHog event: the property naming
#: the id merged into the event's distinct id.
MERGE_SOURCE = {"$identify": "$anon_distinct_id", "$create_alias": "alias"}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


class Rejected(Exception):
    """A line that cannot be replayed; the message says why, in plain words."""


@dataclass(frozen=True)
class Filters:
    group_type: str
    types: Sequence[str] = TYPES
    since: datetime | None = None
    until: datetime | None = None


def parse_line(line: bytes) -> dict[str, Any]:
    """A line as a replayable Segment message, or ``Rejected`` saying why.
    NaN and infinities (not JSON, though Python writes them) become null."""
    try:
        msg = _loads(line)
    except ValueError as error:
        raise Rejected("invalid JSON: %s" % error) from None
    if not isinstance(msg, dict):
        raise Rejected("not a JSON object")
    type_ = msg.get("type")
    if type_ not in TYPES:
        raise Rejected(
            "unknown type %r (expected one of %s)" % (type_, ", ".join(TYPES))
            if type_
            else "no type"
        )
    if not msg.get("messageId"):
        raise Rejected("no messageId (the event uuid is derived from it)")
    msg["messageId"] = str(msg["messageId"])
    if not msg.get("timestamp"):
        raise Rejected("no timestamp")
    try:
        parse_timestamp(msg["timestamp"])
    except ValueError as error:
        raise Rejected("bad timestamp %r: %s" % (msg["timestamp"], error)) from None
    if not (msg.get("userId") or msg.get("anonymousId")):
        raise Rejected("no userId or anonymousId")
    for name in REQUIRED.get(type_, ()):
        if msg.get(name) in (None, ""):
            raise Rejected("%s without %s" % (type_, name))
    return msg


def _loads(line: bytes) -> Any:
    """``json.loads`` (its fast default decoder), and a decoder that reads the
    non-JSON constants as null only for the rare line that has one."""
    if b"NaN" in line or b"Infinity" in line:
        return _LENIENT.decode(line.decode("utf-8"))
    return json.loads(line)


_LENIENT = json.JSONDecoder(parse_constant=lambda name: None)
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def refused_merge(msg: dict[str, Any]) -> str | None:
    """Why PostHog will refuse the merge this ``identify`` or ``alias`` asks
    for: an id it takes for a placeholder (the event is sent all the same)."""
    if msg["type"] not in MERGED_IDS:
        return None
    found = placeholder_ids(msg)
    if not found:
        return None
    return "PostHog will not merge persons on it (the event itself goes through): %s" % (
        ", ".join("%s %r is a placeholder id to PostHog" % (field, value) for field, value in found)
    )


def dual_written(msg: dict[str, Any]) -> datetime | None:
    """The time of a message whose ``integrations`` say ``"PostHog": false``:
    the mark a dual-write leaves on Segment's copy of every call it delivered
    to PostHog itself, so the first one tells when live delivery began."""
    integrations = msg.get("integrations")
    if isinstance(integrations, dict) and integrations.get("PostHog") is False:
        return parse_timestamp(msg["timestamp"], clamp=True)
    return None


class Converter:
    """Segment lines -> (UTC day, PostHog event as one JSON line)."""

    def __init__(self, filters: Filters, now: datetime) -> None:
        self.filters = filters
        self.cutoff = now - HISTORICAL_AFTER

    def convert(self, line: bytes) -> tuple[str, Any]:
        """``(EVENT, (day, type, json_bytes, refused, person))``,
        ``(FILTERED|EXCLUDED, None)``, or ``Rejected``; ``refused``: why PostHog
        will not merge persons on this ``identify`` or ``alias`` (``None`` when
        it will); ``person``: what it does to persons (see ``person_record``),
        taken out of the event, or ``None``."""
        msg = parse_line(line)
        filters = self.filters
        if msg["type"] not in filters.types:
            return FILTERED, None
        try:
            event = to_posthog(msg, filters.group_type)
        except KeyError as error:
            raise Rejected("missing %s" % error) from None
        except (TypeError, ValueError, AttributeError) as error:
            raise Rejected("cannot map: %s" % error) from None
        if event is None:  # its integrations exclude PostHog
            return EXCLUDED, dual_written(msg)
        moment = event.timestamp
        if (filters.since is not None and moment < filters.since) or (
            filters.until is not None and moment >= filters.until
        ):
            return FILTERED, None
        if moment > self.cutoff:
            raise Rejected(
                "newer than 48 hours (%s): PostHog's historical import is for older events; "
                "send recent events live, or replay this line after %s"
                % (moment.isoformat(), (moment + HISTORICAL_AFTER).isoformat(timespec="seconds"))
            )
        properties = event.properties
        person = person_record(event.event, event.distinct_id, properties, moment)
        properties["$lib"] = LIB
        properties["$lib_version"] = LIB_VERSION
        if event.disable_geoip:
            properties["$geoip_disable"] = True
        wire = {
            "event": event.event,
            "distinct_id": event.distinct_id,
            "properties": properties,
            "timestamp": moment.isoformat(),
            "uuid": event.uuid,
        }
        try:
            data = _COMPACT.encode(wire).encode()
        except (TypeError, ValueError) as error:
            raise Rejected("cannot encode: %s" % error) from None
        # posthog measures json.dumps' default form (ASCII escapes, spaced
        # separators), at most 3 times the compact UTF-8 size: only a large
        # event is measured its way.
        if len(data) * 3 > MAX_EVENT_BYTES:
            size = len(json.dumps(wire).encode())
            if size > MAX_EVENT_BYTES:
                raise Rejected(
                    "event is %d bytes, over posthog's limit of %d (%d KiB); posthog would drop it"
                    % (size, MAX_EVENT_BYTES, MAX_EVENT_BYTES // 1024)
                )
        return EVENT, (moment.date().isoformat(), msg["type"], data, refused_merge(msg), person)


def person_record(
    event: str, distinct_id: str, properties: dict[str, Any], moment: datetime
) -> list[Any]:
    """What the event does to persons, with its ``$set`` and ``$set_once``
    taken out of ``properties``: ``[microseconds since 1970, distinct id]``
    for an event that only gives its distinct id a person, and ``[...,
    merged id, $set, $set_once]`` for one that also merges (``$identify``,
    ``$create_alias``: ``merged id`` is the id merged in, else ``None``) or
    sets person properties.

    PostHog applies person properties in the order events arrive, so a
    historical event that still carried them would overwrite what live calls
    set since; ``persons`` applies them in time order and sends the result.
    """
    updates = [None, None]
    for index, name in enumerate(("$set", "$set_once")):
        value = properties.get(name)
        if isinstance(value, dict):
            del properties[name]
            updates[index] = value or None
    source = MERGE_SOURCE.get(event)
    micros = (moment - _EPOCH) // _MICROSECOND
    if source is None and updates == [None, None]:
        return [micros, distinct_id]
    merged = properties.get(source) if source else None
    return [
        micros,
        distinct_id,
        None if merged is None else str(merged),
        *updates,
    ]
