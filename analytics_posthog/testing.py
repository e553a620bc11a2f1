"""A loopback capture server for tests, demos and benchmarks.

``CaptureServer`` speaks just enough of PostHog's and Segment's ingestion APIs
for the real clients (``posthog`` and ``segment-analytics-python``) to deliver
to it over plain HTTP, records what arrived, and can simulate outages (error
statuses, slow responses, dropped connections, refused connections) so that
retry and fail-over behaviour can be tested without the network.

Standard library only, and it deliberately imports neither ``posthog`` nor
``segment`` (so it can be used to test code that patches or configures them)
nor ``pytest`` unless pytest is already loaded (see ``capture_server``).

Endpoints (leg ``"posthog"``):
    POST /batch/                  posthog v0 capture: {"api_key", "batch": [...], ...}
    POST /i/v0/ai/batch/          posthog AI lane, same shape
    POST /i/v1/analytics/events   posthog capture v1 (Bearer key, gzip/deflate,
                                  answered with a per-uuid "results" map)
    POST /e/, /i/v0/e/, /capture/ courtesy: a single event, {"batch": [...]} or [...]
    POST /i/v1/traces, /i/v1/metrics, /i/v1/logs
                                  OTLP exports: answered 200 and logged in
                                  ``requests``, never counted as events
Endpoints (leg ``"segment"``):
    POST /v1/batch, /v1/import    {"batch": [...], "writeKey", "sentAt"}
    POST /v1/track, /v1/identify, /v1/page, /v1/screen, /v1/group, /v1/alias
                                  courtesy: a single message
Control (never subject to simulated failures):
    GET  /_stats                  {"events", "segment", "requests", "failed"}
    POST /_reset                  same as ``clear()``
    POST /_fail, /_hang, /_drop   JSON body = keyword arguments of the method
    POST /_refuse                 {"seconds": s} (required over HTTP)
    POST /_restore
Anything else answers 404.

Run standalone (e.g. for a benchmark in another process)::

    python -m analytics_posthog.testing --port 0 [--count-only]

prints ``listening on http://127.0.0.1:PORT`` and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import base64
import gzip as _gzip
import json
import signal
import socket
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

__all__ = [
    "CaptureServer",
    "CapturedRequest",
    "LEG_POSTHOG",
    "LEG_SEGMENT",
    "main",
]

LEG_POSTHOG = "posthog"
LEG_SEGMENT = "segment"
_LEGS = (LEG_POSTHOG, LEG_SEGMENT)

# Paths are matched with trailing slashes stripped.
_PH_BATCH_PATHS = frozenset({"/batch", "/i/v0/ai/batch"})
_PH_SINGLE_PATHS = frozenset({"/e", "/i/v0/e", "/capture"})
_PH_V1_PATH = "/i/v1/analytics/events"
_PH_OTLP_PATHS = frozenset({"/i/v1/traces", "/i/v1/metrics", "/i/v1/logs"})
_SEG_BATCH_PATHS = frozenset({"/v1/batch", "/v1/import"})
_SEG_SINGLE_PATHS = frozenset(
    {"/v1/track", "/v1/identify", "/v1/page", "/v1/screen", "/v1/group", "/v1/alias"}
)

# Pre-encoded success bodies: the handler is on the benchmark hot path.
_OK_POSTHOG = b'{"status": 1}'
_OK_SEGMENT = b'{"success": true}'
_OK_EMPTY = b"{}"

_KIND_FAIL = "fail"
_KIND_HANG = "hang"
_KIND_DROP = "drop"


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
    headers: Dict[str, str]
    body: Any
    status: int
    leg: str
    key: Optional[str]
    gzip: bool
    encoding: Optional[str]
    count: int
    delivered: bool
    peer: Tuple[str, int]


@dataclass
class _Rule:
    """A simulated failure armed on one leg; consumed per request."""

    kind: str
    status: int = 503
    retry_after: Optional[float] = None
    remaining: Optional[int] = None
    until: Optional[float] = None
    delay: float = 0.0
    release: Optional[threading.Event] = None


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error_body(status: int, message: str) -> bytes:
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


def _format_retry_after(seconds: float) -> str:
    # Segment only parses whole seconds (int()); posthog accepts floats.
    if float(seconds) == int(seconds):
        return str(int(seconds))
    return repr(float(seconds))


def _decode_body(raw: bytes, encoding: Optional[str]) -> Any:
    if encoding in (None, "", "identity"):
        data = raw
    elif encoding in ("gzip", "x-gzip"):
        try:
            data = _gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise _BadRequest(400, "invalid gzip body: %s" % exc) from None
    elif encoding == "deflate":
        try:
            data = zlib.decompress(raw)
        except zlib.error:
            try:
                data = zlib.decompress(raw, -zlib.MAX_WBITS)
            except zlib.error as exc:
                raise _BadRequest(400, "invalid deflate body: %s" % exc) from None
    else:
        raise _BadRequest(415, "unsupported Content-Encoding %r" % encoding)
    if not data:
        raise _BadRequest(400, "empty body")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise _BadRequest(400, "invalid JSON: %s" % exc) from None


def _bearer(headers: Any) -> Optional[str]:
    auth = headers.get("Authorization") or ""
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


def _basic_user(headers: Any) -> Optional[str]:
    auth = headers.get("Authorization") or ""
    if auth[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(auth[6:].strip()).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.split(":", 1)[0] or None
    return None


def _posthog_items(body: Any) -> Tuple[List[Any], Optional[str]]:
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
        raise _BadRequest(400, "body must be a JSON object or array")
    key = body.get("api_key") or body.get("token")
    batch = body.get("batch")
    if batch is not None:
        if not isinstance(batch, list):
            raise _BadRequest(400, '"batch" must be an array')
        return batch, key
    if "event" in body:
        event = dict(body)
        event.pop("api_key", None)
        return [event], key
    raise _BadRequest(400, 'body has neither "batch" nor "event"')


def _segment_items(body: Any, single: bool) -> List[Any]:
    if not isinstance(body, dict):
        raise _BadRequest(400, "body must be a JSON object")
    if single:
        return [body]
    batch = body.get("batch")
    if not isinstance(batch, list):
        raise _BadRequest(400, '"batch" must be an array')
    return batch


class _Handler(BaseHTTPRequestHandler):
    """Request handler kept cheap: no logging, keep-alive, one parse per body."""

    protocol_version = "HTTP/1.1"
    server_version = "analytics-posthog-capture/1"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def setup(self) -> None:
        super().setup()
        try:
            # Headers and body go out in one write anyway; this just makes
            # sure Nagle + delayed ACK can never add 40 ms per response.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass
        self.server.capture._conn_opened(self.connection)  # type: ignore[attr-defined]

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.capture._conn_closed(self.connection)  # type: ignore[attr-defined]

    # -- plumbing ---------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(
        self,
        status: int,
        payload: bytes,
        extra: Sequence[Tuple[str, str]] = (),
    ) -> None:
        self.send_response_only(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in extra:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        # end_headers() would flush the headers as a separate packet; send
        # headers and body in a single write instead.
        buffered: List[bytes] = self._headers_buffer  # type: ignore[has-type]
        buffered.append(b"\r\n")
        buffered.append(payload)
        self.wfile.write(b"".join(buffered))
        self._headers_buffer: List[bytes] = []

    def _drop(self) -> None:
        """Close the connection without answering."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- verbs --------------------------------------------------------------

    def do_GET(self) -> None:
        cap: CaptureServer = self.server.capture  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        if cap._refused:
            self._drop()
            return
        if path.rstrip("/") == "/_stats":
            self._send(200, json.dumps(cap.stats()).encode("utf-8"))
        else:
            self._send(404, _error_body(404, "no route for GET %s" % path))

    def do_POST(self) -> None:
        cap: CaptureServer = self.server.capture  # type: ignore[attr-defined]
        raw = self._read_body()
        if cap._refused:
            self._drop()
            return
        path = self.path.split("?", 1)[0]
        route = path.rstrip("/") or "/"
        if route.startswith("/_"):
            self._control(cap, route, raw)
            return

        if route in _PH_BATCH_PATHS or route in _PH_SINGLE_PATHS:
            leg, kind = LEG_POSTHOG, "v0"
        elif route == _PH_V1_PATH:
            leg, kind = LEG_POSTHOG, "v1"
        elif route in _SEG_BATCH_PATHS:
            leg, kind = LEG_SEGMENT, "batch"
        elif route in _SEG_SINGLE_PATHS:
            leg, kind = LEG_SEGMENT, "single"
        elif route in _PH_OTLP_PATHS:
            leg, kind = LEG_POSTHOG, "otlp"
        else:
            self._send(404, _error_body(404, "no route for POST %s" % path))
            return

        encoding = (self.headers.get("Content-Encoding") or "").strip().lower() or None
        rule = cap._take_rule(leg) if cap._rules else None
        if rule is not None and rule.kind == _KIND_HANG:
            assert rule.release is not None
            rule.release.wait(rule.delay)
            if cap._refused or cap._stopping:
                self._drop()
                return
            rule = None

        keep = cap._keep
        if rule is not None:
            # Failure: nothing is delivered; log the attempt and answer/drop.
            status = 0 if rule.kind == _KIND_DROP else rule.status
            if keep:
                body: Any = None
                try:
                    body = _decode_body(raw, encoding)
                except _BadRequest:
                    pass
                cap._record(
                    self._captured(path, body, status, leg, kind, encoding, 0, False),
                    leg,
                    None,
                    False,
                )
            else:
                cap._record(None, leg, None, False)
            if rule.kind == _KIND_DROP:
                self._drop()
                return
            extra: List[Tuple[str, str]] = []
            if rule.retry_after is not None:
                extra.append(("Retry-After", _format_retry_after(rule.retry_after)))
            self._send(
                status,
                _error_body(status, "simulated %s from capture server" % status),
                extra,
            )
            return

        try:
            if kind == "otlp":
                try:
                    body = _decode_body(raw, encoding)
                except _BadRequest:
                    body = None  # protobuf or empty: fine, nothing to count
                items: Optional[List[Any]] = None
                count = 0
            else:
                body = _decode_body(raw, encoding)
                if leg == LEG_SEGMENT:
                    items = _segment_items(body, kind == "single")
                else:
                    items, _ = (
                        _posthog_items(body) if kind == "v0" else _v1_items(body)
                    )
                count = len(items)
        except _BadRequest as exc:
            cap._record(
                self._captured(path, None, exc.status, leg, kind, encoding, 0, False)
                if keep
                else None,
                leg,
                None,
                False,
            )
            self._send(exc.status, _error_body(exc.status, exc.message))
            return

        cap._record(
            self._captured(path, body, 200, leg, kind, encoding, count, True)
            if keep
            else None,
            leg,
            items,
            True,
        )
        if leg == LEG_SEGMENT:
            self._send(200, _OK_SEGMENT)
        elif kind == "v1":
            results = {
                str(e.get("uuid")): {"result": "ok"}
                for e in (items or ())
                if isinstance(e, dict) and e.get("uuid")
            }
            self._send(200, json.dumps({"results": results}).encode("utf-8"))
        elif kind == "otlp":
            self._send(200, _OK_EMPTY)
        else:
            self._send(200, _OK_POSTHOG)

    def _captured(
        self,
        path: str,
        body: Any,
        status: int,
        leg: str,
        kind: str,
        encoding: Optional[str],
        count: int,
        delivered: bool,
    ) -> CapturedRequest:
        key: Optional[str] = None
        if leg == LEG_SEGMENT:
            if isinstance(body, dict):
                key = body.get("writeKey")
            key = key or _basic_user(self.headers)
        else:
            if isinstance(body, dict):
                key = body.get("api_key") or body.get("token")
            elif isinstance(body, list):
                try:
                    key = _posthog_items(body)[1]
                except _BadRequest:
                    key = None
            key = key or _bearer(self.headers)
        return CapturedRequest(
            method=self.command,
            path=path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            status=status,
            leg=leg,
            key=key,
            gzip=encoding in ("gzip", "x-gzip"),
            encoding=encoding,
            count=count,
            delivered=delivered,
            peer=self.client_address[:2],
        )

    def _control(self, cap: "CaptureServer", route: str, raw: bytes) -> None:
        try:
            args: Dict[str, Any] = json.loads(raw) if raw.strip() else {}
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
                self.close_connection = True
                cap._refuse(float(args["seconds"]), exclude=self.connection)
            else:
                self._send(404, _error_body(404, "no control route %s" % route))
                return
        except (TypeError, ValueError) as exc:
            self._send(400, _error_body(400, str(exc)))
            return
        self._send(200, json.dumps(cap.stats()).encode("utf-8"))


def _v1_items(body: Any) -> Tuple[List[Any], Optional[str]]:
    if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
        raise _BadRequest(400, 'capture v1 body must be {"batch": [...]}')
    return body["batch"], None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    capture: "CaptureServer"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (or us dropping them) is routine here.
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ValueError)):
            return
        super().handle_error(request, client_address)


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class CaptureServer:
    """In-process loopback server that records what PostHog/Segment clients send.

    Use it as a context manager or via ``start()``/``stop()``; ``url`` is usable
    as both the posthog ``host`` and the Segment ``host``. ``keep=False`` counts
    events without storing anything, so it can absorb benchmark volumes.

    Failure simulation is armed per leg (``"posthog"``, ``"segment"``, or
    ``None`` for both). One rule per leg: the latest ``fail``/``hang``/``drop``
    call on a leg replaces the previous one. ``restore()`` clears everything.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, keep: bool = True) -> None:
        self._host = host or "127.0.0.1"
        self._port = port
        self._keep = keep
        self._cond = threading.Condition(threading.Lock())
        self._events: List[Dict[str, Any]] = []
        self._segment: List[Dict[str, Any]] = []
        self._requests: List[CapturedRequest] = []
        self._event_count = 0
        self._segment_count = 0
        self._request_count = 0
        self._failed_count = 0
        self._rules: Dict[str, _Rule] = {}
        self._life = threading.RLock()
        self._httpd: Optional[_HTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._conns: Set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._refused = False
        self._stopping = False
        self._reopen_timer: Optional[threading.Timer] = None

    # -- lifecycle ----------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (no trailing slash)."""
        host = "[%s]" % self._host if ":" in self._host else self._host
        return "http://%s:%d" % (host, self._port)

    @property
    def port(self) -> int:
        """The bound port (the requested one until ``start()``)."""
        return self._port

    @property
    def keep(self) -> bool:
        """Whether events and requests are stored (False: counted only)."""
        return self._keep

    def start(self) -> "CaptureServer":
        """Bind and serve in a daemon thread; returns self for chaining."""
        with self._life:
            if self._httpd is None and not self._refused:
                self._stopping = False
                self._bind()
        return self

    def stop(self) -> None:
        """Stop serving, close live keep-alive connections, release hangs."""
        with self._life:
            self._stopping = True
            self._cancel_reopen()
            self._release_rules()
            self._close_listener()
            self._close_connections(None)
            self._refused = False

    def __enter__(self) -> "CaptureServer":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return "CaptureServer(url=%r, events=%d, segment=%d)" % (
            self.url,
            self._event_count,
            self._segment_count,
        )

    def _bind(self) -> None:
        cls = _HTTPServer6 if ":" in self._host else _HTTPServer
        deadline = time.monotonic() + 2.0
        while True:
            try:
                httpd = cls((self._host, self._port), _Handler)
                break
            except OSError:
                # Rebinding the same port right after closing it: retry briefly.
                if self._port == 0 or time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)
        httpd.capture = self
        self._port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="capture-server:%d" % self._port,
            daemon=True,
        )
        self._thread.start()

    def _close_listener(self) -> None:
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def _conn_opened(self, sock: socket.socket) -> None:
        with self._conns_lock:
            self._conns.add(sock)

    def _conn_closed(self, sock: socket.socket) -> None:
        with self._conns_lock:
            self._conns.discard(sock)

    def _close_connections(self, exclude: Optional[socket.socket]) -> None:
        with self._conns_lock:
            conns = [c for c in self._conns if c is not exclude]
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- recorded data --------------------------------------------------------

    @property
    def events(self) -> List[Dict[str, Any]]:
        """PostHog events delivered so far, in arrival order (a copy)."""
        with self._cond:
            return list(self._events)

    @property
    def segment_messages(self) -> List[Dict[str, Any]]:
        """Segment messages delivered so far, in arrival order (a copy)."""
        with self._cond:
            return list(self._segment)

    @property
    def requests(self) -> List[CapturedRequest]:
        """Every ingestion request, failed ones included, in order (a copy)."""
        with self._cond:
            return list(self._requests)

    @property
    def event_count(self) -> int:
        """PostHog events delivered (counted even with ``keep=False``)."""
        return self._event_count

    @property
    def segment_count(self) -> int:
        """Segment messages delivered (counted even with ``keep=False``)."""
        return self._segment_count

    @property
    def request_count(self) -> int:
        """Ingestion requests received, failed ones included."""
        return self._request_count

    @property
    def failed_count(self) -> int:
        """Ingestion requests that were not delivered (simulated or bad)."""
        return self._failed_count

    def stats(self) -> Dict[str, int]:
        """Counters, as served by ``GET /_stats``."""
        with self._cond:
            return {
                "events": self._event_count,
                "segment": self._segment_count,
                "requests": self._request_count,
                "failed": self._failed_count,
            }

    def clear(self) -> None:
        """Forget everything recorded and zero the counters (rules stay armed)."""
        with self._cond:
            self._events.clear()
            self._segment.clear()
            self._requests.clear()
            self._event_count = 0
            self._segment_count = 0
            self._request_count = 0
            self._failed_count = 0

    def _record(
        self,
        req: Optional[CapturedRequest],
        leg: str,
        items: Optional[List[Any]],
        delivered: bool,
    ) -> None:
        # Recorded before the response is written, so a client that has its
        # answer can immediately observe what it delivered.
        with self._cond:
            self._request_count += 1
            if req is not None:
                self._requests.append(req)
            if not delivered:
                self._failed_count += 1
                return
            if items is None:
                return
            if leg == LEG_SEGMENT:
                self._segment_count += len(items)
                if self._keep:
                    self._segment.extend(items)
            else:
                self._event_count += len(items)
                if self._keep:
                    self._events.extend(items)
            self._cond.notify_all()

    def wait_for_events(self, n: int, timeout: float = 5.0) -> List[Dict[str, Any]]:
        """Block until at least ``n`` PostHog events arrived, then return them
        (``[]`` with ``keep=False``); AssertionError naming what did arrive otherwise."""
        self._wait(LEG_POSTHOG, n, timeout)
        return self.events

    def wait_for_segment(self, n: int, timeout: float = 5.0) -> List[Dict[str, Any]]:
        """Block until at least ``n`` Segment messages arrived, then return them
        (``[]`` with ``keep=False``); AssertionError naming what did arrive otherwise."""
        self._wait(LEG_SEGMENT, n, timeout)
        return self.segment_messages

    def _wait(self, leg: str, n: int, timeout: float) -> None:
        def count() -> int:
            return self._segment_count if leg == LEG_SEGMENT else self._event_count

        with self._cond:
            if self._cond.wait_for(lambda: count() >= n, timeout):
                return
            got = count()
            items = self._segment if leg == LEG_SEGMENT else self._events
            names = [
                (i.get("event") or i.get("type")) if isinstance(i, dict) else i
                for i in items[-20:]
            ]
            seen = [
                "%s %s -> %s" % (r.leg, r.path, r.status or "dropped")
                for r in self._requests[-10:]
            ]
        what = "PostHog events" if leg == LEG_POSTHOG else "Segment messages"
        raise AssertionError(
            "expected >= %d %s within %.3gs, got %d; last arrived: %s; "
            "last requests: %s; total requests: %d (%d failed)"
            % (
                n,
                what,
                timeout,
                got,
                names if self._keep else "(keep=False: not stored)",
                seen if self._keep else "(keep=False: not stored)",
                self._request_count,
                self._failed_count,
            )
        )

    # -- failure simulation ----------------------------------------------------

    @staticmethod
    def _legs(leg: Optional[str]) -> Tuple[str, ...]:
        if leg is None:
            return _LEGS
        if leg not in _LEGS:
            raise ValueError("leg must be 'posthog', 'segment' or None, not %r" % (leg,))
        return (leg,)

    def _arm(self, leg: Optional[str], make: Any) -> None:
        legs = self._legs(leg)
        with self._cond:
            for name in legs:
                old = self._rules.get(name)
                if old is not None and old.release is not None:
                    old.release.set()
                self._rules[name] = make()

    def _take_rule(self, leg: str) -> Optional[_Rule]:
        with self._cond:
            rule = self._rules.get(leg)
            if rule is None:
                return None
            if rule.until is not None and time.monotonic() >= rule.until:
                del self._rules[leg]
                return None
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining <= 0:
                    del self._rules[leg]
            return rule

    def _release_rules(self) -> None:
        with self._cond:
            for rule in self._rules.values():
                if rule.release is not None:
                    rule.release.set()
            self._rules.clear()

    @staticmethod
    def _window(times: Optional[int], seconds: Optional[float]) -> Tuple[Optional[int], Optional[float]]:
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 (or None)")
        until = None if seconds is None else time.monotonic() + float(seconds)
        return times, until

    def fail(
        self,
        status: int = 503,
        *,
        leg: Optional[str] = None,
        times: Optional[int] = None,
        seconds: Optional[float] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        """Answer ``status`` with a JSON error body (and ``Retry-After`` if given).

        Applies to the next ``times`` requests on each affected leg (counted per
        leg), or for ``seconds``, whichever ends first, or until ``restore()``.
        Failed requests deliver nothing but are logged in ``requests``.
        """
        status = int(status)
        remaining, until = self._window(times, seconds)
        self._arm(
            leg,
            lambda: _Rule(
                _KIND_FAIL, status=status, retry_after=retry_after, remaining=remaining, until=until
            ),
        )

    def hang(
        self,
        seconds: float,
        *,
        leg: Optional[str] = None,
        times: Optional[int] = None,
    ) -> None:
        """Delay each response on the leg by ``seconds``, then answer normally.

        Lasts until ``restore()`` (or for the next ``times`` requests per leg).
        ``restore()``/``stop()`` release requests that are waiting. Events are
        recorded when the delayed answer is sent, so a client that timed out
        and retried may deliver twice, as against a real slow server.
        """
        delay = float(seconds)
        remaining, _ = self._window(times, None)
        self._arm(
            leg,
            lambda: _Rule(_KIND_HANG, delay=delay, remaining=remaining, release=threading.Event()),
        )

    def drop(
        self,
        *,
        leg: Optional[str] = None,
        times: Optional[int] = None,
        seconds: Optional[float] = None,
    ) -> None:
        """Read the request, then close the connection without answering.

        The per-leg stand-in for ``refuse()``: clients see a connection error
        (e.g. ``RemoteDisconnected``). Logged in ``requests`` with status 0.
        """
        remaining, until = self._window(times, seconds)
        self._arm(leg, lambda: _Rule(_KIND_DROP, remaining=remaining, until=until))

    def refuse(self, *, seconds: Optional[float] = None) -> None:
        """Refuse connections: close the listening socket and live connections.

        Applies to the whole server (both legs share one socket; use ``drop``
        for a single leg). ``restore()`` re-binds the SAME port; with
        ``seconds`` the listener re-opens by itself after that long.
        """
        self._refuse(seconds, exclude=None)

    def _refuse(self, seconds: Optional[float], exclude: Optional[socket.socket]) -> None:
        with self._life:
            if self._httpd is None and not self._refused:
                raise RuntimeError("CaptureServer is not running")
            self._refused = True
            self._cancel_reopen()
            self._close_listener()
            self._close_connections(exclude)
            if seconds is not None:
                timer = threading.Timer(float(seconds), self._reopen)
                timer.daemon = True
                self._reopen_timer = timer
                timer.start()

    def _reopen(self) -> None:
        with self._life:
            self._reopen_timer = None
            if self._refused and not self._stopping:
                self._bind()
                self._refused = False

    def _cancel_reopen(self) -> None:
        timer, self._reopen_timer = self._reopen_timer, None
        if timer is not None:
            timer.cancel()

    def restore(self) -> None:
        """Clear every simulated failure and re-open a refused listener."""
        self._release_rules()
        with self._life:
            self._cancel_reopen()
            if self._refused and not self._stopping:
                self._bind()
            self._refused = False


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Serve in the foreground until SIGTERM/SIGINT (for out-of-process use)."""
    parser = argparse.ArgumentParser(
        prog="python -m analytics_posthog.testing",
        description="Loopback capture server for PostHog and Segment clients.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--count-only",
        action="store_true",
        help="count events without storing them (benchmarks)",
    )
    args = parser.parse_args(argv)

    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    server = CaptureServer(args.host, args.port, keep=not args.count_only).start()
    try:
        print("listening on %s" % server.url, flush=True)
        while not stop.wait(0.2):
            pass
    finally:
        server.stop()
    return 0


# -- pytest plugin -----------------------------------------------------------
# Registered as the pytest11 entry point ``analytics_posthog``. pytest is only
# imported when it is already loaded (i.e. we are inside a pytest run), so
# production imports of this module stay cheap; otherwise ``capture_server`` is
# built lazily on first attribute access.


def _make_fixture() -> Any:
    import pytest

    @pytest.fixture
    def capture_server() -> Iterator[CaptureServer]:
        """A started CaptureServer, stopped after the test."""
        server = CaptureServer().start()
        try:
            yield server
        finally:
            server.stop()

    return capture_server


if "pytest" in sys.modules:
    try:
        capture_server = _make_fixture()
    except ImportError:  # pragma: no cover - pytest half-imported
        pass


def __getattr__(name: str) -> Any:
    if name == "capture_server":
        try:
            fixture = _make_fixture()
        except ImportError:
            raise AttributeError(
                "capture_server needs pytest, which is not installed"
            ) from None
        globals()["capture_server"] = fixture
        return fixture
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


if __name__ == "__main__":
    sys.exit(main())
