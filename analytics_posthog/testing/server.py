"""``CaptureServer``: a loopback PostHog and Segment endpoint that records what arrives.

Tests, demos and benchmarks deliver to it over plain HTTP with the real
clients, so what they assert on is what the clients really send. It serves
in a daemon thread of the process that starts it; ``cli`` runs one in a
process of its own.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from .endpoints import LEG_POSTHOG, LEG_SEGMENT, CapturedRequest
from .faults import FaultInjection
from .handler import Handler, HTTPServer, HTTPServer6


class CaptureServer(FaultInjection):
    """In-process loopback server that records what PostHog/Segment clients send.

    Use it as a context manager or via ``start()``/``stop()``; ``url`` is usable
    as both the posthog ``host`` and the Segment ``host``. ``keep=False`` counts
    events without storing anything, so it can absorb benchmark volumes.

    Faults (``fail``, ``hang``, ``drop``: see ``FaultInjection``; ``refuse``)
    last until ``restore()``, unless given a number of ``times`` or ``seconds``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, keep: bool = True) -> None:
        super().__init__()
        self._host = host or "127.0.0.1"
        self._port = port
        self._keep = keep
        self._cond = threading.Condition(threading.Lock())
        self._events: list[dict[str, Any]] = []
        self._segment: list[dict[str, Any]] = []
        self._requests: list[CapturedRequest] = []
        self._event_count = 0
        self._segment_count = 0
        self._request_count = 0
        self._failed_count = 0
        self._life = threading.RLock()
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._refused = False
        self._stopping = False
        self._reopen_timer: threading.Timer | None = None

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

    def start(self) -> CaptureServer:
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

    def __enter__(self) -> CaptureServer:
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
        cls = HTTPServer6 if ":" in self._host else HTTPServer
        deadline = time.monotonic() + 2.0
        while True:
            try:
                httpd = cls((self._host, self._port), Handler)
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

    def _close_connections(self, exclude: socket.socket | None) -> None:
        with self._conns_lock:
            conns = [c for c in self._conns if c is not exclude]
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- refusing connections ----------------------------------------------------

    def refuse(self, *, seconds: float | None = None) -> None:
        """Refuse connections: close the listening socket and live connections.

        Applies to the whole server (both legs share one socket; use ``drop``
        for a single leg). ``restore()`` re-binds the SAME port; with
        ``seconds`` the listener re-opens by itself after that long.
        """
        self._refuse(seconds, exclude=None)

    def restore(self) -> None:
        """Clear every simulated failure and re-open a refused listener."""
        self._release_rules()
        with self._life:
            self._cancel_reopen()
            if self._refused and not self._stopping:
                self._bind()
            self._refused = False

    def _refuse(self, seconds: float | None, exclude: socket.socket | None) -> None:
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

    # -- recorded data --------------------------------------------------------

    @property
    def events(self) -> list[dict[str, Any]]:
        """PostHog events delivered so far, in arrival order (a copy)."""
        with self._cond:
            return list(self._events)

    @property
    def segment_messages(self) -> list[dict[str, Any]]:
        """Segment messages delivered so far, in arrival order (a copy)."""
        with self._cond:
            return list(self._segment)

    @property
    def requests(self) -> list[CapturedRequest]:
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

    def stats(self) -> dict[str, int]:
        """Counters, as served by ``GET /_stats``."""
        with self._cond:
            return {
                "events": self._event_count,
                "segment": self._segment_count,
                "requests": self._request_count,
                "failed": self._failed_count,
            }

    def clear(self) -> None:
        """Forget everything recorded and zero the counters (faults stay armed)."""
        with self._cond:
            self._events.clear()
            self._segment.clear()
            self._requests.clear()
            self._event_count = 0
            self._segment_count = 0
            self._request_count = 0
            self._failed_count = 0

    def _record(
        self, req: CapturedRequest | None, leg: str, items: list[Any] | None, delivered: bool
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

    def wait_for_events(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Block until at least ``n`` PostHog events arrived, then return them
        (``[]`` with ``keep=False``); AssertionError naming what did arrive otherwise."""
        self._wait(LEG_POSTHOG, n, timeout)
        return self.events

    def wait_for_segment(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
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
                (i.get("event") or i.get("type")) if isinstance(i, dict) else i for i in items[-20:]
            ]
            seen = [
                "%s %s -> %s" % (r.leg, r.path, r.status or "dropped") for r in self._requests[-10:]
            ]
        what = "PostHog events" if leg == LEG_POSTHOG else "Segment messages"
        not_stored = "(keep=False: not stored)"
        raise AssertionError(
            "expected >= %d %s within %.3gs, got %d; last arrived: %s; last requests: %s; total requests: %d (%d failed)"
            % (
                n,
                what,
                timeout,
                got,
                names if self._keep else not_stored,
                seen if self._keep else not_stored,
                self._request_count,
                self._failed_count,
            )
        )
