"""What a leg is: one destination's library client, behind the one contract
``delivery.Delivery`` supervises.

A leg owns its library's client, which does that destination's batching,
retries and HTTP; the supervisor only hands it messages, asks how much it
holds, and tells it when to flush, stop or give up. ``PostHogLeg`` and
``SegmentLeg`` implement it; the supervisor knows no other leg type, so a
third destination is a third implementation of this protocol.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from analytics_posthog._message.build import Message


class Leg(Protocol):
    #: The leg's name in ``stats()``, logs and reports (``posthog``, ``segment``).
    name: str
    #: Why the leg's library refuses every message here, when it does (a
    #: runtime it cannot queue in); ``None`` when a refusal means a full queue.
    refusal: str | None

    @property
    def host(self) -> str | None:
        """Where the leg sends, for outage warnings."""
        ...

    def retried(self) -> None:
        """Count one retry; called from the library's consumer thread (``retries``)."""
        ...

    def runs_on(self, thread: threading.Thread) -> bool:
        """Whether ``thread`` is one of this leg's library's consumer threads,
        so a retry seen there is counted for this leg."""
        ...

    def key(self, msg: Message) -> str:
        """The id the leg's library gives ``msg`` in its batches (the spool's
        handle on its record): PostHog's event uuid, Segment's ``messageId``."""
        ...

    def send(self, msg: Message) -> bool:
        """Hand over one Segment message without blocking (in sync mode: deliver
        it now, one attempt). ``True``: the library accepted it and will report
        its fate through the leg's ``on_error``; ``False``: it was not taken
        (a full queue, a failed sync attempt whose cause is unknown). Raises
        for a message this leg can never send (``errors.Unsendable``), a
        library failure, or, in sync mode, the library's own exception for
        a failed attempt."""
        ...

    @property
    def pending(self) -> int:
        """Messages handed over and not yet done with (queued or in flight)."""
        ...

    @property
    def has_room(self) -> bool:
        """Whether ``send`` would find room: a full leg is skipped, not waited for."""
        ...

    def flush(self, timeout: float | None) -> None:
        """Wait until what was handed over is delivered or given up on, for at
        most ``timeout`` seconds (``None``: no limit)."""
        ...

    def restart(self) -> None:
        """In a forked child: a library client of the child's own, with none
        of the parent's queue, threads or connections."""
        ...

    def join(self) -> None:
        """Deliver what is queued and end the library's threads (an app's own
        client, shared with us, is only flushed: it stays the app's)."""
        ...

    def abandon(self) -> list[Any]:
        """At exit, past the deadline: stop the library's threads and return
        what was never sent, so it is counted and reported, not lost silently."""
        ...

    def renew(self) -> None:
        """After ``abandon``, when the process goes on (a server's shutdown
        hook): a new library client in place of the stopped one."""
        ...

    def close_connections(self) -> None:
        """At the end of the exit routine: close the library's pooled HTTP
        connections while the runtime still runs (gevent's hub, say)."""
        ...
