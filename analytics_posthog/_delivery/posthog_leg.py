"""The PostHog leg: mapped events handed to an official ``posthog.Client``.

Batching, retries, gzip and HTTP are posthog's; this adapter only maps and
calls ``capture()``.
"""

from __future__ import annotations

import threading
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
from analytics_posthog.mapping import to_posthog


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
    ) -> None:
        """``rebuild``: our ``Client`` built ``client`` (with that function) and
        takes charge of its end, at ``join()`` and at exit, and of its
        replacement in a child forked from C (``restart``). An app's own client
        (handed in as ``posthog_client``) is only ever flushed: the app goes on
        using it for its own events and feature flags.

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
        if self._proxies:
            posthog_internals.send_through_proxies(client, self._proxies)

    def restart(self) -> None:
        """In a forked child: after a fork Python saw, posthog rebuilt the
        client's queues and threads itself; after one from C, nothing did, so
        ours is built anew. An app's own client stays the app's."""
        if not forks.seen_by_python():
            self.renew()

    def runs_on(self, thread: threading.Thread) -> bool:
        return thread in (self.client.consumers or ())

    @property
    def host(self) -> str | None:
        return getattr(self.client, "host", None)

    def send(self, msg: Message) -> bool:
        """Hand one message to posthog; ``False`` when posthog dropped it, or
        would (``refusal``: posthog would log a line for each one)."""
        if self.refusal is not None:
            return False
        event = to_posthog(msg, self.group_type)
        if event is None:
            return True
        properties = event.properties
        token = capture_os.set(
            {name: properties[name] for name in SERVER_OS_PROPERTIES if name in properties}
        )
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
        return captured is not None

    @property
    def pending(self) -> int:
        return self.client.queue.unfinished_tasks

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
