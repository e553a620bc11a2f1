"""Segment message -> PostHog event, as tables and pure functions (no I/O).

It follows Segment's own PostHog destination, so events that reach PostHog
directly look like the ones teams already collected through Segment (same
uuid, same event names, same person and group properties), and adds the
richer context mapping other CDPs' PostHog destinations do. The contract, and
how tests hold it to the destination, is ``docs/mapping.md``; each table below
is one of its rules.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

DEFAULT_GROUP_TYPE = "segment_group"

#: A fraction of a second, padded or cut to the 6 digits ``fromisoformat`` reads.
_FRACTION = re.compile(r"(\.\d+)")

#: Segment's PostHog destination derives event uuids in this namespace, so a
#: copy sent directly and one relayed by Segment deduplicate in PostHog.
UUID_NAMESPACE = uuid.uuid5(uuid.UUID(int=0), "PostHog")

#: Segment call type -> PostHog event name (``track`` keeps the event's own
#: name; ``identify`` without a userId becomes ``$set``).
EVENT_NAMES = {
    "identify": "$identify",
    "page": "$pageview",
    "screen": "$screen",
    "group": "$groupidentify",
    "alias": "$create_alias",
}

#: Segment context path -> PostHog property.
CONTEXT_PROPERTIES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("ip",), "$ip"),
    (("userAgent",), "$raw_user_agent"),
    (("page", "url"), "$current_url"),
    (("page", "path"), "$pathname"),
    (("page", "referrer"), "$referrer"),
    (("page", "title"), "$title"),
    (("os", "name"), "$os"),
    (("os", "version"), "$os_version"),
    (("device", "id"), "$device_id"),
    (("device", "type"), "$device_type"),
    (("device", "manufacturer"), "$device_manufacturer"),
    (("device", "model"), "$device_model"),
    (("device", "name"), "$device_name"),
    (("screen", "width"), "$screen_width"),
    (("screen", "height"), "$screen_height"),
    (("screen", "density"), "$screen_density"),
    (("app", "name"), "$app_name"),
    (("app", "version"), "$app_version"),
    (("app", "build"), "$app_build"),
    (("app", "namespace"), "$app_namespace"),
    (("locale",), "$locale"),
    (("timezone",), "$timezone"),
    (("network", "carrier"), "$network_carrier"),
    (("sessionId",), "$session_id"),
    (("session_id",), "$session_id"),
)

#: ``context.campaign.<key>`` -> ``utm_<key>``, for every key the campaign
#: holds (as Segment's destination maps it), with these keys renamed: Segment
#: calls the campaign ``name``, UTM calls it ``utm_campaign``.
CAMPAIGN_PREFIX = "utm_"
CAMPAIGN_RENAMES = {"name": "campaign"}

#: The call's own property -> the PostHog property it also becomes, as
#: Segment's destination maps them (the original is kept as well). When the
#: call names the PostHog property itself, its own value wins.
PROPERTY_ALIASES: tuple[tuple[str, str], ...] = (
    ("url", "$current_url"),
    ("utm_name", "utm_campaign"),
    ("browser", "$browser"),
)

#: Properties a call type always carries: a group has no location, so GeoIP
#: must not give it the location of whichever request updated it.
FIXED_PROPERTIES: dict[str, dict[str, Any]] = {
    "group": {"$geoip_disable": True},
}

#: CONTEXT_PROPERTIES by top-level context key, so mapping a context costs
#: what the context holds rather than the length of the table.
_CONTEXT_INDEX: dict[str, list[tuple[tuple[str, ...], str]]] = {}
for _path, _name in CONTEXT_PROPERTIES:
    _CONTEXT_INDEX.setdefault(_path[0], []).append((_path[1:], _name))

#: Context keys that are not also kept whole as ``segment_<key>`` (Segment's
#: destination maps campaign to utm_* only).
NOT_KEPT_WHOLE = frozenset({"campaign"})

#: Call types whose ``context.traits`` become person properties (``$set``).
TRAITS_AS_SET = frozenset({"track", "page", "screen"})


@dataclass(frozen=True)
class PostHogEvent:
    """The arguments of one ``posthog.Client.capture`` call."""

    event: str
    distinct_id: str
    properties: dict[str, Any]
    timestamp: datetime
    uuid: str
    disable_geoip: bool


def event_uuid(message_id: str) -> str:
    """The uuid Segment's PostHog destination gives the event of ``message_id``:
    ``uuid.uuid5(UUID_NAMESPACE, message_id)``, written out from the SHA-1
    digest directly (it runs once per event: the ``UUID`` object and its
    ``str`` cost more than the hash)."""
    try:
        name = message_id.encode()
    except UnicodeEncodeError:
        # A lone surrogate has no UTF-8 form: written as U+FFFD, as a
        # browser's TextEncoder writes it, rather than losing the event.
        name = _SURROGATE.sub("\ufffd", message_id).encode()
    digest = hashlib.sha1(_NAMESPACE_BYTES + name).digest()
    hexed = (
        digest[:6]
        + bytes((0x50 | (digest[6] & 0x0F),))
        + digest[7:8]
        + bytes((0x80 | (digest[8] & 0x3F),))
        + digest[9:16]
    ).hex()
    return "%s-%s-%s-%s-%s" % (hexed[:8], hexed[8:12], hexed[12:16], hexed[16:20], hexed[20:])


_NAMESPACE_BYTES = UUID_NAMESPACE.bytes
_SURROGATE = re.compile("[\ud800-\udfff]")


def posthog_enabled(integrations: Mapping[str, Any] | None) -> bool:
    """Whether Segment's ``integrations`` option lets the call reach PostHog."""
    if not integrations:
        return True
    flags = {str(name).lower(): value for name, value in integrations.items()}
    posthog = flags.get("posthog")
    if posthog is not None:
        return posthog is not False
    return flags.get("all", True) is not False


def segment_integrations(integrations: Mapping[str, Any], posthog_delivers: bool) -> dict[str, Any]:
    """The ``integrations`` the Segment leg sends.

    When our PostHog leg delivers the call (``posthog_delivers``), Segment's own
    PostHog destination is switched off, whatever the call said: a call that
    enables PostHog (``{"All": False, "PostHog": True}``, ``{"posthog": {...}}``)
    would otherwise reach PostHog twice, once directly and once relayed, with
    its ``$set`` applied twice. Every spelling of the name goes, as the
    name is matched case-insensitively, and ``PostHog`` (the destination's
    name) is set. When our leg does not deliver it, the call's routing stands.
    """
    if not posthog_delivers:
        return dict(integrations)
    kept = {name: value for name, value in integrations.items() if str(name).lower() != "posthog"}
    kept["PostHog"] = False
    return kept


def to_posthog(msg: Mapping[str, Any], group_type: str = DEFAULT_GROUP_TYPE) -> PostHogEvent | None:
    """Map one Segment message; ``None`` when its integrations exclude PostHog."""
    if not posthog_enabled(msg.get("integrations")):
        return None
    type_ = msg["type"]
    context = msg.get("context") or {}
    properties = context_properties(context, type_, group_type)
    own = msg.get("properties") or {}
    _merge_call_properties(properties, own)
    properties.update(FIXED_PROPERTIES.get(type_, ()))

    distinct_id = msg.get("userId") or msg.get("anonymousId")
    if type_ == "track":
        event = msg["event"]
    elif type_ == "identify":
        properties["$set"] = msg.get("traits") or {}
        if msg.get("userId"):
            event = EVENT_NAMES["identify"]
            if msg.get("anonymousId"):
                properties["$anon_distinct_id"] = msg["anonymousId"]
        else:
            event = "$set"
    elif type_ == "page":
        event = EVENT_NAMES["page"]
        _put_given(properties, "name", msg.get("name"))
        _put_given(properties, "category", msg.get("category"))
    elif type_ == "screen":
        event = EVENT_NAMES["screen"]
        _put_given(properties, "$screen_name", msg.get("name"))
        _put_given(properties, "category", msg.get("category"))
    elif type_ == "group":
        event = EVENT_NAMES["group"]
        properties["$group_type"] = group_type
        properties["$group_key"] = msg["groupId"]
        properties["$group_set"] = msg.get("traits") or {}
    elif type_ == "alias":
        event = EVENT_NAMES["alias"]
        distinct_id = msg["userId"]
        properties["alias"] = msg["previousId"]
    else:
        raise ValueError("unknown Segment message type: %r" % (type_,))

    if "$current_url" in properties and "$host" not in properties:
        host = url_host(properties["$current_url"])
        if host:
            properties["$host"] = host

    return PostHogEvent(
        event=event,
        distinct_id=str(distinct_id),
        properties=properties,
        timestamp=parse_timestamp(msg["timestamp"], clamp=True),
        uuid=event_uuid(msg["messageId"]),
        disable_geoip=bool(properties.get("$geoip_disable")) or not context.get("ip"),
    )


def json_key(key: Any) -> str:
    """A dict key as JSON writes it: Segment's client accepts keys that are
    not strings (``{1: ...}``), and Segment's destination only ever saw them
    as JSON's strings."""
    if isinstance(key, str):
        return key
    try:
        return next(iter(json.loads(json.dumps({key: None}))))
    except (TypeError, ValueError):
        return str(key)


def context_properties(context: Mapping[str, Any], type_: str, group_type: str) -> dict[str, Any]:
    """PostHog properties derived from a Segment ``context``."""
    properties: dict[str, Any] = {}
    kept: dict[str, Any] = {}
    for key, value in context.items():
        if type(key) is not str:
            key = json_key(key)
        paths = _CONTEXT_INDEX.get(key)
        if paths is not None:
            for rest, name in paths:
                found = _lookup(value, rest)
                if found is not None:
                    properties[name] = found
        if key not in NOT_KEPT_WHOLE:
            kept["segment_" + key] = value
    campaign = context.get("campaign")
    if type(campaign) is dict:
        for key, value in campaign.items():
            name = key if type(key) is str else json_key(key)
            properties[CAMPAIGN_PREFIX + CAMPAIGN_RENAMES.get(name, name)] = value
    group_id = context.get("groupId")
    if group_id is not None:
        properties["$groups"] = {group_type: group_id}
    traits = context.get("traits")
    if type_ in TRAITS_AS_SET and isinstance(traits, dict) and traits:
        properties["$set"] = dict(traits)
    properties.update(kept)
    return properties


def _merge_call_properties(properties: dict[str, Any], own: Mapping[str, Any]) -> None:
    """The call's properties win; ``$set`` and ``$groups`` merge key by key so
    an explicit value wins without discarding what context contributed."""
    for key in ("$set", "$groups"):
        derived, explicit = properties.get(key), own.get(key)
        if isinstance(derived, dict) and isinstance(explicit, dict):
            properties[key] = {**derived, **explicit}
            own = {k: v for k, v in own.items() if k != key}
    properties.update(own)
    for name, posthog_name in PROPERTY_ALIASES:
        value = own.get(name)
        if value and posthog_name not in own:
            properties[posthog_name] = value


def _put_given(properties: dict[str, Any], name: str, value: Any) -> None:
    if value:
        properties[name] = value


def _lookup(value: Any, path: tuple[str, ...]) -> Any:
    """Segment's ``clean`` turns every mapping into a plain ``dict``, so an
    exact type check is enough (and far cheaper than an ABC check)."""
    if not path:
        return value
    if type(value) is not dict:
        return None
    if len(path) == 1:
        return value.get(path[0])
    for key in path:
        if type(value) is not dict:
            return None
        value = value.get(key)
    return value


def url_host(url: Any) -> str | None:
    """``host[:port]`` of a URL, as posthog-js reports ``$host``."""
    if not isinstance(url, str):
        return None
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return None
    return netloc.rpartition("@")[2] or None


#: The UTC instants a ``datetime`` can hold: an event whose timestamp lies
#: beyond one of them reaches PostHog at it (``parse_timestamp(clamp=True)``).
EARLIEST = datetime.min.replace(tzinfo=timezone.utc)
LATEST = datetime.max.replace(tzinfo=timezone.utc)


def parse_timestamp(value: Any, *, clamp: bool = False) -> datetime:
    """A Segment ISO timestamp as an aware UTC datetime (the same instant).

    Live messages carry Python's own ISO form, which the first attempt reads.
    Archived ones also come as Segment writes them: a ``Z`` suffix and 1 to 9
    fraction digits, which Python 3.10's ``fromisoformat`` refuses; and one
    with no zone is UTC, as Segment stores them. A ``ValueError`` says why a
    value is not a timestamp, including instants a datetime cannot hold
    (``0001-01-01T00:00:00+01:00`` is before year 1 in UTC), unless ``clamp``:
    then such an instant is ``EARLIEST`` or ``LATEST``. Segment's client
    accepts and sends these (they are in range in their own zone), so a live
    call's event must not be lost for want of a datetime to hold it.
    """
    if not isinstance(value, str):
        raise ValueError("not a string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        text = value.strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        text = _FRACTION.sub(lambda m: (m.group(1) + "000000")[:7], text, count=1)
        moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:
        if not clamp:
            raise ValueError("out of range once in UTC") from None
        # Only a zone east of UTC can take year 1 below it, only one west of it year 9999 above.
        offset = moment.utcoffset()
        return EARLIEST if offset is not None and offset > timedelta(0) else LATEST


# -- ids PostHog will not merge persons on ------------------------------------

#: Ids PostHog treats as placeholders, whatever their case: it refuses an
#: ``$identify`` or ``$create_alias`` merge that involves one (and files an
#: ingestion warning); ordinary events with one all land on one person.
PLACEHOLDER_IDS_ANY_CASE = frozenset(
    {
        "anonymous",
        "guest",
        "distinctid",
        "distinct_id",
        "id",
        "not_authenticated",
        "email",
        "undefined",
        "true",
        "false",
    }
)
#: The same, in this exact case only.
PLACEHOLDER_IDS_EXACT = frozenset({"[object Object]", "NaN", "None", "none", "null", "0"})
#: The ids of each call that a merge joins (identify, alias), or that name its person.
MERGED_IDS: dict[str, tuple[str, ...]] = {
    "identify": ("userId", "anonymousId"),
    "alias": ("userId", "previousId"),
}


def is_placeholder_id(value: Any) -> bool:
    """Whether PostHog takes ``value`` for a placeholder: blank, one of the
    values above, or one of them in quotes."""
    if value is None:
        return False
    text = str(value).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return not text or text.lower() in PLACEHOLDER_IDS_ANY_CASE or text in PLACEHOLDER_IDS_EXACT


def placeholder_ids(msg: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(field, id)`` for each id of ``msg`` PostHog will not merge on (an
    ``identify``'s or ``alias``'s either side) or that puts its events on a
    shared person (any other call's ``userId``)."""
    fields = MERGED_IDS.get(msg.get("type", ""), ("userId",))
    return [
        (field, str(msg[field]))
        for field in fields
        if msg.get(field) is not None and is_placeholder_id(msg[field])
    ]
