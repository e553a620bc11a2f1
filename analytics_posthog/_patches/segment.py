"""Every reach inside segment-analytics-python, in one place (see ``_patches.register`` for the rules).

Patches (off with ``ANALYTICS_POSTHOG_NO_INTERNALS=1``):

- ``segment_attempt_watch``: Segment's consumer ``post`` counted and its
  failed attempts told to ``outages`` (``retries``).
- ``segment_session_in_child``: a forked child gets its own HTTP session in
  place of the parent's pooled keep-alive sockets.
- ``segment_finite_json``: NaN and infinities written as ``null`` (JSON
  has no such values), as posthog writes them.
- ``segment_direct_queue``: a message already built and cleaned as Segment's
  client builds it goes straight onto the queue its consumer reads (in sync
  mode, through its ``post``), instead of being validated, cleaned and sized
  a second time.

Borrowings, for parity: Segment's own message helpers (``require``,
``stringify_id``, ``clean``, ``guess_timezone``, its serialiser), its size
limit and version, and the submodules ``install_as_segment`` serves.

The modules are bound at import, before ``install_as_segment()`` can rename
``segment.analytics``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import math
import numbers
import queue
from datetime import date, datetime, timezone
from decimal import Decimal
from enum import Enum
from importlib import metadata
from types import ModuleType
from typing import Any

from requests import sessions
from segment.analytics import Client as SegmentClient

from analytics_posthog._delivery import retries
from analytics_posthog._delivery.forks import fork_safe_lock
from analytics_posthog._patches.register import attempt, declare, missing
from analytics_posthog._patches.strict_json import encode_finite

SUBMODULE_NAMES = ("client", "consumer", "oauth_manager", "request", "utils", "version")
_modules: dict[str, ModuleType] = {}
for _name in SUBMODULE_NAMES:
    try:
        _modules[_name] = importlib.import_module("segment.analytics." + _name)
    except ImportError:
        pass
_client, _consumer, _request, _utils, _version = (
    _modules.get(name) for name in ("client", "consumer", "request", "utils", "version")
)

WATCH = declare(
    "segment_attempt_watch",
    "patch",
    "segment consumer.post",
    "Segment's retries are not counted; no outage warning until it gives up",
)
SESSION = declare(
    "segment_session_in_child",
    "patch",
    "segment request._session (replaced in a forked child, closed at exit)",
    "a forked child shares the parent's keep-alive sockets: batches may be lost or sent twice",
)
DIRECT = declare(
    "segment_direct_queue",
    "patch",
    "Segment Client._enqueue (message put on client.queue)",
    "each message goes through Segment's public call again (cleaned and sized twice: slower)",
)
FINITE = declare(
    "segment_finite_json",
    "patch",
    "segment request.DatetimeSerializer.encode (NaN and infinities as null)",
    "NaN and infinities written as Segment writes them, not JSON: a strict endpoint refuses the whole batch",
)
HELPERS = declare(
    "segment_message_helpers",
    "borrow",
    "segment client.require/stringify_id, utils.clean/guess_timezone, request.DatetimeSerializer",
    "our equivalents (a naive datetime is taken as UTC)",
)
LIMITS = declare(
    "segment_limit_version",
    "borrow",
    "segment consumer.MAX_MSG_SIZE, version.VERSION",
    "32 KiB, the installed version",
)
SUBMODULES_REACH = declare(
    "segment_submodules",
    "borrow",
    "segment.analytics.consumer/request/utils/... (install_as_segment)",
    "missing ones are not served",
)

_lock = fork_safe_lock()


def install() -> None:
    """Put the process-wide patches in place that their checks allow (idempotent)."""
    with _lock:
        attempt(WATCH, _check_post, _watch_post)
        attempt(FINITE, _check_finite, _finite_json)


def probe() -> None:
    """Install, and check the per-client reaches on a client that sends nothing
    (``doctor``), so the register says what a ``Client`` here would use."""
    install()
    direct_sender(SegmentClient("probe", send=False))
    attempt(SESSION, _check_session, once=False)


def _check_session() -> str | None:
    if not isinstance(getattr(_request, "_session", None), sessions.Session):
        return "segment.analytics.request._session is not a requests Session"
    return None


def _check_post() -> str | None:
    if _consumer is None or _request is None:
        return "segment.analytics.consumer or .request is missing"
    return missing(_consumer, "post") or (
        None if _consumer.post is _request.post else "consumer.post is not request.post"
    )


def _watch_post() -> None:
    _consumer.post = retries.watched_post(_request.post)  # type: ignore[union-attr]


def _check_finite() -> str | None:
    serializer = getattr(_request, "DatetimeSerializer", None)
    if not isinstance(serializer, type) or not issubclass(serializer, json.JSONEncoder):
        return "segment.analytics.request.DatetimeSerializer is not a JSONEncoder"
    if "encode" in serializer.__dict__:
        return "Segment's DatetimeSerializer has an encode of its own"
    return None


def _finite_json() -> None:
    _request.DatetimeSerializer.encode = finite_or_null  # type: ignore[union-attr]


def finite_or_null(self: json.JSONEncoder, o: Any) -> str:
    """``JSONEncoder.encode`` writing NaN and infinities as ``null``, as posthog does.

    Segment's client writes them as ``NaN``/``Infinity``, which is not JSON:
    one such value in one call costs its whole batch of up to 100 messages at
    an endpoint that parses strictly. C's encoder, with NaN refused, proves
    a message has none at the cost of the encoding Segment does anyway; only
    one that has one is copied with them replaced. Any other ``ValueError``
    (an int too long for JSON) is raised again by the second encoding, as
    Segment's own.
    """
    if not self.allow_nan:
        return json.JSONEncoder.encode(self, o)
    encoded = encode_finite(self, o)
    return encoded if encoded is not None else json.JSONEncoder.encode(self, _finite(o))


def _finite(value: Any) -> Any:
    """``value`` with every NaN and infinity replaced by ``None`` (a copy)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def new_session_in_child() -> None:
    """Called in a forked child before its Segment client is built (``SegmentLeg``)."""
    if attempt(SESSION, _check_session, once=False):
        _request._session = sessions.Session()  # type: ignore[union-attr]


def close_session() -> None:
    """At exit: close the pooled connections of Segment's session while the
    runtime still runs (under gevent, the interpreter's teardown closes them
    after the hub is gone, printing a traceback each); a later request opens
    new ones."""
    if attempt(SESSION, _check_session, once=False):
        _request._session.close()  # type: ignore[union-attr]


_POST_ARGUMENTS = ("write_key", "host", "gzip", "timeout", "proxies", "oauth_manager")
_CLIENT_STATE = (
    "queue",
    "sync_mode",
    "write_key",
    "host",
    "gzip",
    "timeout",
    "proxies",
    "oauth_manager",
)


def _check_direct(client: SegmentClient) -> str | None:
    if _request is None or not callable(getattr(_request, "post", None)):
        return "segment.analytics.request has no post"
    absent = [
        name for name in _POST_ARGUMENTS if name not in inspect.signature(_request.post).parameters
    ]
    if absent:
        return "request.post takes no %s" % ", ".join(absent)
    return missing(client, *_CLIENT_STATE) or (
        None if isinstance(client.queue, queue.Queue) else "client.queue is not a queue.Queue"
    )


def direct_sender(client: SegmentClient) -> bool:
    """Whether ``enqueue`` may put messages straight on ``client``'s queue."""
    return attempt(DIRECT, lambda: _check_direct(client), once=False)


def enqueue(client: SegmentClient, wire: dict[str, Any], direct: bool) -> bool:
    """Queue (or, in sync mode, post) one finished message; ``False`` when Segment's queue is full."""
    if not direct:
        return _through_public_call(client, wire)
    if client.sync_mode:
        _request.post(  # type: ignore[union-attr]
            client.write_key,
            client.host,
            gzip=client.gzip,
            timeout=client.timeout,
            proxies=client.proxies,
            oauth_manager=client.oauth_manager,
            batch=[wire],
        )
        return True
    try:
        client.queue.put(wire, block=False)
    except queue.Full:
        return False
    return True


def _through_public_call(client: SegmentClient, wire: dict[str, Any]) -> bool:
    """The message handed to Segment's call of its type, which builds it again (same id and values)."""
    kind = wire["type"]
    common: dict[str, Any] = {
        "context": {k: v for k, v in wire["context"].items() if k != "library"},
        "timestamp": datetime.fromisoformat(wire["timestamp"]),
        "integrations": wire["integrations"],
        "message_id": wire["messageId"],
    }
    if kind == "alias":
        return client.alias(wire["previousId"], wire["userId"], **common)[0]
    common.update(user_id=wire.get("userId"), anonymous_id=wire.get("anonymousId"))
    if kind == "track":
        return client.track(event=wire["event"], properties=wire["properties"], **common)[0]
    if kind == "identify":
        return client.identify(traits=wire["traits"], **common)[0]
    if kind == "group":
        return client.group(group_id=wire["groupId"], traits=wire["traits"], **common)[0]
    return getattr(client, kind)(
        category=wire.get("category"),
        name=wire.get("name"),
        properties=wire["properties"],
        **common,
    )[0]


# -- borrowed helpers ----------------------------------------------------------


def _require(name: str, field: Any, data_type: Any) -> None:
    if not isinstance(field, data_type):
        raise AssertionError(f"{name} must have {data_type}, got: {field}")


def _stringify_id(val: Any) -> str | None:
    return None if val is None else val if isinstance(val, str) else str(val)


def _guess_timezone(dt: datetime) -> datetime:
    return (
        dt
        if dt.tzinfo is not None and dt.utcoffset() is not None
        else dt.replace(tzinfo=timezone.utc)
    )


def _clean(item: Any) -> Any:
    if isinstance(item, Decimal):
        return float(item)
    if isinstance(item, (str, bool, numbers.Number, datetime, date, type(None))):
        return item
    if isinstance(item, (set, list, tuple)):
        return [_clean(value) for value in item]
    if isinstance(item, dict):
        data = {}
        for key, value in item.items():
            try:
                data[key] = _clean(value)
            except TypeError:
                log.warning(
                    "Dictionary values must be serializeable to JSON %r value of type %s is unsupported.",
                    key,
                    type(value),
                )
        return data
    if isinstance(item, Enum):
        return _clean(item.value)
    if isinstance(item, bytes):
        return item.decode("utf-8", "strict")
    raise TypeError("cannot clean %s" % type(item).__name__)


class _DatetimeSerializer(json.JSONEncoder):
    def default(self, obj: Any) -> Any:
        if isinstance(obj, (date, datetime)):
            return obj.isoformat()
        return json.JSONEncoder.default(self, obj)


_helpers_found = attempt(
    HELPERS,
    lambda: (
        missing(_client, "require", "stringify_id", "ID_TYPES")
        or missing(_utils, "clean", "guess_timezone", "log")
        or missing(_request, "DatetimeSerializer")
    ),
)
if _helpers_found:
    require, stringify_id, ID_TYPES = _client.require, _client.stringify_id, _client.ID_TYPES  # type: ignore[union-attr]
    clean, guess_timezone, log = _utils.clean, _utils.guess_timezone, _utils.log  # type: ignore[union-attr]
    DatetimeSerializer = _request.DatetimeSerializer  # type: ignore[union-attr]
else:
    require, stringify_id, ID_TYPES = _require, _stringify_id, (numbers.Number, str)
    clean, guess_timezone, log = _clean, _guess_timezone, logging.getLogger("segment")
    DatetimeSerializer = _DatetimeSerializer

if attempt(LIMITS, lambda: missing(_consumer, "MAX_MSG_SIZE") or missing(_version, "VERSION")):
    MAX_MSG_SIZE: int = _consumer.MAX_MSG_SIZE  # type: ignore[union-attr]
    VERSION: str = _version.VERSION  # type: ignore[union-attr]
else:
    MAX_MSG_SIZE, VERSION = 32 << 10, metadata.version("segment-analytics-python")

#: Segment's submodules that codebases and their test suites reach through the
#: package (``from segment.analytics import utils``, ``mock.patch("segment.analytics.consumer.post")``):
#: ``install_as_segment`` serves them as attributes. They are Segment's own
#: modules, so a patch lands where Segment's client (our Segment leg) looks.
SUBMODULES: dict[str, ModuleType] = {
    name: module for name, module in _modules.items() if name != "client"
}
attempt(
    SUBMODULES_REACH,
    lambda: None if len(SUBMODULES) == len(SUBMODULE_NAMES) - 1 else "some are missing",
)
