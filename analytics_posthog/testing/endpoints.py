"""The fake ingestion endpoints: which paths exist, what bodies they accept, what they answer.

Just enough of PostHog's and Segment's ingestion APIs for the real clients
(``posthog`` and ``segment-analytics-python``) to deliver to them and read the
answers as they read the real ones. Pure functions over bytes and JSON: the
HTTP plumbing is in ``handler``.

Leg ``"posthog"``:
    POST /batch/                  posthog v0 capture: {"api_key", "batch": [...], ...}
    POST /i/v0/ai/batch/          posthog AI lane, same shape
    POST /i/v1/analytics/events   posthog capture v1 (Bearer key, gzip/deflate,
                                  answered with a per-uuid "results" map)
    POST /e/, /i/v0/e/, /capture/ a single event, {"batch": [...]} or [...]
    POST /i/v1/traces, /i/v1/metrics, /i/v1/logs
                                  OTLP exports: answered 200 and logged in
                                  ``requests``, never counted as events
Leg ``"segment"``:
    POST /v1/batch, /v1/import    {"batch": [...], "writeKey", "sentAt"}
    POST /v1/track, /v1/identify, /v1/page, /v1/screen, /v1/group, /v1/alias
                                  a single message
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

LEG_POSTHOG = "posthog"
LEG_SEGMENT = "segment"
LEGS = (LEG_POSTHOG, LEG_SEGMENT)

# Body kinds, one per way of reading a body.
V0 = "v0"
V1 = "v1"
OTLP = "otlp"
SEGMENT_BATCH = "batch"
SEGMENT_SINGLE = "single"

#: Route (path without trailing slash) -> (leg, body kind).
ROUTES: dict[str, tuple[str, str]] = {
    **{
        path: (LEG_POSTHOG, V0)
        for path in ("/batch", "/i/v0/ai/batch", "/e", "/i/v0/e", "/capture")
    },
    "/i/v1/analytics/events": (LEG_POSTHOG, V1),
    **{path: (LEG_POSTHOG, OTLP) for path in ("/i/v1/traces", "/i/v1/metrics", "/i/v1/logs")},
    **{path: (LEG_SEGMENT, SEGMENT_BATCH) for path in ("/v1/batch", "/v1/import")},
    **{
        "/v1/" + call: (LEG_SEGMENT, SEGMENT_SINGLE)
        for call in ("track", "identify", "page", "screen", "group", "alias")
    },
}

# Pre-encoded success bodies: answering is on the benchmarks' hot path.
_OK_POSTHOG = b'{"status": 1}'
_OK_SEGMENT = b'{"success": true}'
_OK_EMPTY = b"{}"


@dataclass(frozen=True)
class CapturedRequest:
    """One request as the server saw it, kept so tests can assert on the wire.

    ``headers`` keys are lower-cased. ``body`` is the parsed JSON after
    decompression (``None`` if it could not be decoded or was not JSON).
    ``status`` is what the server answered; ``0`` means the connection was
    closed without an answer (``drop()`` or ``refuse()``). ``delivered`` is True
    only when the request's events/messages were recorded as received.
    ``peer`` is the sender's (address, port): requests with the same peer came
    over the same connection.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int
    leg: str
    key: str | None
    gzip: bool
    encoding: str | None
    count: int
    delivered: bool
    peer: tuple[str, int]


class BadRequest(Exception):
    """A body the real endpoint would refuse; answered with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(status: int, message: str) -> bytes:
    """A JSON error body every client reads: posthog v0 wants ``detail``,
    capture v1 ``error``/``error_description``, Segment ``code`` + ``message``."""
    try:
        code = HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        code = "error"
    return json.dumps(
        {
            "type": "simulated_error" if status >= 500 else "validation_error",
            "code": code,
            "message": message,
            "detail": message,
            "error": code,
            "error_description": message,
            "success": False,
        }
    ).encode("utf-8")


def format_retry_after(seconds: float) -> str:
    """Segment reads only whole seconds (``int()``); posthog accepts fractions."""
    if float(seconds) == int(seconds):
        return str(int(seconds))
    return repr(float(seconds))


def decode_body(raw: bytes, encoding: str | None) -> Any:
    """The JSON in ``raw``, decompressed as ``Content-Encoding`` says."""
    if encoding in (None, "", "identity"):
        data = raw
    elif encoding in ("gzip", "x-gzip"):
        try:
            data = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise BadRequest(400, "invalid gzip body: %s" % exc) from None
    elif encoding == "deflate":
        try:
            data = zlib.decompress(raw)
        except zlib.error:
            try:
                data = zlib.decompress(raw, -zlib.MAX_WBITS)
            except zlib.error as exc:
                raise BadRequest(400, "invalid deflate body: %s" % exc) from None
    else:
        raise BadRequest(415, "unsupported Content-Encoding %r" % encoding)
    if not data:
        raise BadRequest(400, "empty body")
    try:
        return json.loads(data, parse_constant=_not_json)
    except ValueError as exc:
        raise BadRequest(400, "invalid JSON: %s" % exc) from None


def _not_json(name: str) -> Any:
    """``NaN`` and ``Infinity`` are Python's, not JSON's: a strict endpoint
    (Segment's, PostHog's) refuses the whole body that holds one."""
    raise ValueError("%s is not JSON" % name)


def items(leg: str, kind: str, body: Any) -> list[Any]:
    """The events or messages a decoded body carries."""
    if leg == LEG_SEGMENT:
        return _segment_items(body, kind == SEGMENT_SINGLE)
    if kind == V1:
        if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
            raise BadRequest(400, 'capture v1 body must be {"batch": [...]}')
        return body["batch"]
    return _posthog_items(body)[0]


def request_key(leg: str, body: Any, headers: Any) -> str | None:
    """The project key (PostHog) or write key (Segment) a request was sent with."""
    key: str | None = None
    if leg == LEG_SEGMENT:
        if isinstance(body, dict):
            key = body.get("writeKey")
        return key or _basic_user(headers)
    if isinstance(body, dict):
        key = body.get("api_key") or body.get("token")
    elif isinstance(body, list):
        try:
            key = _posthog_items(body)[1]
        except BadRequest:
            key = None
    return key or _bearer(headers)


def ok_body(leg: str, kind: str, delivered: list[Any], rejected: Sequence[Any] = ()) -> bytes:
    """The success answer each client expects (capture v1: per event, ``ok``,
    or ``drop`` for the ``rejected``)."""
    if leg == LEG_SEGMENT:
        return _OK_SEGMENT
    if kind == V1:
        results = {
            str(e.get("uuid")): {"result": "ok"}
            for e in delivered
            if isinstance(e, dict) and e.get("uuid")
        }
        for e in rejected:
            results[str(e.get("uuid"))] = {"result": "drop", "details": "rejected by the test"}
        return json.dumps({"results": results}).encode("utf-8")
    if kind == OTLP:
        return _OK_EMPTY
    return _OK_POSTHOG


def _bearer(headers: Any) -> str | None:
    auth = headers.get("Authorization") or ""
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


def _basic_user(headers: Any) -> str | None:
    auth = headers.get("Authorization") or ""
    if auth[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(auth[6:].strip()).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.split(":", 1)[0] or None
    return None


def _posthog_items(body: Any) -> tuple[list[Any], str | None]:
    """Events and api key from any of the posthog batch/single shapes."""
    if isinstance(body, list):
        key = None
        for item in body:
            if isinstance(item, dict):
                key = item.get("api_key") or item.get("token")
                if key:
                    break
        return list(body), key
    if not isinstance(body, dict):
        raise BadRequest(400, "body must be a JSON object or array")
    key = body.get("api_key") or body.get("token")
    batch = body.get("batch")
    if batch is not None:
        if not isinstance(batch, list):
            raise BadRequest(400, '"batch" must be an array')
        return batch, key
    if "event" in body:
        event = dict(body)
        event.pop("api_key", None)
        return [event], key
    raise BadRequest(400, 'body has neither "batch" nor "event"')


def _segment_items(body: Any, single: bool) -> list[Any]:
    if not isinstance(body, dict):
        raise BadRequest(400, "body must be a JSON object")
    if single:
        return [body]
    batch = body.get("batch")
    if not isinstance(batch, list):
        raise BadRequest(400, '"batch" must be an array')
    return batch
