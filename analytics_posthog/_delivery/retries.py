"""Retries: counted per leg, spread out on the PostHog leg, and failures told at once.

Both libraries retry on their own and we do not redo that; this module only
watches them, through wrappers that ``_patches.posthog`` and
``_patches.segment`` put around module-level functions their consumer
threads look up at call time:

- posthog's ``_backoff(attempt_index, retry_after)`` sleeps 1, 2, 4 ... 30 s
  between attempts, with ``Retry-After`` as a minimum, and no jitter: workers
  that lost PostHog at the same moment would all retry at the same moment.
  Segment's client adds up to 10% to each wait; the PostHog leg gets the same
  on top of posthog's own schedule (``jittered``), so it never retries sooner
  than posthog would.
- Segment's consumer calls ``post(..., retry_count=n)``, so an attempt with
  ``n > 0`` is a retry.
- Each attempt goes through Segment's ``post`` and posthog's ``batch_post``
  (capture v0) or ``_post_v1`` (v1, which answers an error status instead of
  raising): a failed attempt of our legs is reported to ``outages``
  (``watched_post``), which warns within seconds instead of after the last retry.

A retry or failure is counted for the leg whose client runs the consumer
thread that made the attempt; in an app's own posthog client, only while the
batch it sends holds our events (``PostHogLeg.runs_on``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from analytics_posthog._delivery import outages

if TYPE_CHECKING:
    from analytics_posthog._delivery.legs import Leg

log = logging.getLogger("analytics_posthog")

#: Segment's client adds up to this fraction of each wait.
JITTER = 0.1
#: posthog's cap on one wait (``_patches.posthog`` reads posthog's own), used only to size the jitter.
POSTHOG_MAX_WAIT = 30


_watched: weakref.WeakSet[Any] = weakref.WeakSet()


def watch(leg: Leg) -> None:
    """Count the retries of ``leg``'s consumer threads."""
    _watched.add(leg)


def jitter(attempt_index: int, cap: float = POSTHOG_MAX_WAIT) -> float:
    """Seconds added to posthog's wait before retry ``attempt_index`` (from 0)."""
    return random.uniform(0, JITTER * min(2**attempt_index, cap))


def _leg_of_this_thread() -> Leg | None:
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


def _attempt_succeeded(batch: Any) -> None:
    """Runs on the libraries' consumer threads: a leg that settles its
    batches (Segment's, for the spool) hears the batch; never raises."""
    try:
        leg = _leg_of_this_thread()
        sent = getattr(leg, "sent", None)
        if sent is not None and isinstance(batch, list):
            sent(batch)
    except Exception:
        log.exception("analytics_posthog: settling a delivered batch failed")


def jittered(
    backoff: Callable[[int, float | None], None], cap: float
) -> Callable[[int, float | None], None]:
    """posthog's ``backoff``, counted and with up to JITTER of the wait (capped at ``cap``) added."""

    def jittered_backoff(attempt_index: int, retry_after: float | None) -> None:
        _count_retry()
        time.sleep(jitter(attempt_index, cap))
        backoff(attempt_index, retry_after)

    jittered_backoff.analytics_posthog = True  # type: ignore[attr-defined]
    return jittered_backoff


def watched_post(post: Callable[..., Any]) -> Callable[..., Any]:
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
        else:
            _attempt_succeeded(kwargs.get("batch"))
        return response

    watched_post.analytics_posthog = True  # type: ignore[attr-defined]
    return watched_post
