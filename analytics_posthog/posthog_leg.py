"""The PostHog leg: mapped events handed to an official ``posthog.Client``.

Batching, retries, gzip and HTTP are posthog's; this adapter only maps and
calls ``capture()``.
"""

from __future__ import annotations

import atexit
import contextvars
import threading
from typing import Any, Callable, Dict, List, Optional

import posthog
import posthog.client as posthog_client

from analytics_posthog import posthog_speedups, retries
from analytics_posthog.forks import fork_safe_lock
from analytics_posthog.mapping import to_posthog
from analytics_posthog.message import Message
from analytics_posthog.queues import take_back

#: posthog's ``capture()`` adds the server's OS (``system_context()``) over
#: every event's properties. On our events these describe the end user's
#: device, so the server's must never appear: only ``context.os`` may set them.
SERVER_OS_PROPERTIES = ("$os", "$os_version", "$os_distro")
#: The end user's OS properties for the event we are capturing (empty when
#: its context has none); ``None`` outside our captures, where
#: ``system_context()`` answers as posthog's own.
_context_os: contextvars.ContextVar[Optional[Dict[str, Any]]] = contextvars.ContextVar(
    "analytics_posthog_context_os", default=None
)
_install_lock = fork_safe_lock()


class PostHogLeg:
    name = "posthog"

    def __init__(
        self,
        client: posthog.Client,
        group_type: str,
        on_retry: Callable[[], None] = lambda: None,
        *,
        owned: bool = False,
    ) -> None:
        """``owned``: our ``Client`` built ``client`` and takes charge of its end,
        at ``join()`` and at exit. An app's own client (handed in as
        ``posthog_client``) is only ever flushed: the app goes on using it for
        its own events and feature flags.

        posthog's exit handler would give an owned client a further second at
        exit, past our ``exit_timeout``, and then drop what is left without
        telling anyone; ours does its work instead (see ``abandon``).
        """
        self.client = client
        self.owned = owned
        self.group_type = group_type
        self.retried = on_retry
        if owned and hasattr(client, "_atexit"):
            atexit.unregister(client._atexit)
        posthog_speedups.install()
        install_context_os()
        retries.watch(self)

    def runs_on(self, thread: threading.Thread) -> bool:
        return thread in (self.client.consumers or ())

    @property
    def host(self) -> Optional[str]:
        return getattr(self.client, "host", None)

    def send(self, msg: Message) -> bool:
        """Hand one message to posthog; ``False`` when posthog dropped it."""
        event = to_posthog(msg, self.group_type)
        if event is None:
            return True
        properties = event.properties
        token = _context_os.set({name: properties[name] for name in SERVER_OS_PROPERTIES if name in properties})
        try:
            return (
                self.client.capture(
                    event.event,
                    distinct_id=event.distinct_id,
                    properties=properties,
                    timestamp=event.timestamp,
                    uuid=event.uuid,
                    disable_geoip=event.disable_geoip,
                )
                is not None
            )
        finally:
            _context_os.reset(token)

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

    def flush(self, timeout: Optional[float]) -> None:
        self.client.flush(timeout_seconds=timeout)

    def join(self) -> None:
        if self.owned:
            self.client.join()
        else:
            self.client.flush()

    def abandon(self) -> List[Any]:
        """At exit, past the deadline: stop the consumers and take back the
        PostHog events still queued. An app's own client is left to posthog's
        exit handler, which makes a last, bounded attempt for the app's events
        and ours."""
        if not self.owned:
            return []
        return take_back(self.client.queue, self.client.consumers or [])


def install_context_os() -> None:
    """Wrap posthog's ``system_context()`` (once per process) so that, while
    we capture, it names no server OS and the end user's OS (if the context
    gave one) takes its place. Every other caller (an app's own use of its
    posthog client) still gets the server's OS.

    A ``before_send`` hook could strip the OS too, but posthog cleans the whole
    event again after it. If a posthog release no longer has
    ``posthog.client.system_context``, nothing is wrapped and posthog's own
    behaviour stands.
    """
    with _install_lock:
        current = getattr(posthog_client, "system_context", None)
        if not callable(current) or getattr(current, "answers_context_os", False):
            return

        def system_context() -> Dict[str, Any]:
            own = current()
            context_os = _context_os.get()
            if context_os is None:
                return own
            return {**{k: v for k, v in own.items() if k not in SERVER_OS_PROPERTIES}, **context_os}

        system_context.answers_context_os = True  # type: ignore[attr-defined]
        system_context.__wrapped__ = current  # type: ignore[attr-defined]
        posthog_client.system_context = system_context
