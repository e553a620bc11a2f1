"""The second pass of replay: events handed to posthog in historical mode.

posthog batches (at most ``BATCH_SIZE`` events, and never past its own 5 MiB
request cap), gzips, retries, and honours ``Retry-After`` (as the least wait
between attempts). What goes out is exactly the event export writes: posthog
adds the replaying machine's OS, runtime and ``$is_server`` to every event,
which describe the wrong machine on a historical one, so ``before_send``
puts back the event's own properties and timestamp (``capture()`` is given
only what it must carry itself: name, distinct id, uuid).
"""

from __future__ import annotations

import time
from typing import Any

import posthog

#: Events per request: bigger batches are fewer round trips.
BATCH_SIZE = 500
#: Seconds a partial batch waits: at a low --rate a batch fills slowly.
FLUSH_INTERVAL = 0.5
#: Events between checkpoints (each costs a full flush), or this many seconds.
CHECKPOINT_EVERY_EVENTS = 2000
CHECKPOINT_EVERY_SECONDS = 5.0
#: posthog waits 1, 2, 4 ... 30 s between attempts: 6 retries ride out about a
#: minute of errors or rate limiting before the replay stops (and can resume).
MAX_RETRIES = 6
#: Events per second unless --rate says otherwise: well under the few thousand
#: PostHog asks historical imports to stay below.
DEFAULT_RATE = 1000.0


class PostHogSink:
    def __init__(self, api_key: str, host: str) -> None:
        self.errors: list[Exception] = []
        self._event: dict[str, Any] = {}
        self.client = posthog.Client(
            api_key,
            host=host,
            historical_migration=True,
            flush_at=BATCH_SIZE,
            flush_interval=FLUSH_INTERVAL,
            max_queue_size=CHECKPOINT_EVERY_EVENTS * 4,
            gzip=True,
            max_retries=MAX_RETRIES,
            on_error=lambda error, batch: self.errors.append(error),
            before_send=self._as_exported,
        )

    def _as_exported(self, msg: dict[str, Any]) -> dict[str, Any]:
        msg["properties"] = self._event["properties"]
        msg["timestamp"] = self._event["timestamp"]
        return msg

    def send(self, event: dict[str, Any]) -> bool:
        """Queue one event; ``False`` when posthog refused it."""
        self._event = event
        return (
            self.client.capture(
                event["event"], distinct_id=event["distinct_id"], uuid=event["uuid"]
            )
            is not None
        )

    def flush(self) -> Exception | None:
        """Wait until posthog delivered (or gave up on) everything queued; the
        first error since the last flush, if any."""
        self.client.flush(timeout_seconds=None)
        error = self.errors[0] if self.errors else None
        self.errors.clear()
        return error

    def close(self) -> None:
        self.client.shutdown()


class Throttle:
    """At most ``rate`` events/s on average since the first one."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.started = time.monotonic()
        self.count = 0

    def wait(self) -> None:
        self.count += 1
        delay = self.started + self.count / self.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
