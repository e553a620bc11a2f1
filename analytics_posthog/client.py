"""``Client``: Segment's client, delivering to PostHog (and, while migrating, to Segment).

The constructor and every call method keep segment-analytics-python's
parameters, order and defaults, so code written against Segment runs
unchanged; new parameters come after Segment's.
"""

from __future__ import annotations

import atexit
import logging
import time
import weakref
from datetime import datetime
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import posthog
from segment.analytics import Client as SegmentClient

from analytics_posthog import message, posthog_leg, segment_leg
from analytics_posthog.config import NO_KEY_MESSAGE, POSTHOG_MISSING_MESSAGE, resolve_keys
from analytics_posthog.dispatcher import Dispatcher
from analytics_posthog.drops import Drops
from analytics_posthog.errors import ClientClosed, DeliveryError, ExitTimeout, QueueFull
from analytics_posthog.forks import GATE, reset_in_child
from analytics_posthog.mapping import DEFAULT_GROUP_TYPE
from analytics_posthog.message import Message
from analytics_posthog.segment_internals import require
from analytics_posthog.stats import DeliveryStats
from analytics_posthog.visitor import current as current_request

Leg = Union[posthog_leg.PostHogLeg, segment_leg.SegmentLeg]
OnError = Callable[[Exception, Any], None]
Result = Tuple[bool, Message]

#: How many messages a leg may have waiting before it counts as backed up.
LEG_WINDOW = 1000

class Client(object):
    class DefaultConfig(SegmentClient.DefaultConfig):
        posthog_api_key: Optional[str] = None
        posthog_host: Optional[str] = None
        group_type = DEFAULT_GROUP_TYPE
        posthog_client: Optional[posthog.Client] = None
        exit_timeout = 5.0

    log = logging.getLogger("analytics_posthog")

    def __init__(
        self,
        write_key: Optional[str] = DefaultConfig.write_key,
        host: Optional[str] = DefaultConfig.host,
        debug: bool = DefaultConfig.debug,
        max_queue_size: int = DefaultConfig.max_queue_size,
        send: bool = DefaultConfig.send,
        on_error: Optional[OnError] = DefaultConfig.on_error,
        gzip: bool = DefaultConfig.gzip,
        max_retries: int = DefaultConfig.max_retries,
        sync_mode: bool = DefaultConfig.sync_mode,
        timeout: float = DefaultConfig.timeout,
        proxies: Optional[dict] = DefaultConfig.proxies,
        thread: int = DefaultConfig.thread,
        upload_size: int = DefaultConfig.upload_size,
        upload_interval: float = DefaultConfig.upload_interval,
        log_handler: Optional[logging.Handler] = DefaultConfig.log_handler,
        oauth_client_id: Optional[str] = DefaultConfig.oauth_client_id,
        oauth_client_key: Optional[str] = DefaultConfig.oauth_client_key,
        oauth_key_id: Optional[str] = DefaultConfig.oauth_key_id,
        oauth_auth_server: str = DefaultConfig.oauth_auth_server,
        oauth_scope: str = DefaultConfig.oauth_scope,
        max_total_backoff_duration: float = DefaultConfig.max_total_backoff_duration,
        max_rate_limit_duration: float = DefaultConfig.max_rate_limit_duration,
        posthog_api_key: Optional[str] = DefaultConfig.posthog_api_key,
        posthog_host: Optional[str] = DefaultConfig.posthog_host,
        group_type: str = DefaultConfig.group_type,
        posthog_client: Optional[posthog.Client] = DefaultConfig.posthog_client,
        exit_timeout: float = DefaultConfig.exit_timeout,
    ) -> None:
        if write_key is not None:
            require("write_key", write_key, str)
        if max_total_backoff_duration is None or max_total_backoff_duration < 0:
            raise ValueError("max_total_backoff_duration must be a non-negative number")
        if max_rate_limit_duration is None or max_rate_limit_duration < 0:
            raise ValueError("max_rate_limit_duration must be a non-negative number")

        keys = resolve_keys(write_key, posthog_api_key, posthog_host)
        if send and not (keys.any or posthog_client is not None):
            raise AssertionError(NO_KEY_MESSAGE)

        self.send = send
        self.sync_mode = sync_mode
        self.debug = debug
        self.on_error = on_error
        self.host = host
        self.gzip = gzip
        self.timeout = timeout
        self.proxies = proxies
        self.group_type = group_type
        self.write_key = keys.segment_write_key
        self.posthog_api_key = keys.posthog_api_key
        self.posthog_host = keys.posthog_host

        if log_handler:
            self.log.addHandler(log_handler)
            logging.getLogger("posthog").addHandler(log_handler)
        if debug:
            self.log.setLevel(logging.DEBUG)
            if not log_handler:
                self.log.addHandler(logging.StreamHandler())

        self.exit_timeout = exit_timeout
        self.legs: List[Leg] = []
        if not send:
            return
        if posthog_client is not None or keys.posthog_api_key:
            client = posthog_client or posthog_leg.build_client(
                keys.posthog_api_key or "",
                keys.posthog_host,
                debug=debug,
                max_queue_size=max_queue_size,
                send=send,
                on_error=self._leg_failed("posthog"),
                gzip=gzip,
                max_retries=max_retries,
                sync_mode=sync_mode,
                timeout=timeout,
                thread=thread,
                upload_size=upload_size,
                upload_interval=upload_interval,
            )
            self.legs.append(
                posthog_leg.PostHogLeg(client, group_type, self._retried("posthog"), owned=posthog_client is None)
            )
        else:
            self.log.warning(POSTHOG_MISSING_MESSAGE)
        if keys.segment_write_key:
            segment_settings = dict(
                host=host,
                debug=debug,
                max_queue_size=max_queue_size,
                send=send,
                on_error=self._leg_failed("segment"),
                gzip=gzip,
                max_retries=max_retries,
                sync_mode=sync_mode,
                timeout=timeout,
                proxies=proxies,
                thread=thread,
                upload_size=upload_size,
                upload_interval=upload_interval,
                log_handler=log_handler,
                oauth_client_id=oauth_client_id,
                oauth_client_key=oauth_client_key,
                oauth_key_id=oauth_key_id,
                oauth_auth_server=oauth_auth_server,
                oauth_scope=oauth_scope,
                max_total_backoff_duration=max_total_backoff_duration,
                max_rate_limit_duration=max_rate_limit_duration,
            )
            segment_key = keys.segment_write_key
            self.legs.append(
                segment_leg.SegmentLeg(lambda: SegmentClient(segment_key, **segment_settings), self._retried("segment"))
            )
        self._segment = next((leg for leg in self.legs if isinstance(leg, segment_leg.SegmentLeg)), None)
        self._stats = DeliveryStats(leg.name for leg in self.legs)
        self._drops = Drops(self._report, self.log, max_queue_size)
        self._closed = False
        self._dispatcher = Dispatcher(self._deliver, max_queue_size, self._legs_ready, self._drops.report_turned_away)
        reset_in_child(self._reset_in_child)
        if not sync_mode:
            self._exit_hook = _exit_hook(self)
            atexit.register(self._exit_hook)

    def identify(
        self,
        user_id: Any = None,
        traits: Optional[dict] = None,
        context: Optional[dict] = None,
        timestamp: Optional[datetime] = None,
        anonymous_id: Any = None,
        integrations: Optional[dict] = None,
        message_id: Any = None,
    ) -> Result:
        if (request := current_request()) is not None:
            return self._enqueue(request.apply(lambda u, a, c: message.identify(u, traits, c, timestamp, a, integrations, message_id), user_id, anonymous_id, context))
        return self._enqueue(message.identify(user_id, traits, context, timestamp, anonymous_id, integrations, message_id))

    def track(
        self,
        user_id: Any = None,
        event: Optional[str] = None,
        properties: Optional[dict] = None,
        context: Optional[dict] = None,
        timestamp: Optional[datetime] = None,
        anonymous_id: Any = None,
        integrations: Optional[dict] = None,
        message_id: Any = None,
    ) -> Result:
        if (request := current_request()) is not None:
            return self._enqueue(request.apply(lambda u, a, c: message.track(u, event, properties, c, timestamp, a, integrations, message_id), user_id, anonymous_id, context))
        return self._enqueue(
            message.track(user_id, event, properties, context, timestamp, anonymous_id, integrations, message_id)
        )

    def alias(
        self,
        previous_id: Any = None,
        user_id: Any = None,
        context: Optional[dict] = None,
        timestamp: Optional[datetime] = None,
        integrations: Optional[dict] = None,
        message_id: Any = None,
    ) -> Result:
        if (request := current_request()) is not None:
            return self._enqueue(request.apply(lambda _u, _a, c: message.alias(previous_id, user_id, c, timestamp, integrations, message_id), None, None, context, ids=False))
        return self._enqueue(message.alias(previous_id, user_id, context, timestamp, integrations, message_id))

    def group(
        self,
        user_id: Any = None,
        group_id: Any = None,
        traits: Optional[dict] = None,
        context: Optional[dict] = None,
        timestamp: Optional[datetime] = None,
        anonymous_id: Any = None,
        integrations: Optional[dict] = None,
        message_id: Any = None,
    ) -> Result:
        if (request := current_request()) is not None:
            return self._enqueue(request.apply(lambda u, a, c: message.group(u, group_id, traits, c, timestamp, a, integrations, message_id), user_id, anonymous_id, context))
        return self._enqueue(
            message.group(user_id, group_id, traits, context, timestamp, anonymous_id, integrations, message_id)
        )

    def page(
        self,
        user_id: Any = None,
        category: Optional[str] = None,
        name: Optional[str] = None,
        properties: Optional[dict] = None,
        context: Optional[dict] = None,
        timestamp: Optional[datetime] = None,
        anonymous_id: Any = None,
        integrations: Optional[dict] = None,
        message_id: Any = None,
    ) -> Result:
        if (request := current_request()) is not None:
            return self._enqueue(request.apply(lambda u, a, c: message.page(u, category, name, properties, c, timestamp, a, integrations, message_id), user_id, anonymous_id, context))
        return self._enqueue(
            message.page(user_id, category, name, properties, context, timestamp, anonymous_id, integrations, message_id)
        )

    def screen(
        self,
        user_id: Any = None,
        category: Optional[str] = None,
        name: Optional[str] = None,
        properties: Optional[dict] = None,
        context: Optional[dict] = None,
        timestamp: Optional[datetime] = None,
        anonymous_id: Any = None,
        integrations: Optional[dict] = None,
        message_id: Any = None,
    ) -> Result:
        if (request := current_request()) is not None:
            return self._enqueue(request.apply(lambda u, a, c: message.screen(u, category, name, properties, c, timestamp, a, integrations, message_id), user_id, anonymous_id, context))
        return self._enqueue(
            message.screen(user_id, category, name, properties, context, timestamp, anonymous_id, integrations, message_id)
        )

    def _enqueue(self, msg: Message) -> Result:
        self.log.debug("queueing: %s", msg)
        if not self.send:
            return True, msg
        if not self._closed:
            if self._segment is not None and message.near_limit(msg):
                self._segment.check_size_of(msg)
            if self.sync_mode:
                delivered = self._deliver(msg)
                for leg in self.legs:
                    leg.flush(None)
                return delivered, msg
            if self._dispatcher.put(msg):
                return True, msg
        if self._closed:
            self._dropped([leg.name for leg in self.legs], [msg], ClientClosed("the client was shut down (join() or shutdown())"))
        else:
            self._turn_away(msg)
        return False, msg

    def _turn_away(self, msg: Message) -> None:
        """Our queue is full: ``msg`` is counted now, reported by the dispatcher's thread."""
        for leg in self.legs:
            self._stats.add(leg.name, "dropped")
        self._drops.turn_away(msg)
        self._dispatcher.nudge()

    def _deliver(self, msg: Message) -> bool:
        """Give ``msg`` to every leg; one leg's failure never stops the other.

        On the dispatcher's thread, the legs' library code runs inside the
        fork gate (``forks.GATE``), so no fork lands while it holds a lock;
        reporting a failure (the app's ``on_error``) runs outside it. In sync
        mode the caller's thread delivers, over HTTP, and is not gated: a fork
        would wait for the request.
        """
        results: List[Tuple[Leg, bool, Optional[Exception]]] = []
        gated = not self.sync_mode
        if gated:
            GATE.enter()
        try:
            for leg in self.legs:
                try:
                    # A full leg queue turns the message away here, once, rather
                    # than in posthog, which logs a line for each one.
                    results.append((leg, (self.sync_mode or leg.has_room) and leg.send(msg), None))
                except Exception as error:
                    results.append((leg, False, error))
        finally:
            if gated:
                GATE.leave()
        delivered = True
        for leg, accepted, error in results:
            if error is not None:
                self.log.error("%s leg failed to deliver %s: %s", leg.name, msg["type"], error)
                self._stats.add(leg.name, "failed")
                self._report(error, [msg])
                delivered = False
                continue
            if accepted:
                self._stats.add(leg.name, "accepted")
                continue
            delivered = False
            if self.sync_mode:
                failure = DeliveryError("the %s leg did not deliver a %s message (its log says why)" % (leg.name, msg["type"]))
                self.log.error("%s", failure)
                self._stats.add(leg.name, "failed")
                self._report(failure, [msg])
            else:
                self._dropped([leg.name], [msg], QueueFull("the %s leg's queue is full" % leg.name))
        return delivered

    def _legs_ready(self, urgent: bool) -> bool:
        """Some leg can take more: hand over. A leg that is down must never hold
        back a healthy one, so only when every leg has LEG_WINDOW messages
        waiting does the backlog stay in our own (smaller) queue. A flush
        (``urgent``) hands over whatever some leg has room for; while none
        has, messages wait here (at exit, until the deadline counts them)."""
        if urgent:
            return any(leg.has_room for leg in self.legs)
        return any(leg.pending < LEG_WINDOW for leg in self.legs)

    def _retried(self, leg: str) -> Callable[[], None]:
        return lambda: self._stats.add(leg, "retried")

    def _leg_failed(self, leg: str) -> OnError:
        def failed(error: Exception, batch: Any) -> None:
            self._stats.add(leg, "failed", len(batch) if isinstance(batch, list) else 1)
            self._report(error, batch)

        return failed

    def _dropped(self, legs: List[str], msgs: List[Any], error: DeliveryError) -> None:
        """Count, report and log messages never handed over."""
        for leg in legs:
            self._stats.add(leg, "dropped", len(msgs))
        self._drops.tell(error, msgs)

    def _report(self, error: Exception, batch: Any) -> None:
        """Tell ``on_error``, never letting its own failure escape into a worker thread."""
        if self.on_error is None:
            return
        try:
            self.on_error(error, batch)
        except Exception:
            self.log.exception("on_error raised")

    def stats(self) -> Dict[str, Dict[str, int]]:
        """Per leg (``posthog``, ``segment``): queued, delivered, retried, dropped, failed."""
        if not self.legs:
            return {}
        return self._stats.snapshot(self._dispatcher.pending, {leg.name: leg.pending for leg in self.legs})

    def get_posthog_client(self) -> Optional[posthog.Client]:
        """The ``posthog.Client`` this client delivers through (the app's own
        ``posthog_client`` when one was handed in), for feature flags,
        ``capture_exception`` and the rest of posthog's API with the same
        settings and threads; ``None`` when PostHog is not configured
        (Segment only, or ``send=False``)."""
        for leg in self.legs:
            if isinstance(leg, posthog_leg.PostHogLeg):
                return leg.client
        return None

    def _reset_in_child(self) -> None:
        self._stats = DeliveryStats(leg.name for leg in self.legs)
        self._drops.reset()

    def flush(self) -> None:
        """Block until every queued message has been delivered (or given up on)."""
        if not self.legs:
            return
        self._dispatcher.flush()
        self._drops.report_turned_away()
        for leg in self.legs:
            leg.flush(None)

    def join(self) -> None:
        """Deliver what is queued, then end the background threads.

        As in Segment, the client is done with after this. Its exit handler
        goes too (the posthog client we built has none: ours does its work),
        so a client made for one job is freed once the app drops it. An app's
        own ``posthog_client`` is flushed, not shut down: the app still uses it.
        """
        if not self.legs:
            return
        self._closed = True
        self._dispatcher.stop()
        self._drops.report_turned_away()
        for leg in self.legs:
            leg.join()
        if not self.sync_mode:
            atexit.unregister(self._exit_hook)

    def shutdown(self) -> None:
        """Flush all messages and cleanly shut down the client."""
        self.flush()
        self.join()

    def _at_exit(self) -> None:
        """Deliver what is still queued when the interpreter exits, within ``exit_timeout``;
        count, report and log whatever could not be (``docs/lifecycle.md``)."""
        deadline = time.monotonic() + self.exit_timeout
        self._dispatcher.flush(self.exit_timeout)
        self._drops.report_turned_away()
        left = self._dispatcher.discard()
        if left:
            self._dropped([leg.name for leg in self.legs], left, ExitTimeout("exit came before delivery"))
        for leg in self.legs:
            remaining = deadline - time.monotonic()
            if remaining > 0:
                leg.flush(remaining)
        for leg in self.legs:
            left = leg.abandon()
            if left:
                # Taken back from the leg: dropped, no longer accepted.
                self._stats.add(leg.name, "accepted", -len(left))
                self._dropped([leg.name], left, ExitTimeout("exit came before the %s leg delivered" % leg.name))
            if leg.pending:
                self.log.warning("%d message(s) were still in flight to %s at exit; their delivery is unknown", leg.pending, leg.name)
        self._drops.log(force=True)


def _exit_hook(client: Client) -> Callable[[], None]:
    """``client._at_exit`` through a weak reference: the exit handler list must
    not keep a client alive that the app has dropped."""
    ref = weakref.ref(client)

    def at_exit() -> None:
        live = ref()
        if live is not None:
            live._at_exit()

    return at_exit
