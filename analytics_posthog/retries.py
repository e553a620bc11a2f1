"""Retries: counted per leg, spread out on the PostHog leg, and failures told at once.

Both libraries retry on their own and we do not redo that; this module only
watches them, through module-level functions that their consumer threads
look up at call time:

- posthog's ``_backoff(attempt, retry_after)`` sleeps 1, 2, 4 ... 30 s
  between attempts, with ``Retry-After`` as a minimum, and no jitter: workers
  that lost PostHog at the same moment would all retry at the same moment.
  Segment's client adds up to 10% to each wait; the PostHog leg gets the same
  on top of posthog's own schedule, so it never retries sooner than posthog
  would.
- Segment's consumer calls ``post(..., retry_count=n)``, so an attempt with
  ``n > 0`` is a retry.
- Each attempt goes through Segment's ``post`` and posthog's ``batch_post``
  (capture v0) or ``_post_v1`` (v1, which answers an error status instead of
  raising): a failed attempt of our legs is reported to ``outages``, which
  warns within seconds instead of after the last retry.

A retry or failure is counted for the leg whose client runs the consumer
thread that made the attempt (an app's own posthog client is left alone).
The modules are bound at import, before ``install_as_segment()`` can rename
``segment.analytics``. A posthog or Segment release that renames these
functions leaves its retries as they are, uncounted and unreported.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import weakref
from typing import Any, Callable, Optional, Protocol

from posthog import consumer as posthog_consumer
from posthog import request as posthog_request

try:
    from posthog import capture_v1 as posthog_capture_v1
except ImportError:  # a posthog without the capture v1 lane: its consumer's _backoff is the only one
    posthog_capture_v1 = None
from segment.analytics import consumer as segment_consumer
from segment.analytics import request as segment_request

from analytics_posthog import outages
from analytics_posthog.forks import fork_safe_lock

log = logging.getLogger("analytics_posthog")

#: Segment's client adds up to this fraction of each wait.
JITTER = 0.1
#: posthog's own cap on one wait, used only to size the jitter.
_POSTHOG_MAX_WAIT = getattr(posthog_capture_v1, "_MAX_BACKOFF_SECONDS", 30)


class Watched(Protocol):
    name: str
    host: Optional[str]

    def runs_on(self, thread: threading.Thread) -> bool: ...

    def retried(self) -> None: ...


_watched: "weakref.WeakSet[Any]" = weakref.WeakSet()
_install_lock = fork_safe_lock()


def watch(leg: Watched) -> None:
    """Count the retries of ``leg``'s consumer threads (and jitter posthog's)."""
    _install()
    _watched.add(leg)


def jitter(attempt_index: int) -> float:
    """Seconds added to posthog's wait before retry ``attempt_index`` (from 0)."""
    return random.uniform(0, JITTER * min(2**attempt_index, _POSTHOG_MAX_WAIT))


def _leg_of_this_thread() -> Optional[Watched]:
    thread = threading.current_thread()
    for leg in list(_watched):
        if leg.runs_on(thread):
            return leg
    return None


def _count_retry() -> None:
    """Runs inside the libraries' retry loops: counting must never end a retry."""
    try:
        leg = _leg_of_this_thread()
        if leg is not None:
            leg.retried()
    except Exception:
        log.exception("analytics_posthog: counting a retry failed")


def _attempt_failed(failure: Any) -> None:
    """Runs inside the libraries' retry loops: reporting must never end a retry."""
    try:
        leg = _leg_of_this_thread()
        if leg is not None:
            outages.failed_attempt(leg.name, leg.host, failure)
    except Exception:
        log.exception("analytics_posthog: reporting a failed attempt failed")


def _jittered(backoff: Callable[[int, Optional[float]], None]) -> Callable[[int, Optional[float]], None]:
    def jittered_backoff(attempt_index: int, retry_after: Optional[float]) -> None:
        _count_retry()
        time.sleep(jitter(attempt_index))
        backoff(attempt_index, retry_after)

    jittered_backoff.analytics_posthog = True  # type: ignore[attr-defined]
    return jittered_backoff


def _watched_post(post: Callable[..., Any]) -> Callable[..., Any]:
    """``post`` (one HTTP attempt) with its retries counted and its failures
    (an exception, or an error status answered) reported."""

    def watched_post(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("retry_count"):
            _count_retry()
        try:
            response = post(*args, **kwargs)
        except Exception as error:
            _attempt_failed(error)
            raise
        status = getattr(response, "status_code", None)
        if isinstance(status, int) and not 200 <= status < 300:
            _attempt_failed(status)
        return response

    watched_post.analytics_posthog = True  # type: ignore[attr-defined]
    return watched_post


def _install() -> None:
    with _install_lock:
        for module in (posthog_consumer, posthog_capture_v1):
            backoff = getattr(module, "_backoff", None)
            if backoff is not None and not hasattr(backoff, "analytics_posthog"):
                module._backoff = _jittered(backoff)  # type: ignore[attr-defined]
        for module, name, original in (
            (segment_consumer, "post", getattr(segment_request, "post", None)),
            (posthog_consumer, "batch_post", getattr(posthog_request, "batch_post", None)),
            (posthog_capture_v1, "_post_v1", getattr(posthog_capture_v1, "_post_v1", None)),
        ):
            if original is not None and getattr(module, name, None) is original:
                setattr(module, name, _watched_post(original))
