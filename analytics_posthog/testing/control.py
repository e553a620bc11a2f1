"""The HTTP control API: read what was captured and drive faults from another process.

A server started with the CLI (``python -m analytics_posthog.testing``) runs
in its own process, so the test (or benchmark) that drives it can only reach
it over HTTP. These routes are never subject to simulated failures.

    GET  /_stats                  {"events", "segment", "requests", "failed"} counts
    GET  /_captured/events        PostHog events delivered, in arrival order
    GET  /_captured/segment       Segment messages delivered, in arrival order
    GET  /_captured/requests      every ingestion request, as ``CapturedRequest`` fields
    POST /_reset                  forget everything captured (``clear()``)
    POST /_fail, /_hang, /_drop   JSON body = keyword arguments of the method
    POST /_refuse                 {"seconds": s} (required: nothing could restore it)
    POST /_restore                clear every fault

The ``/_captured`` routes answer 409 on a server that only counts (``--count-only``).
Every POST answers with the counts, as ``GET /_stats``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .endpoints import error_body

if TYPE_CHECKING:
    from .handler import Handler
    from .server import CaptureServer

_CAPTURED: dict[str, Callable[[CaptureServer], list[Any]]] = {
    "/_captured/events": lambda cap: cap.events,
    "/_captured/segment": lambda cap: cap.segment_messages,
    "/_captured/requests": lambda cap: [dataclasses.asdict(r) for r in cap.requests],
}


def get(handler: Handler, cap: CaptureServer, route: str) -> None:
    """Answer a GET (every GET is a control route)."""
    if route == "/_stats":
        handler.send(200, _json(cap.stats()))
        return
    captured = _CAPTURED.get(route)
    if captured is None:
        handler.send(404, error_body(404, "no route for GET %s" % route))
    elif not cap.keep:
        handler.send(
            409,
            error_body(409, "this server only counts (--count-only): it stores nothing to show"),
        )
    else:
        handler.send(200, _json(captured(cap)))


def post(handler: Handler, cap: CaptureServer, route: str, raw: bytes) -> None:
    """Answer a POST to a route starting with ``/_``."""
    try:
        args: dict[str, Any] = json.loads(raw) if raw.strip() else {}
        if not isinstance(args, dict):
            raise ValueError("control body must be a JSON object")
        if route == "/_reset":
            cap.clear()
        elif route == "/_restore":
            cap.restore()
        elif route == "/_fail":
            cap.fail(**args)
        elif route == "/_hang":
            cap.hang(**args)
        elif route == "/_drop":
            cap.drop(**args)
        elif route == "/_refuse":
            if args.get("seconds") is None:
                raise ValueError('POST /_refuse needs {"seconds": s}: nothing could restore it')
            handler.close_connection = True
            cap._refuse(float(args["seconds"]), exclude=handler.connection)
        else:
            handler.send(404, error_body(404, "no control route %s" % route))
            return
    except (TypeError, ValueError) as exc:
        handler.send(400, error_body(400, str(exc)))
        return
    handler.send(200, _json(cap.stats()))


def _json(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8")
