"""Retries: counted per leg, and spread out on the PostHog leg.

Both libraries retry on their own and we do not redo that; this module only
watches them, through one module-level function of each that their consumer
threads look up at call time:

- posthog's ``_backoff(attempt, retry_after)`` sleeps 1, 2, 4 ... 30 s
  between attempts, with ``Retry-After`` as a minimum, and no jitter: workers
  that lost PostHog at the same moment would all retry at the same moment.
  Segment's client adds up to 10% to each wait; the PostHog leg gets the same
  on top of posthog's own schedule, so it never retries sooner than posthog
  would.
- Segment's consumer calls ``post(..., retry_count=n)``, so an attempt with
  ``n > 0`` is a retry.

A retry is counted for the leg whose client runs the consumer thread that
retried. The modules are bound at import, before ``install_as_segment()`` can
rename ``segment.analytics``. A posthog or Segment release that renames these
functions leaves its retries as they are, uncounted.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import weakref
from typing import Any, Callable, Optional, Protocol

from posthog import consumer as posthog_consumer

try:
    from posthog import capture_v1 as posthog_capture_v1
except ImportError:  # a posthog without the capture v1 lane: its consumer's _backoff is the only one
    posthog_capture_v1 = None
from segment.analytics import consumer as segment_consumer

from analytics_posthog.forks import fork_safe_lock

log = logging.getLogger("analytics_posthog")

#: Segment's client adds up to this fraction of each wait.
JITTER = 0.1
#: posthog's own cap on one wait, used only to size the jitter.
_POSTHOG_MAX_WAIT = getattr(posthog_capture_v1, "_MAX_BACKOFF_SECONDS", 30)


class Watched(Protocol):
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


def _count_retry() -> None:
    """Runs inside the libraries' retry loops: counting must never end a retry."""
    thread = threading.current_thread()
    try:
        for leg in list(_watched):
            if leg.runs_on(thread):
                leg.retried()
                return
    except Exception:
        log.exception("analytics_posthog: counting a retry failed")


def _jittered(backoff: Callable[[int, Optional[float]], None]) -> Callable[[int, Optional[float]], None]:
    def jittered_backoff(attempt_index: int, retry_after: Optional[float]) -> None:
        _count_retry()
        time.sleep(jitter(attempt_index))
        backoff(attempt_index, retry_after)

    jittered_backoff.analytics_posthog = True  # type: ignore[attr-defined]
    return jittered_backoff


def _counted(post: Callable[..., Any]) -> Callable[..., Any]:
    def counted_post(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("retry_count"):
            _count_retry()
        return post(*args, **kwargs)

    counted_post.analytics_posthog = True  # type: ignore[attr-defined]
    return counted_post


def _install() -> None:
    with _install_lock:
        for module in (posthog_consumer, posthog_capture_v1):
            backoff = getattr(module, "_backoff", None)
            if backoff is not None and not hasattr(backoff, "analytics_posthog"):
                module._backoff = _jittered(backoff)  # type: ignore[attr-defined]
        post = getattr(segment_consumer, "post", None)
        if post is not None and not hasattr(post, "analytics_posthog"):
            segment_consumer.post = _counted(post)  # type: ignore[attr-defined]
