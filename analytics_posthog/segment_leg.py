"""The Segment leg (dual-write): each call replayed, unchanged, on Segment's own client.

Using segment-analytics-python's public methods keeps Segment's batching,
retries, OAuth and wire format exactly what the team had; only
``integrations.PostHog`` is switched off so Segment does not relay a second
copy to PostHog.
"""

from __future__ import annotations

import atexit
import queue
import time
from datetime import datetime
from typing import Any, Callable, Dict, List, Optional, Tuple

from segment.analytics import Client as SegmentClient

from analytics_posthog.forks import reset_in_child
from analytics_posthog.mapping import segment_integrations
from analytics_posthog.message import Message

#: Segment message key -> keyword of the Segment client method, per call type.
ARGUMENTS = {
    "identify": (("userId", "user_id"), ("traits", "traits"), ("anonymousId", "anonymous_id")),
    "track": (("userId", "user_id"), ("event", "event"), ("properties", "properties"), ("anonymousId", "anonymous_id")),
    "alias": (("previousId", "previous_id"), ("userId", "user_id")),
    "group": (("userId", "user_id"), ("groupId", "group_id"), ("traits", "traits"), ("anonymousId", "anonymous_id")),
    "page": (("userId", "user_id"), ("category", "category"), ("name", "name"), ("properties", "properties"), ("anonymousId", "anonymous_id")),
    "screen": (("userId", "user_id"), ("category", "category"), ("name", "name"), ("properties", "properties"), ("anonymousId", "anonymous_id")),
}


def segment_call(msg: Message) -> Tuple[str, Dict[str, Any]]:
    """The Segment client method and arguments that rebuild ``msg`` (same messageId)."""
    type_ = msg["type"]
    kwargs: Dict[str, Any] = {argument: msg.get(key) for key, argument in ARGUMENTS[type_]}
    kwargs["context"] = {k: v for k, v in msg["context"].items() if k != "library"}
    kwargs["timestamp"] = datetime.fromisoformat(msg["timestamp"])
    kwargs["integrations"] = segment_integrations(msg["integrations"])
    kwargs["message_id"] = msg["messageId"]
    return type_, kwargs


class SegmentLeg:
    name = "segment"

    def __init__(self, build: Callable[[], SegmentClient]) -> None:
        self._build = build
        self._start()
        reset_in_child(self._start)

    def _start(self) -> None:
        """A fresh Segment client; in a forked child, the parent's queue and dead
        consumer thread are left behind so nothing is sent twice or never.

        Segment registers ``join`` at exit, which stops its consumer with the
        queue unsent; our exit handler delivers first, within its own deadline.
        """
        self.client = self._build()
        atexit.unregister(self.client.join)

    @property
    def pending(self) -> int:
        return self.client.queue.unfinished_tasks

    def send(self, msg: Message) -> bool:
        """Queue (or, in sync mode, post) one message; ``False`` when Segment's queue is full."""
        method, kwargs = segment_call(msg)
        success, _ = getattr(self.client, method)(**kwargs)
        return bool(success)

    def flush(self, timeout: Optional[float]) -> None:
        """Wait for Segment's queue to drain; Segment's own ``flush()`` has no time limit."""
        if timeout is None:
            self.client.flush()
            return
        queue = self.client.queue
        deadline = time.monotonic() + timeout
        with queue.all_tasks_done:
            while queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                queue.all_tasks_done.wait(remaining)

    def join(self) -> None:
        # Segment's join() iterates its consumers, which a sync_mode client has none of (None).
        if self.client.consumers is not None:
            self.client.join()

    def abandon(self) -> List[Message]:
        """At exit, past the deadline: stop the consumers and take back what is left."""
        for consumer in self.client.consumers or []:
            consumer.pause()
        left: List[Message] = []
        while True:
            try:
                left.append(self.client.queue.get_nowait())
            except queue.Empty:
                return left


