"""One HTTP request to the capture server: read it, meet any armed fault, record it, answer.

Kept cheap, since benchmarks push their whole load through it: no logging,
keep-alive, one parse per body, headers and body written in one send.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from . import control, endpoints
from .faults import DROP, HANG, Rule

if TYPE_CHECKING:
    from .server import CaptureServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "analytics-posthog-capture/1"
    sys_version = ""
    server: HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def setup(self) -> None:
        super().setup()
        try:
            # Headers and body go out in one write anyway; this makes sure
            # Nagle + delayed ACK can never add 40 ms per response.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass
        self.server.capture._conn_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.capture._conn_closed(self.connection)

    # -- plumbing ---------------------------------------------------------

    def read_body(self) -> bytes:
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

    def send(self, status: int, payload: bytes, extra: Sequence[tuple[str, str]] = ()) -> None:
        self.send_response_only(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in extra:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        # end_headers() would flush the headers as a packet of their own.
        buffered: list[bytes] = self._headers_buffer  # type: ignore[has-type]
        buffered.append(b"\r\n")
        buffered.append(payload)
        self.wfile.write(b"".join(buffered))
        self._headers_buffer: list[bytes] = []

    def drop(self) -> None:
        """Close the connection without answering."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- verbs --------------------------------------------------------------

    def do_GET(self) -> None:
        if self.server.capture._refused:
            self.drop()
            return
        path = self.path.split("?", 1)[0]
        control.get(self, self.server.capture, path.rstrip("/") or "/")

    def do_POST(self) -> None:
        cap = self.server.capture
        raw = self.read_body()
        if cap._refused:
            self.drop()
            return
        path = self.path.split("?", 1)[0]
        route = path.rstrip("/") or "/"
        if route.startswith("/_"):
            control.post(self, cap, route, raw)
            return
        found = endpoints.ROUTES.get(route)
        if found is None:
            self.send(404, endpoints.error_body(404, "no route for POST %s" % path))
            return
        leg, kind = found
        encoding = (self.headers.get("Content-Encoding") or "").strip().lower() or None
        rule = cap._take_rule(leg) if cap._rules else None
        if rule is not None and rule.kind == HANG:
            assert rule.release is not None
            rule.release.wait(rule.delay)
            if cap._refused or cap._stopping:
                self.drop()
                return
            rule = None
        if rule is not None:
            self._fault(cap, rule, path, raw, leg, encoding)
            return
        try:
            if kind == endpoints.OTLP:
                body = _lenient(raw, encoding)  # protobuf or empty: fine, nothing to count
                delivered: list[Any] = []
            else:
                body = endpoints.decode_body(raw, encoding)
                delivered = endpoints.items(leg, kind, body)
        except endpoints.BadRequest as exc:
            cap._record(
                self._captured(cap, path, None, exc.status, leg, encoding, 0, False),
                leg,
                None,
                False,
            )
            self.send(exc.status, endpoints.error_body(exc.status, exc.message))
            return
        rejected: list[Any] = []
        if kind == endpoints.V1 and cap._reject is not None:
            pick = cap._reject
            rejected = [e for e in delivered if isinstance(e, dict) and pick(e)]
            delivered = [e for e in delivered if not any(e is r for r in rejected)]
        cap._record(
            self._captured(cap, path, body, 200, leg, encoding, len(delivered), True),
            leg,
            delivered,
            True,
        )
        self.send(200, endpoints.ok_body(leg, kind, delivered, rejected))

    def _fault(
        self, cap: CaptureServer, rule: Rule, path: str, raw: bytes, leg: str, encoding: str | None
    ) -> None:
        """A failed attempt: nothing is delivered; it is logged, then answered or dropped."""
        status = 0 if rule.kind == DROP else rule.status
        body = _lenient(raw, encoding) if cap._keep else None
        cap._record(
            self._captured(cap, path, body, status, leg, encoding, 0, False), leg, None, False
        )
        if rule.kind == DROP:
            self.drop()
            return
        extra = (
            []
            if rule.retry_after is None
            else [("Retry-After", endpoints.format_retry_after(rule.retry_after))]
        )
        self.send(
            status, endpoints.error_body(status, "simulated %s from capture server" % status), extra
        )

    def _captured(
        self,
        cap: CaptureServer,
        path: str,
        body: Any,
        status: int,
        leg: str,
        encoding: str | None,
        count: int,
        delivered: bool,
    ) -> endpoints.CapturedRequest | None:
        """The request as recorded (``None`` for a server that only counts)."""
        if not cap._keep:
            return None
        return endpoints.CapturedRequest(
            method=self.command,
            path=path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            status=status,
            leg=leg,
            key=endpoints.request_key(leg, body, self.headers),
            gzip=encoding in ("gzip", "x-gzip"),
            encoding=encoding,
            count=count,
            delivered=delivered,
            peer=self.client_address[:2],
        )


def _lenient(raw: bytes, encoding: str | None) -> Any:
    """The body if it decodes, else ``None``: for requests whose body is logged, never judged."""
    try:
        return endpoints.decode_body(raw, encoding)
    except endpoints.BadRequest:
        return None


class HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    capture: CaptureServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (or us dropping them) is routine here.
        if isinstance(sys.exc_info()[1], (OSError, ValueError)):
            return
        super().handle_error(request, client_address)


class HTTPServer6(HTTPServer):
    address_family = socket.AF_INET6
