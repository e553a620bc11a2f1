"""Segment's Python API, delivered to PostHog.

``import analytics_posthog as analytics`` in place of
``import segment.analytics as analytics``: the settings and functions below
are Segment's, plus the PostHog ones at the end of the settings.
``install_as_segment()`` makes the Segment import names resolve here instead.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from analytics_posthog._delivery.forks import fork_safe_lock
from analytics_posthog._patches.segment import SUBMODULES as SEGMENT_SUBMODULES
from analytics_posthog._takeover import install_as_segment as install_as_segment
from analytics_posthog.client import Client, Result
from analytics_posthog.settings import DEFAULTS, NAMES, Settings
from analytics_posthog.version import VERSION

__all__ = [
    # Segment's module API
    "Client",
    "__version__",
    "default_client",
    "write_key",
    "host",
    "on_error",
    "debug",
    "log_handler",
    "send",
    "sync_mode",
    "max_queue_size",
    "gzip",
    "timeout",
    "max_retries",
    "proxies",
    "thread",
    "upload_size",
    "upload_interval",
    "max_total_backoff_duration",
    "max_rate_limit_duration",
    "oauth_client_id",
    "oauth_client_key",
    "oauth_key_id",
    "oauth_auth_server",
    "oauth_scope",
    "track",
    "identify",
    "group",
    "alias",
    "page",
    "screen",
    "flush",
    "join",
    "shutdown",
    # ours
    "posthog_api_key",
    "posthog_host",
    "group_type",
    "posthog_client",
    "exit_timeout",
    "spool_dir",
    "spool_max_bytes",
    "configure",
    "install_as_segment",
    "get_posthog_client",
]

__version__ = VERSION
# ``version`` names Segment's submodule here, as in ``segment.analytics``
# (see ``__getattr__``); ours stays importable as ``analytics_posthog.version``.
globals().pop("version", None)

"""Settings (``settings.Settings``): Segment's, then ours. Assign them, or
call ``configure(...)``, before the first call creates the default client."""
write_key = DEFAULTS["write_key"]
host = DEFAULTS["host"]
debug = DEFAULTS["debug"]
max_queue_size = DEFAULTS["max_queue_size"]
send = DEFAULTS["send"]
on_error = DEFAULTS["on_error"]
gzip = DEFAULTS["gzip"]
max_retries = DEFAULTS["max_retries"]
sync_mode = DEFAULTS["sync_mode"]
timeout = DEFAULTS["timeout"]
proxies = DEFAULTS["proxies"]
thread = DEFAULTS["thread"]
upload_size = DEFAULTS["upload_size"]
upload_interval = DEFAULTS["upload_interval"]
log_handler = DEFAULTS["log_handler"]
oauth_client_id = DEFAULTS["oauth_client_id"]
oauth_client_key = DEFAULTS["oauth_client_key"]
oauth_key_id = DEFAULTS["oauth_key_id"]
oauth_auth_server = DEFAULTS["oauth_auth_server"]
oauth_scope = DEFAULTS["oauth_scope"]
max_total_backoff_duration = DEFAULTS["max_total_backoff_duration"]
max_rate_limit_duration = DEFAULTS["max_rate_limit_duration"]
posthog_api_key = DEFAULTS["posthog_api_key"]
posthog_host = DEFAULTS["posthog_host"]
group_type = DEFAULTS["group_type"]
posthog_client = DEFAULTS["posthog_client"]
exit_timeout = DEFAULTS["exit_timeout"]
spool_dir = DEFAULTS["spool_dir"]
spool_max_bytes = DEFAULTS["spool_max_bytes"]

default_client: Client | None = None
#: While a test holds ``testing.capture_to(server)``: that server's URL, which
#: the default client uses for both hosts, whatever the settings say.
_redirected_to: str | None = None
_default_client_lock = fork_safe_lock()
_log = logging.getLogger("analytics_posthog")


def track(
    user_id: Any = None,
    event: str | None = None,
    properties: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    timestamp: datetime | None = None,
    anonymous_id: Any = None,
    integrations: dict[str, Any] | None = None,
    message_id: Any = None,
) -> Result:
    """Send a track call."""
    return _default().track(
        user_id, event, properties, context, timestamp, anonymous_id, integrations, message_id
    )


def identify(
    user_id: Any = None,
    traits: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    timestamp: datetime | None = None,
    anonymous_id: Any = None,
    integrations: dict[str, Any] | None = None,
    message_id: Any = None,
) -> Result:
    """Send an identify call."""
    return _default().identify(
        user_id, traits, context, timestamp, anonymous_id, integrations, message_id
    )


def group(
    user_id: Any = None,
    group_id: Any = None,
    traits: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    timestamp: datetime | None = None,
    anonymous_id: Any = None,
    integrations: dict[str, Any] | None = None,
    message_id: Any = None,
) -> Result:
    """Send a group call."""
    return _default().group(
        user_id, group_id, traits, context, timestamp, anonymous_id, integrations, message_id
    )


def alias(
    previous_id: Any = None,
    user_id: Any = None,
    context: dict[str, Any] | None = None,
    timestamp: datetime | None = None,
    integrations: dict[str, Any] | None = None,
    message_id: Any = None,
) -> Result:
    """Send an alias call."""
    return _default().alias(previous_id, user_id, context, timestamp, integrations, message_id)


def page(
    user_id: Any = None,
    category: str | None = None,
    name: str | None = None,
    properties: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    timestamp: datetime | None = None,
    anonymous_id: Any = None,
    integrations: dict[str, Any] | None = None,
    message_id: Any = None,
) -> Result:
    """Send a page call."""
    return _default().page(
        user_id,
        category,
        name,
        properties,
        context,
        timestamp,
        anonymous_id,
        integrations,
        message_id,
    )


def screen(
    user_id: Any = None,
    category: str | None = None,
    name: str | None = None,
    properties: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    timestamp: datetime | None = None,
    anonymous_id: Any = None,
    integrations: dict[str, Any] | None = None,
    message_id: Any = None,
) -> Result:
    """Send a screen call."""
    return _default().screen(
        user_id,
        category,
        name,
        properties,
        context,
        timestamp,
        anonymous_id,
        integrations,
        message_id,
    )


def flush(timeout: float | None = None) -> bool:
    """Tell the client to flush: wait for every queued message, for at most
    ``timeout`` seconds (``None``: as long as it takes, as Segment's); whether
    everything was delivered."""
    return bool(_proxy("flush", timeout))


def join() -> None:
    """Block program until the client clears the queue"""
    _proxy("join")


def shutdown(timeout: float | None = None) -> bool:
    """Flush all messages and cleanly shutdown the client, within ``timeout``
    seconds (``None``: no limit); whether everything was delivered (what was
    not is counted and reported)."""
    return bool(_proxy("shutdown", timeout))


def get_posthog_client() -> Any:
    """The default client's ``posthog.Client`` (see ``Client.get_posthog_client``)."""
    return _proxy("get_posthog_client")


def __getattr__(name: str) -> Any:
    """Segment's own submodules (``request``, ``utils``, ``consumer``...), where
    code written for ``segment.analytics`` looks for them."""
    try:
        return SEGMENT_SUBMODULES[name]
    except KeyError:
        raise AttributeError("module %r has no attribute %r" % (__name__, name)) from None


def configure(**settings: Any) -> None:
    """Set module settings by name, the one entry point for start-up code,
    the Django app and the Flask extension (assigning ``analytics.<name>``
    does the same, as in Segment).

    Unknown names raise ``TypeError``, and the values are checked as
    ``Client(...)`` checks them, so a misspelt or invalid setting fails here
    rather than at the first call. The default client is created once, from
    the settings as they are then: a change after that is logged and applies
    from the next default client (after ``shutdown()`` and
    ``analytics.default_client = None``).
    """
    unknown = sorted(set(settings) - set(NAMES))
    if unknown:
        raise TypeError(
            "analytics_posthog.configure(): unknown setting(s) %s; known: %s"
            % (", ".join(unknown), ", ".join(NAMES))
        )
    Settings(**{**_current_settings(), **settings})
    module = globals()
    client = default_client
    for name, value in settings.items():
        if client is not None and module[name] != value:
            _log.warning(
                "analytics_posthog: %s changed after the default client was created; it applies from the next default client",
                name,
            )
        module[name] = value


def _current_settings() -> dict[str, Any]:
    module = globals()
    return {name: module[name] for name in NAMES}


def _default() -> Client:
    """The default client, created from the settings on first use (once, even
    when many threads make their first call together)."""
    global default_client
    client = default_client
    if client is None:
        with _default_client_lock:
            client = default_client
            if client is None:
                settings = _current_settings()
                if _redirected_to is not None:
                    settings.update(host=_redirected_to, posthog_host=_redirected_to)
                client = default_client = Client(**settings)
    return client


def _proxy(method: str, *args: Any, **kwargs: Any) -> Any:
    """Call ``method`` of the default client."""
    return getattr(_default(), method)(*args, **kwargs)
