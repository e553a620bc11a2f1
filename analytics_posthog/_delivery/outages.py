"""A warning, within seconds, when a leg cannot deliver: which leg, which host, why.

Both libraries retry a failed request for a long time with default settings
(Segment's client for up to 10 retries spread over minutes) and say nothing
until they give up, so a wrong host or key would go unnoticed until exit.
``retries`` reports every failed attempt of our legs' consumer threads here,
and one warning goes out per leg, host and reason per WARN_INTERVAL.

The warning names the host as ``scheme://host:port`` only: never a path, a
query or user info, and never the error's own text (which may quote a URL),
so no key or credential reaches the log.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from analytics_posthog._delivery.forks import fork_safe_lock

log = logging.getLogger("analytics_posthog")

#: At most one warning per leg, host and reason per this many seconds.
WARN_INTERVAL = 60.0

_warned_at: dict[tuple[str, str, str], float] = {}
_lock = fork_safe_lock()


def failed_attempt(leg: str, host: str | None, failure: Any) -> None:
    """One attempt of ``leg`` to deliver to ``host`` failed: ``failure`` is the
    exception raised, or the HTTP status answered."""
    reason = describe(failure)
    where = public_host(host)
    key = (leg, where, reason)
    now = time.monotonic()
    with _lock:
        if now - _warned_at.get(key, float("-inf")) < WARN_INTERVAL:
            return
        _warned_at[key] = now
    log.warning(
        "analytics_posthog: the %s leg cannot deliver to %s: %s (said at most every %d s; "
        "stats() and on_error count what is given up)",
        leg,
        where,
        reason,
        WARN_INTERVAL,
    )


def public_host(url: str | None) -> str:
    """``scheme://host[:port]`` of ``url``: what can be logged of it."""
    if not url:
        return "(the library's default host)"
    try:
        parts = urlsplit(url if "//" in url else "//" + url)
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return "(an unparseable host)"
    if ":" in host:
        host = "[%s]" % host
    scheme = parts.scheme + "://" if parts.scheme else ""
    return "%s%s%s" % (scheme, host, ":%d" % port if port else "")


def describe(failure: Any) -> str:
    """Why an attempt failed, in words an operator acts on."""
    status = failure if isinstance(failure, int) else getattr(failure, "status", None)
    if isinstance(status, int):
        if status in (401, 403):
            return "HTTP %d, the key was refused (is it the right key for this host?)" % status
        if status == 404:
            return "HTTP 404, no such endpoint (is the host right?)"
        if status == 429:
            return "HTTP 429, rate limited"
        if status >= 500:
            return "HTTP %d, server error" % status
        return "HTTP %d" % status
    causes = list(_causes(failure))
    if any(isinstance(cause, socket.gaierror) for cause in causes):
        return "DNS lookup failed (no such host name?)"
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return "connection refused (nothing listens on that port?)"
    if any(
        isinstance(cause, (TimeoutError, socket.timeout)) or "Timeout" in type(cause).__name__
        for cause in causes
    ):
        return "timed out"
    return "request failed (%s)" % type(failure).__name__


def _causes(error: Any, depth: int = 6) -> Iterator[BaseException]:
    """``error`` and what it wraps: requests and urllib3 keep the socket's
    error in ``__cause__``/``__context__``, ``reason`` or ``args``."""
    if not isinstance(error, BaseException) or depth == 0:
        return
    yield error
    seen = [error.__cause__, error.__context__, getattr(error, "reason", None), *error.args]
    for inner in seen:
        if inner is not error:
            yield from _causes(inner, depth - 1)
