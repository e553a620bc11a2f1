"""Every setting, named and defaulted once.

``Settings`` lists segment-analytics-python's client settings with Segment's
names, order and defaults (taken from Segment's own ``DefaultConfig``, so the
two cannot drift), then ours. The module settings, ``Client(...)``'s
parameters, ``configure()`` and the arguments of the posthog and Segment
clients the legs run are all read from here: a setting added or renamed in
one place is added or renamed everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import posthog
from segment.analytics import Client as SegmentClient

from analytics_posthog._patches.segment import require
from analytics_posthog.mapping import DEFAULT_GROUP_TYPE

OnError = Callable[[Exception, Any], None]

_SEGMENT = SegmentClient.DefaultConfig


@dataclass(frozen=True)
class Settings:
    # Segment's, in the order of its Client's parameters.
    write_key: str | None = _SEGMENT.write_key
    host: str | None = _SEGMENT.host
    debug: bool = _SEGMENT.debug
    max_queue_size: int = _SEGMENT.max_queue_size
    send: bool = _SEGMENT.send
    on_error: OnError | None = _SEGMENT.on_error
    gzip: bool = _SEGMENT.gzip
    max_retries: int = _SEGMENT.max_retries
    sync_mode: bool = _SEGMENT.sync_mode
    timeout: float = _SEGMENT.timeout
    proxies: dict | None = _SEGMENT.proxies
    thread: int = _SEGMENT.thread
    upload_size: int = _SEGMENT.upload_size
    upload_interval: float = _SEGMENT.upload_interval
    log_handler: logging.Handler | None = _SEGMENT.log_handler
    oauth_client_id: str | None = _SEGMENT.oauth_client_id
    oauth_client_key: str | None = _SEGMENT.oauth_client_key
    oauth_key_id: str | None = _SEGMENT.oauth_key_id
    oauth_auth_server: str = _SEGMENT.oauth_auth_server
    oauth_scope: str = _SEGMENT.oauth_scope
    max_total_backoff_duration: float = _SEGMENT.max_total_backoff_duration
    max_rate_limit_duration: float = _SEGMENT.max_rate_limit_duration
    # Ours.
    #: PostHog project key (``phc_...``); see ``config.resolve_keys`` for the environment.
    posthog_api_key: str | None = None
    posthog_host: str | None = None
    #: PostHog group type for ``group()`` calls and ``context.groupId``.
    group_type: str = DEFAULT_GROUP_TYPE
    #: An app's own ``posthog.Client`` to deliver through (it stays the app's).
    posthog_client: posthog.Client | None = None
    #: Seconds the exit handler gives what is still queued.
    exit_timeout: float = 5.0
    #: A directory where each accepted call is written before the call
    #: returns, for the next process to deliver if this one is killed
    #: (``_delivery.spool``); ``ANALYTICS_POSTHOG_SPOOL_DIR`` when unset.
    spool_dir: str | None = None
    #: The most the spool directory may hold, all processes' files together.
    spool_max_bytes: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        """Segment's own checks, with Segment's messages, at the call that passes the value."""
        if self.write_key is not None:
            require("write_key", self.write_key, str)
        if self.max_total_backoff_duration is None or self.max_total_backoff_duration < 0:
            raise ValueError("max_total_backoff_duration must be a non-negative number")
        if self.max_rate_limit_duration is None or self.max_rate_limit_duration < 0:
            raise ValueError("max_rate_limit_duration must be a non-negative number")
        if self.proxies and self.posthog_client is not None:
            # Its requests are the app's, through posthog's shared session: ours
            # cannot be routed apart from the app's own.
            raise ValueError(
                "proxies cannot be applied to an app's own posthog_client; "
                "set HTTPS_PROXY in the environment, or let analytics_posthog build the client"
            )

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> Settings:
        """The settings among a call's arguments (``locals()`` of a function
        whose parameters are the settings' names)."""
        return cls(**{name: arguments[name] for name in NAMES})

    def segment_client_arguments(self, on_error: OnError) -> dict[str, Any]:
        """Keyword arguments for Segment's ``Client`` (all but the write key,
        which the caller resolves), with the leg's own ``on_error``.

        Not ``debug``: Segment's adds a handler of its own per client (each
        line printed once per client); ``Client`` shows Segment's debug lines
        itself, as posthog's (``client.show_debug_lines``).
        """
        arguments = {
            name: value for name, value in asdict_shallow(self).items() if name in SEGMENT_NAMES
        }
        del arguments["write_key"], arguments["debug"]
        arguments["on_error"] = on_error
        return arguments

    def posthog_client_arguments(self, on_error: OnError) -> dict[str, Any]:
        """Keyword arguments for ``posthog.Client`` (after the key and host),
        Segment's delivery settings under posthog's names.

        ``debug`` is not among them: posthog's calls ``logging.basicConfig()``,
        configuring the app's root logger (its own later ``basicConfig`` then
        does nothing), and makes posthog's calls raise; ``Client`` shows
        posthog's debug lines itself (``client.show_debug_lines``).
        """
        return dict(
            max_queue_size=self.max_queue_size,
            send=self.send,
            on_error=on_error,
            flush_at=self.upload_size,
            flush_interval=self.upload_interval,
            gzip=self.gzip,
            max_retries=self.max_retries,
            sync_mode=self.sync_mode,
            timeout=self.timeout,
            thread=self.thread,
        )


def asdict_shallow(settings: Settings) -> dict[str, Any]:
    """``dataclasses.asdict`` without its deep copy: ``posthog_client`` and
    ``on_error`` are the app's own objects and must stay the same objects."""
    return {name: getattr(settings, name) for name in NAMES}


#: Every setting's name, Segment's first.
NAMES: tuple[str, ...] = tuple(field.name for field in fields(Settings))
#: The settings Segment's client has.
SEGMENT_NAMES = frozenset(name for name in NAMES if hasattr(_SEGMENT, name))
#: Each setting's default.
DEFAULTS: dict[str, Any] = asdict_shallow(Settings())
