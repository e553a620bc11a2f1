"""``Client``: Segment's client, delivering to PostHog (and, while migrating, to Segment).

The constructor and every call method keep segment-analytics-python's
parameters, order and defaults, so code written against Segment runs
unchanged; new parameters come after Segment's. A call builds and checks its
message here, on the caller's thread; everything after that (the legs,
counting, reporting, exit) is ``delivery.Delivery``'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import posthog
from segment.analytics import Client as SegmentClient

from analytics_posthog._context.visitor import current as current_request
from analytics_posthog._delivery.delivery import Delivery
from analytics_posthog._keys import NO_KEY_MESSAGE, check_hosts, key_warning, resolve_keys
from analytics_posthog._message import build as message
from analytics_posthog._message.build import Message
from analytics_posthog.settings import DEFAULTS, Settings

OnError = Callable[[Exception, Any], None]
Result = tuple[bool, Message]

POSTHOG_LOG = logging.getLogger("posthog")
SEGMENT_LOG = logging.getLogger("segment")


class DebugHandler(logging.StreamHandler):
    """Prints ``debug=True``'s lines (to stderr) that no handler of the app's prints.

    Segment's client adds a handler of its own per client, so five clients
    print every line five times, and it prints it again through the app's
    own logging once that is set up. This one is shared by every client and
    steps aside for a line that some other handler on its way to the root
    logger (the app's ``basicConfig()``, say) already prints.
    """

    def emit(self, record: logging.LogRecord) -> None:
        if not _handled_elsewhere(record.name, self):
            super().emit(record)


def _handled_elsewhere(name: str, handler: logging.Handler) -> bool:
    logger: logging.Logger | None = logging.getLogger(name)
    while logger is not None:
        if any(other is not handler for other in logger.handlers):
            return True
        if not logger.propagate:
            return False
        logger = logger.parent
    return False


#: The one handler ``debug=True`` adds, however many clients ask for it.
DEBUG_HANDLER = DebugHandler()


def show_debug_lines(handler: logging.Handler | None) -> None:
    """Our, posthog's and Segment's debug lines shown, through ``handler`` when
    given (once per logger: ``addHandler`` adds a handler only once). The
    root logger is left as the app set it."""
    for logger in (Client.log, POSTHOG_LOG, SEGMENT_LOG):
        logger.setLevel(logging.DEBUG)
        if handler is not None:
            logger.addHandler(handler)


#: Configuration warnings already given in this process: each is said once.
_WARNED: set[str] = set()


class Client:
    class DefaultConfig(SegmentClient.DefaultConfig):
        posthog_api_key: str | None = DEFAULTS["posthog_api_key"]
        posthog_host: str | None = DEFAULTS["posthog_host"]
        group_type: str = DEFAULTS["group_type"]
        posthog_client: posthog.Client | None = DEFAULTS["posthog_client"]
        exit_timeout: float = DEFAULTS["exit_timeout"]
        spool_dir: str | None = DEFAULTS["spool_dir"]
        spool_max_bytes: int = DEFAULTS["spool_max_bytes"]

    log = logging.getLogger("analytics_posthog")

    def __init__(
        self,
        write_key: str | None = DefaultConfig.write_key,
        host: str | None = DefaultConfig.host,
        debug: bool = DefaultConfig.debug,
        max_queue_size: int = DefaultConfig.max_queue_size,
        send: bool = DefaultConfig.send,
        on_error: OnError | None = DefaultConfig.on_error,
        gzip: bool = DefaultConfig.gzip,
        max_retries: int = DefaultConfig.max_retries,
        sync_mode: bool = DefaultConfig.sync_mode,
        timeout: float = DefaultConfig.timeout,
        proxies: dict | None = DefaultConfig.proxies,
        thread: int = DefaultConfig.thread,
        upload_size: int = DefaultConfig.upload_size,
        upload_interval: float = DefaultConfig.upload_interval,
        log_handler: logging.Handler | None = DefaultConfig.log_handler,
        oauth_client_id: str | None = DefaultConfig.oauth_client_id,
        oauth_client_key: str | None = DefaultConfig.oauth_client_key,
        oauth_key_id: str | None = DefaultConfig.oauth_key_id,
        oauth_auth_server: str = DefaultConfig.oauth_auth_server,
        oauth_scope: str = DefaultConfig.oauth_scope,
        max_total_backoff_duration: float = DefaultConfig.max_total_backoff_duration,
        max_rate_limit_duration: float = DefaultConfig.max_rate_limit_duration,
        posthog_api_key: str | None = DefaultConfig.posthog_api_key,
        posthog_host: str | None = DefaultConfig.posthog_host,
        group_type: str = DefaultConfig.group_type,
        posthog_client: posthog.Client | None = DefaultConfig.posthog_client,
        exit_timeout: float = DefaultConfig.exit_timeout,
        spool_dir: str | None = DefaultConfig.spool_dir,
        spool_max_bytes: int = DefaultConfig.spool_max_bytes,
    ) -> None:
        """The parameters are ``settings.Settings``, spelled out so that
        ``inspect.signature`` and editors show Segment's (a test keeps the two
        the same)."""
        settings = self.settings = Settings.from_arguments(locals())
        keys = resolve_keys(write_key, posthog_api_key, posthog_host)
        if send and not (keys.any or posthog_client is not None):
            raise AssertionError(NO_KEY_MESSAGE)
        check_hosts(keys.posthog_host, host)
        warning = key_warning(keys.posthog_api_key)
        if warning and posthog_client is None and warning not in _WARNED:
            _WARNED.add(warning)
            self.log.warning(warning)

        self.send = send
        self.sync_mode = sync_mode
        self.debug = debug
        self.host = host
        self.gzip = gzip
        self.timeout = timeout
        self.proxies = proxies
        self.group_type = group_type
        self.exit_timeout = exit_timeout
        self.write_key = keys.segment_write_key
        self.posthog_api_key = keys.posthog_api_key
        self.posthog_host = keys.posthog_host

        if log_handler:
            self.log.addHandler(log_handler)
            POSTHOG_LOG.addHandler(log_handler)

        #: Who delivers what the calls build; ``None`` with ``send=False``.
        self.delivery: Delivery | None = Delivery(settings, keys) if send else None
        if debug:
            # After the posthog client is built: posthog sets its logger's level.
            show_debug_lines(None if log_handler else DEBUG_HANDLER)
        self._on_error = on_error

    @property
    def on_error(self) -> OnError | None:
        return self._on_error

    @on_error.setter
    def on_error(self, on_error: OnError | None) -> None:
        """Segment's attribute: assigning it changes who hears about failures from now on."""
        self._on_error = on_error
        if self.delivery is not None:
            self.delivery.on_error = on_error

    def identify(
        self,
        user_id: Any = None,
        traits: dict | None = None,
        context: dict | None = None,
        timestamp: datetime | None = None,
        anonymous_id: Any = None,
        integrations: dict | None = None,
        message_id: Any = None,
    ) -> Result:
        if (request := current_request()) is not None:
            return self._enqueue(
                request.apply(
                    lambda u, a, c: message.identify(
                        u, traits, c, timestamp, a, integrations, message_id
                    ),
                    user_id,
                    anonymous_id,
                    context,
                )
            )
        return self._enqueue(
            message.identify(
                user_id, traits, context, timestamp, anonymous_id, integrations, message_id
            )
        )

    def track(
        self,
        user_id: Any = None,
        event: str | None = None,
        properties: dict | None = None,
        context: dict | None = None,
        timestamp: datetime | None = None,
        anonymous_id: Any = None,
        integrations: dict | None = None,
        message_id: Any = None,
    ) -> Result:
        if (request := current_request()) is not None:
            return self._enqueue(
                request.apply(
                    lambda u, a, c: message.track(
                        u, event, properties, c, timestamp, a, integrations, message_id
                    ),
                    user_id,
                    anonymous_id,
                    context,
                )
            )
        return self._enqueue(
            message.track(
                user_id,
                event,
                properties,
                context,
                timestamp,
                anonymous_id,
                integrations,
                message_id,
            )
        )

    def alias(
        self,
        previous_id: Any = None,
        user_id: Any = None,
        context: dict | None = None,
        timestamp: datetime | None = None,
        integrations: dict | None = None,
        message_id: Any = None,
    ) -> Result:
        if (request := current_request()) is not None:
            return self._enqueue(
                request.apply(
                    lambda _u, _a, c: message.alias(
                        previous_id, user_id, c, timestamp, integrations, message_id
                    ),
                    None,
                    None,
                    context,
                    ids=False,
                )
            )
        return self._enqueue(
            message.alias(previous_id, user_id, context, timestamp, integrations, message_id)
        )

    def group(
        self,
        user_id: Any = None,
        group_id: Any = None,
        traits: dict | None = None,
        context: dict | None = None,
        timestamp: datetime | None = None,
        anonymous_id: Any = None,
        integrations: dict | None = None,
        message_id: Any = None,
    ) -> Result:
        if (request := current_request()) is not None:
            return self._enqueue(
                request.apply(
                    lambda u, a, c: message.group(
                        u, group_id, traits, c, timestamp, a, integrations, message_id
                    ),
                    user_id,
                    anonymous_id,
                    context,
                )
            )
        return self._enqueue(
            message.group(
                user_id,
                group_id,
                traits,
                context,
                timestamp,
                anonymous_id,
                integrations,
                message_id,
            )
        )

    def page(
        self,
        user_id: Any = None,
        category: str | None = None,
        name: str | None = None,
        properties: dict | None = None,
        context: dict | None = None,
        timestamp: datetime | None = None,
        anonymous_id: Any = None,
        integrations: dict | None = None,
        message_id: Any = None,
    ) -> Result:
        if (request := current_request()) is not None:
            return self._enqueue(
                request.apply(
                    lambda u, a, c: message.page(
                        u, category, name, properties, c, timestamp, a, integrations, message_id
                    ),
                    user_id,
                    anonymous_id,
                    context,
                )
            )
        return self._enqueue(
            message.page(
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
        )

    def screen(
        self,
        user_id: Any = None,
        category: str | None = None,
        name: str | None = None,
        properties: dict | None = None,
        context: dict | None = None,
        timestamp: datetime | None = None,
        anonymous_id: Any = None,
        integrations: dict | None = None,
        message_id: Any = None,
    ) -> Result:
        if (request := current_request()) is not None:
            return self._enqueue(
                request.apply(
                    lambda u, a, c: message.screen(
                        u, category, name, properties, c, timestamp, a, integrations, message_id
                    ),
                    user_id,
                    anonymous_id,
                    context,
                )
            )
        return self._enqueue(
            message.screen(
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
        )

    def _enqueue(self, msg: Message) -> Result:
        self.log.debug("queueing: %s", msg)
        if not self.send or self.delivery is None:
            return True, msg
        return self.delivery.accept(msg), msg

    def stats(self) -> dict[str, dict[str, int]]:
        """Per leg (``posthog``, ``segment``): queued, delivered, retried, dropped, failed."""
        return self.delivery.stats() if self.delivery is not None else {}

    def get_posthog_client(self) -> posthog.Client | None:
        """The ``posthog.Client`` this client delivers through (the app's own
        ``posthog_client`` when one was handed in), for feature flags,
        ``capture_exception`` and the rest of posthog's API with the same
        settings and threads; ``None`` when PostHog is not configured
        (Segment only, or ``send=False``)."""
        return self.delivery.posthog_client if self.delivery is not None else None

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every queued message has been delivered (or given up
        on), for at most ``timeout`` seconds (``None``: no limit, as Segment's
        ``flush()``); whether nothing is left queued."""
        if self.delivery is None:
            return True
        return self.delivery.flush(timeout)

    def join(self) -> None:
        """Deliver what is queued, then end the background threads.

        As in Segment, the client is done with after this: later calls are
        refused, counted and reported. An app's own ``posthog_client`` is
        flushed, not shut down: the app still uses it.
        """
        if self.delivery is not None:
            self.delivery.join()

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush all messages and cleanly shut down the client, within
        ``timeout`` seconds (``None``: no limit, as Segment's); whether
        everything was delivered. Past the deadline, what is left is taken
        back, counted and reported (``stats()``, ``on_error``, the log)."""
        if self.delivery is None:
            return True
        return self.delivery.shutdown(timeout)
