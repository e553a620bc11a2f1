"""Segment's Python API, delivered to PostHog.

``import analytics_posthog as analytics`` in place of
``import segment.analytics as analytics``: the settings and functions below
are Segment's, plus the PostHog ones at the end of the settings.
``install_as_segment()`` makes the Segment import names resolve here instead.
"""

from __future__ import annotations

from typing import Any, Optional

from analytics_posthog.client import Client
from analytics_posthog.forks import fork_safe_lock
from analytics_posthog.takeover import SEGMENT_SUBMODULES
from analytics_posthog.takeover import install_as_segment as install_as_segment
from analytics_posthog.version import VERSION

__version__ = VERSION
# ``version`` names Segment's submodule here, as in ``segment.analytics``
# (see ``__getattr__``); ours stays importable as ``analytics_posthog.version``.
globals().pop("version", None)

"""Settings."""
write_key = Client.DefaultConfig.write_key
host = Client.DefaultConfig.host
on_error = Client.DefaultConfig.on_error
debug = Client.DefaultConfig.debug
log_handler = Client.DefaultConfig.log_handler
send = Client.DefaultConfig.send
sync_mode = Client.DefaultConfig.sync_mode
max_queue_size = Client.DefaultConfig.max_queue_size
gzip = Client.DefaultConfig.gzip
timeout = Client.DefaultConfig.timeout
max_retries = Client.DefaultConfig.max_retries

"""Oauth Settings."""
oauth_client_id = Client.DefaultConfig.oauth_client_id
oauth_client_key = Client.DefaultConfig.oauth_client_key
oauth_key_id = Client.DefaultConfig.oauth_key_id
oauth_auth_server = Client.DefaultConfig.oauth_auth_server
oauth_scope = Client.DefaultConfig.oauth_scope

"""PostHog settings."""
posthog_api_key = Client.DefaultConfig.posthog_api_key
posthog_host = Client.DefaultConfig.posthog_host
group_type = Client.DefaultConfig.group_type
posthog_client = Client.DefaultConfig.posthog_client
exit_timeout = Client.DefaultConfig.exit_timeout

default_client: Optional[Client] = None
_default_client_lock = fork_safe_lock()


def track(*args: Any, **kwargs: Any) -> Any:
    """Send a track call."""
    return _proxy("track", *args, **kwargs)


def identify(*args: Any, **kwargs: Any) -> Any:
    """Send a identify call."""
    return _proxy("identify", *args, **kwargs)


def group(*args: Any, **kwargs: Any) -> Any:
    """Send a group call."""
    return _proxy("group", *args, **kwargs)


def alias(*args: Any, **kwargs: Any) -> Any:
    """Send a alias call."""
    return _proxy("alias", *args, **kwargs)


def page(*args: Any, **kwargs: Any) -> Any:
    """Send a page call."""
    return _proxy("page", *args, **kwargs)


def screen(*args: Any, **kwargs: Any) -> Any:
    """Send a screen call."""
    return _proxy("screen", *args, **kwargs)


def flush() -> None:
    """Tell the client to flush."""
    _proxy("flush")


def join() -> None:
    """Block program until the client clears the queue"""
    _proxy("join")


def shutdown() -> None:
    """Flush all messages and cleanly shutdown the client"""
    _proxy("flush")
    _proxy("join")


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


def _proxy(method: str, *args: Any, **kwargs: Any) -> Any:
    """Create the default client from the settings on first use (once, even
    when many threads make their first call together) and call it."""
    global default_client
    client = default_client
    if client is None:
        with _default_client_lock:
            client = default_client
            if client is None:
                client = default_client = Client(
                    write_key,
                    host=host,
                    debug=debug,
                    max_queue_size=max_queue_size,
                    send=send,
                    on_error=on_error,
                    gzip=gzip,
                    max_retries=max_retries,
                    sync_mode=sync_mode,
                    timeout=timeout,
                    oauth_client_id=oauth_client_id,
                    oauth_client_key=oauth_client_key,
                    oauth_key_id=oauth_key_id,
                    oauth_auth_server=oauth_auth_server,
                    oauth_scope=oauth_scope,
                    log_handler=log_handler,
                    posthog_api_key=posthog_api_key,
                    posthog_host=posthog_host,
                    group_type=group_type,
                    posthog_client=posthog_client,
                    exit_timeout=exit_timeout,
                )
    return getattr(client, method)(*args, **kwargs)
