"""The PostHog leg: mapped events handed to an official ``posthog.Client``.

Batching, retries, gzip and HTTP are posthog's; this adapter only maps and
calls ``capture()``.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import posthog

from analytics_posthog._delivery import forks, retries
from analytics_posthog._delivery.queues import take_back
from analytics_posthog._message.build import Message
from analytics_posthog._patches import posthog as posthog_internals
from analytics_posthog._patches.posthog import (
    SERVER_OS_PROPERTIES,
    capture_os,
    capturing_for,
    sync_failure,
)
from analytics_posthog.mapping import event_uuid, to_posthog


def undelivered(error: Exception, batch: list[Any]) -> list[Any]:
    """The events of ``batch`` that posthog's ``error`` says were not delivered.

    All of them, except where capture v1 answered a success status: its
    ``CaptureV1Error`` (public: posthog hands it to ``on_error``) then names
    the events the server dropped or left to retry, and the rest of the batch
    is stored."""
    status = getattr(error, "status", None)
    drops = getattr(error, "drops", None)
    if not (isinstance(status, int) and 200 <= status < 300 and isinstance(drops, list)):
        return batch
    lost = {uuid for uuid, _ in drops} | set(getattr(error, "retry_exhausted", None) or ())
    return [event for event in batch if isinstance(event, dict) and event.get("uuid") in lost]


#: Our events an app's own client may hold at once, by uuid, before the
#: oldest are forgotten (their fate then goes uncounted): posthog's default
#: queue holds 10,000.
TRACKED = 100_000

#: Legs told the end of their posthog client's batches: those delivering
#: through an app's own client, and ours with a spool to settle.
_observing: weakref.WeakSet[PostHogLeg] = weakref.WeakSet()


def _batch_ended(consumer: Any, batch: list[Any], error: Exception | None) -> None:
    for leg in list(_observing):
        if consumer in (leg.client.consumers or ()):
            leg.batch_ended(batch, error)


def batch_keys(batch: list[Any]) -> list[str]:
    """The uuids of a posthog batch's events: the spool's keys for them."""
    return [event["uuid"] for event in batch if isinstance(event, dict) and "uuid" in event]


def require_proxy_route(proxies: dict[str, str] | None) -> None:
    """Refuse ``proxies`` the PostHog leg could not send through, before any
    client is built: events sent around an egress proxy would only fail."""
    if proxies and not posthog_internals.can_proxy():
        raise ValueError(
            "proxies cannot be applied to the PostHog leg here (%s); "
            "unset proxies, or set HTTPS_PROXY in the environment, which posthog's requests "
            "honour" % (posthog_internals.PROXIES.reason or "posthog_proxies is not active")
        )


class PostHogLeg:
    name = "posthog"
    refusal: str | None = None

    def __init__(
        self,
        client: posthog.Client,
        group_type: str,
        on_retry: Callable[[], None] = lambda: None,
        *,
        rebuild: Callable[[], posthog.Client] | None = None,
        proxies: dict[str, str] | None = None,
        on_failure: Callable[[Exception, list[Any]], None] = lambda error, batch: None,
        on_settled: Callable[[list[str]], None] | None = None,
    ) -> None:
        """``rebuild``: our ``Client`` built ``client`` (with that function) and
        takes charge of its end, at ``join()`` and at exit, and of its
        replacement in a child forked from C (``restart``). An app's own client
        (handed in as ``posthog_client``) is only ever flushed: the app goes on
        using it for its own events and feature flags. Its ``on_error`` is
        the app's too, so our events' fate in its batches is learnt from the
        outcome watch (``_patches.posthog.watch_outcomes``): each of ours it
        gave up on goes to ``on_failure``, and only a batch holding ours counts
        its retries as ours. ``on_settled`` (with a spool) hears the uuids
        of our events whose fate is known.

        posthog's exit handler would give an owned client a further second at
        exit, past our ``exit_timeout``, and then drop what is left without
        telling anyone; ours does its work instead (see ``abandon``).
        """
        self._rebuild = rebuild
        self.group_type = group_type
        self.retried = on_retry
        self._proxies = proxies
        #: Whether our captures must be marked for the proxies (sync mode sends in them).
        self._proxied = bool(proxies)
        self._on_failure = on_failure
        self._on_settled = on_settled
        #: Our events in an app's own client's queue, by uuid, while the outcome watch sees its batches.
        self._ours: OrderedDict[str, None] = OrderedDict()
        self._ours_lock = threading.Lock()
        self._watching = False
        self._take(client)
        posthog_internals.install()
        retries.watch(self)

    @property
    def owned(self) -> bool:
        """Whether our ``Client`` built this posthog client (and can build another)."""
        return self._rebuild is not None

    def _take(self, client: posthog.Client) -> None:
        self.client = client
        self.refusal = (
            "posthog cannot queue events in this runtime (its log says why)"
            if posthog_internals.cannot_queue(client) and not client.sync_mode
            else None
        )
        if self.owned:
            posthog_internals.hand_over_exit(client)
        observe = not client.sync_mode and (not self.owned or self._on_settled is not None)
        if observe and posthog_internals.watch_outcomes(_batch_ended):
            self._watching = not self.owned
            _observing.add(self)
        if self._proxies:
            posthog_internals.send_through_proxies(client, self._proxies)

    def restart(self) -> None:
        """In a forked child: after a fork Python saw, posthog rebuilt the
        client's queues and threads itself; after one from C, nothing did, so
        ours is built anew. An app's own client stays the app's."""
        with self._ours_lock:
            self._ours.clear()
        if not forks.seen_by_python():
            self.renew()

    def runs_on(self, thread: threading.Thread) -> bool:
        """Whether ``thread`` is sending for us: one of our client's consumers,
        or one of an app's own client's while its batch holds our events."""
        if thread not in (self.client.consumers or ()):
            return False
        if self.owned:
            return True
        return thread is threading.current_thread() and bool(
            self._ours_in(posthog_internals.sending() or [])
        )

    def _ours_in(self, batch: list[Any]) -> list[Any]:
        with self._ours_lock:
            return [e for e in batch if isinstance(e, dict) and e.get("uuid") in self._ours]

    def batch_ended(self, batch: list[Any], error: Exception | None) -> None:
        """Our client, or an app's own, finished ``batch``. Our events in it
        are no longer pending: those delivered are settled; in an app's own
        client, those it did not deliver go to ``on_failure`` (our client's
        failures reach it through posthog's ``on_error``)."""
        if self.owned:
            if error is None and self._on_settled is not None:
                self._on_settled(batch_keys(batch))
            return
        ours = self._ours_in(batch)
        if not ours:
            return
        with self._ours_lock:
            for event in ours:
                self._ours.pop(event["uuid"], None)
        lost = undelivered(error, ours) if error is not None else []
        if lost:
            assert error is not None
            self._on_failure(error, lost)
        if self._on_settled is not None:
            gone = {id(event) for event in lost}
            self._on_settled([e["uuid"] for e in ours if id(e) not in gone])

    @property
    def host(self) -> str | None:
        return getattr(self.client, "host", None)

    def key(self, msg: Message) -> str:
        return event_uuid(msg["messageId"])

    def send(self, msg: Message) -> bool:
        """Hand one message to posthog; ``False`` when posthog dropped it, or
        would (``refusal``: posthog would log a line for each one)."""
        if self.refusal is not None:
            return False
        event = to_posthog(msg, self.group_type)
        if event is None:
            if self._on_settled is not None:
                self._on_settled([self.key(msg)])
            return True
        properties = event.properties
        token = capture_os.set(
            {name: properties[name] for name in SERVER_OS_PROPERTIES if name in properties}
        )
        if self._watching:
            # Before posthog has it: its consumer may finish the batch before capture() returns.
            with self._ours_lock:
                self._ours[event.uuid] = None
                if len(self._ours) > TRACKED:
                    self._ours.popitem(last=False)
        proxied = capturing_for.set(self.client) if self._proxied else None
        failures: list[Exception] | None = [] if self.client.sync_mode else None
        failing = sync_failure.set(failures) if failures is not None else None
        try:
            captured = self.client.capture(
                event.event,
                distinct_id=event.distinct_id,
                properties=properties,
                timestamp=event.timestamp,
                uuid=event.uuid,
                disable_geoip=event.disable_geoip,
            )
        finally:
            capture_os.reset(token)
            if proxied is not None:
                capturing_for.reset(proxied)
            if failing is not None:
                sync_failure.reset(failing)
        if failures:
            # A synchronous send failed: posthog's own exception, for on_error.
            raise failures[0]
        if captured is None and self._watching:
            with self._ours_lock:
                self._ours.pop(event.uuid, None)
        return captured is not None

    @property
    def pending(self) -> int:
        """Ours still in posthog's queue: in an app's own client, not the app's events."""
        unfinished: int = self.client.queue.unfinished_tasks
        if not self._watching:
            return unfinished
        with self._ours_lock:
            return min(len(self._ours), unfinished)

    @property
    def has_room(self) -> bool:
        """Whether posthog's queue takes one more (posthog logs a line for each
        one it turns away). ``Queue.full()``'s test, through what posthog's
        stand-in for a queue it could not create also has."""
        pending = self.client.queue
        return not 0 < pending.maxsize <= pending.qsize()

    def flush(self, timeout: float | None) -> None:
        self.client.flush(timeout_seconds=timeout)

    def join(self) -> None:
        if self.owned:
            self.client.join()
        else:
            self.client.flush()

    def abandon(self) -> list[Any]:
        """At exit, past the deadline: stop the consumers and take back the
        PostHog events still queued. An app's own client is left to posthog's
        exit handler, which makes a last, bounded attempt for the app's events
        and ours."""
        if not self.owned:
            return []
        return take_back(self.client.queue, self.client.consumers or [])

    def renew(self) -> None:
        """After ``abandon``: a new client of ours, as the stopped one sends nothing."""
        if self._rebuild is not None:
            self._take(self._rebuild())

    def close_connections(self) -> None:
        if self.owned:
            posthog_internals.close_sessions(self.client)
