"""The PostHog leg: mapped events handed to an official ``posthog.Client``.

Batching, retries, gzip and HTTP are posthog's; this adapter only maps and
calls ``capture()``.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List, Optional

import posthog

from analytics_posthog import posthog_speedups, retries
from analytics_posthog.mapping import to_posthog
from analytics_posthog.message import Message

#: posthog's ``capture()`` overwrites ``$os``/``$os_version`` with the server's
#: own OS. The end user's OS from ``context.os`` travels under this key and is
#: put back by the ``before_send`` hook, after posthog's enrichment.
CONTEXT_OS_KEY = "$analytics_posthog_context_os"
_OS_PROPERTIES = ("$os", "$os_version")

BeforeSend = Callable[[Dict[str, Any]], Optional[Dict[str, Any]]]


class PostHogLeg:
    name = "posthog"

    def __init__(self, client: posthog.Client, group_type: str, on_retry: Callable[[], None] = lambda: None) -> None:
        self.client = client
        self.group_type = group_type
        self.retried = on_retry
        install_context_os(client)
        posthog_speedups.install()
        retries.watch(self)

    def runs_on(self, thread: threading.Thread) -> bool:
        return thread in (self.client.consumers or ())

    def send(self, msg: Message) -> bool:
        """Hand one message to posthog; ``False`` when posthog dropped it."""
        event = to_posthog(msg, self.group_type)
        if event is None:
            return True
        properties = event.properties
        context_os = {name: properties.pop(name) for name in _OS_PROPERTIES if name in properties}
        if context_os:
            properties[CONTEXT_OS_KEY] = context_os
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

    @property
    def pending(self) -> int:
        return self.client.queue.unfinished_tasks

    def flush(self, timeout: Optional[float]) -> None:
        self.client.flush(timeout_seconds=timeout)

    def join(self) -> None:
        self.client.join()

    def abandon(self) -> List[Message]:
        """At exit, past the deadline: nothing to take back, posthog's own exit
        handler runs after ours and makes a last, bounded attempt."""
        return []


def build_client(
    api_key: str,
    host: str,
    *,
    debug: bool,
    max_queue_size: int,
    send: bool,
    on_error: Callable[[Exception, Any], None],
    gzip: bool,
    max_retries: int,
    sync_mode: bool,
    timeout: float,
    thread: int,
    upload_size: int,
    upload_interval: float,
) -> posthog.Client:
    """A posthog client with the user's delivery settings, named as Segment names them."""
    return posthog.Client(
        api_key,
        host=host,
        debug=debug,
        max_queue_size=max_queue_size,
        send=send,
        on_error=on_error,
        flush_at=upload_size,
        flush_interval=upload_interval,
        gzip=gzip,
        max_retries=max_retries,
        sync_mode=sync_mode,
        timeout=timeout,
        thread=thread,
    )


def install_context_os(client: posthog.Client) -> None:
    """Wrap the client's ``before_send`` (once) so the context OS wins.

    A client the app handed in keeps its own hook, which runs after ours and
    sees the final properties.
    """
    current = client.before_send
    if getattr(current, "restores_context_os", False):
        return

    def before_send(msg: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        properties = msg.get("properties")
        if isinstance(properties, dict):
            properties.update(properties.pop(CONTEXT_OS_KEY, None) or {})
        return current(msg) if current is not None else msg

    before_send.restores_context_os = True  # type: ignore[attr-defined]
    client.before_send = before_send
