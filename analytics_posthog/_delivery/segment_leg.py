"""The Segment leg (dual-write): each call delivered, unchanged, by Segment's own client.

segment-analytics-python's client does the batching, retries, OAuth and
wire format, exactly as the team had them; only ``integrations.PostHog`` is
switched off, for the calls our PostHog leg delivers, so Segment does not
relay a second copy to PostHog.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable
from typing import Any

from segment.analytics import Client as SegmentClient

from analytics_posthog._delivery import retries
from analytics_posthog._delivery.queues import take_back
from analytics_posthog._message.build import Message, delivering_near_limit, json_size
from analytics_posthog._patches import segment as segment_internals
from analytics_posthog._patches.segment import MAX_MSG_SIZE
from analytics_posthog._patches.segment import VERSION as SEGMENT_VERSION
from analytics_posthog.errors import Unsendable
from analytics_posthog.mapping import posthog_enabled, segment_integrations

#: What Segment's own client names itself in ``context.library``: the Segment
#: leg sends each message as that client would have (shared, read-only).
SEGMENT_LIBRARY = {"name": "analytics-python", "version": SEGMENT_VERSION}
#: How often a timed flush looks at Segment's queue.
FLUSH_POLL = 0.005
#: Where Segment's ``post`` sends when its client has no ``host``.
SEGMENT_DEFAULT_HOST = "https://api.segment.io"


def segment_message(msg: Message, beside_posthog: bool) -> Message:
    """``msg`` as Segment's client would have built it for the same call (same
    messageId, same cleaned values), with Segment's PostHog destination off
    whenever our PostHog leg (``beside_posthog``: there is one) delivers it."""
    integrations = msg["integrations"]
    return {
        **msg,
        "context": {**msg["context"], "library": SEGMENT_LIBRARY},
        "integrations": segment_integrations(
            integrations, beside_posthog and posthog_enabled(integrations)
        ),
    }


def check_size(wire: Message) -> None:
    """Raise ``Unsendable`` for a message Segment's consumer would drop.

    The call checked the message as Segment's client would; the leg's own
    fields (``integrations.PostHog``, Segment's ``context.library``) can take
    one near the limit over it (only one the call found within
    ``message.WIRE_MARGIN`` of the limit is sized again here: its delivery
    runs with ``message.delivering_near_limit`` set). Segment's consumer
    drops such a message without marking it done, and its queue would never
    join again: every ``flush()`` and ``shutdown()`` would wait forever.
    """
    try:
        size = json_size(wire)
    except ValueError as error:
        raise Unsendable(
            "Segment cannot write this %s message as JSON: %s" % (wire["type"], error)
        ) from None
    if size > MAX_MSG_SIZE:
        raise Unsendable(
            "this %s message is %d bytes as Segment sends it, over Segment's %d limit"
            % (wire["type"], size, MAX_MSG_SIZE)
        )


def batch_keys(batch: list[Any]) -> list[str]:
    """The messageIds of a Segment batch's messages: the spool's keys for them."""
    return [msg["messageId"] for msg in batch if isinstance(msg, dict) and "messageId" in msg]


class SegmentLeg:
    name = "segment"
    refusal = None

    def __init__(
        self,
        build: Callable[[], SegmentClient],
        on_retry: Callable[[], None] = lambda: None,
        *,
        beside_posthog: bool,
        on_settled: Callable[[list[str]], None] | None = None,
    ) -> None:
        """``beside_posthog``: a PostHog leg of ours delivers the same calls, so
        Segment's copy of each one it delivers has Segment's PostHog destination
        off; without one (Segment only) the calls' routing is Segment's.
        ``on_settled`` (with a spool) hears the ``messageId`` of each message
        Segment took."""
        self._build = build
        self.beside_posthog = beside_posthog
        self.retried = on_retry
        self._on_settled = on_settled
        self._start()
        segment_internals.install()
        retries.watch(self)

    def runs_on(self, thread: threading.Thread) -> bool:
        return thread in (self.client.consumers or ())

    @property
    def host(self) -> str:
        return self.client.host or SEGMENT_DEFAULT_HOST

    def key(self, msg: Message) -> str:
        return str(msg["messageId"])

    def sent(self, batch: list[Any]) -> None:
        """Segment answered success for ``batch`` (on its consumer's thread)."""
        if self._on_settled is not None:
            self._on_settled(batch_keys(batch))

    def _start(self) -> None:
        """A fresh Segment client; in a forked child, the parent's queue and dead
        consumer thread are left behind so nothing is sent twice or never.

        Segment registers ``join`` at exit, which stops its consumer with the
        queue unsent; our exit handler delivers first, within its own deadline.
        """
        self.client = self._build()
        self._direct = segment_internals.direct_sender(self.client)
        atexit.unregister(self.client.join)

    def restart(self) -> None:
        """Segment's requests go through one module-level session, whose pooled
        keep-alive connections a forked child inherits: parent and child would
        write and read on the same sockets, losing or repeating batches. The
        child gets a session of its own (the parent's sockets are left open:
        they are the parent's). posthog does the same for its own session."""
        segment_internals.new_session_in_child()
        self._start()

    @property
    def pending(self) -> int:
        return self.client.queue.unfinished_tasks

    @property
    def has_room(self) -> bool:
        return not self.client.queue.full()

    def send(self, msg: Message) -> bool:
        """Queue (or, in sync mode, post) one message; ``False`` when Segment's queue is full.

        The message is already built and cleaned exactly as Segment's client
        builds it, so it goes straight onto the queue Segment's consumer reads
        (in sync mode, through Segment's own ``post``), instead of paying for a
        second validation, cleaning and size check per message.
        """
        wire = segment_message(msg, self.beside_posthog)
        if delivering_near_limit.get():
            check_size(wire)
        return segment_internals.enqueue(self.client, wire, self._direct)

    def flush(self, timeout: float | None) -> None:
        """Wait for Segment's queue to drain; Segment's own ``flush()`` has no time limit.

        Looks every ``FLUSH_POLL`` seconds rather than waiting on the queue's
        condition: gevent's and eventlet's queues, which replace Segment's
        under their monkey-patching, have none (and their ``sleep`` yields to
        the consumer)."""
        if timeout is None:
            self.client.flush()
            return
        queue = self.client.queue
        deadline = time.monotonic() + timeout
        while queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(FLUSH_POLL)

    def join(self) -> None:
        # Segment's join() iterates its consumers, which a sync_mode client has none of (None).
        if self.client.consumers is not None:
            self.client.join()

    def abandon(self) -> list[Message]:
        """At exit, past the deadline: stop the consumers and take back what is left."""
        return take_back(self.client.queue, self.client.consumers or [])

    def renew(self) -> None:
        """After ``abandon``: a new Segment client, as the stopped one sends nothing."""
        self._start()

    def close_connections(self) -> None:
        segment_internals.close_session()
