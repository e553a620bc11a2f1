"""``Delivery``: the legs, the dispatcher feeding them, and the account of every message.

``Client`` builds a message and hands it here; from then on this unit alone
decides what happens to it: which legs get it, on which thread, what is
counted (``stats()``), what is told to ``on_error`` and the log when it is
lost, and what happens at exit. The dispatcher and the legs report back to
this unit, never to ``Client``, so delivery can be understood and tested
without the call API (it never imports ``client``).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import posthog
from segment.analytics import Client as SegmentClient

from analytics_posthog._delivery import (
    exits,
    forks,
    posthog_leg,
    segment_leg,
    spool,
    uwsgi_master,
)
from analytics_posthog._delivery.dispatcher import Dispatcher
from analytics_posthog._delivery.drops import Drops
from analytics_posthog._delivery.forks import GATE, reset_in_child
from analytics_posthog._delivery.legs import Leg
from analytics_posthog._delivery.placeholders import PlaceholderWatch
from analytics_posthog._delivery.stats import DeliveryStats
from analytics_posthog._keys import POSTHOG_MISSING_MESSAGE, Keys
from analytics_posthog._message import build as message
from analytics_posthog._message.build import Message
from analytics_posthog._patches import posthog as posthog_internals
from analytics_posthog.errors import ClientClosed, DeliveryError, ExitTimeout, QueueFull
from analytics_posthog.settings import OnError, Settings

log = logging.getLogger("analytics_posthog")

#: How many messages a leg may have waiting before it counts as backed up.
LEG_WINDOW = 1000


class Delivery:
    """Owns the legs it builds from ``settings`` and ``keys`` (at least one:
    the caller checked there is a key or a ``posthog_client``)."""

    def __init__(self, settings: Settings, keys: Keys) -> None:
        self.on_error = settings.on_error
        self.sync_mode = settings.sync_mode
        self.exit_timeout = settings.exit_timeout
        self._settings = settings
        self._keys = keys
        self.legs: list[Leg] = []
        self._posthog: posthog_leg.PostHogLeg | None = None
        self._segment: segment_leg.SegmentLeg | None = None
        names = []
        if settings.posthog_client is not None or keys.posthog_api_key:
            posthog_leg.require_proxy_route(settings.proxies)
            names.append(posthog_leg.PostHogLeg.name)
        else:
            log.warning(POSTHOG_MISSING_MESSAGE)
        if keys.segment_write_key:
            names.append(segment_leg.SegmentLeg.name)
        self._names = names
        self._stats = DeliveryStats(names)
        self._placeholders = PlaceholderWatch()
        self._drops = Drops(self._report, log, settings.max_queue_size)
        self._closed = False
        #: When the exit routine's time runs out, once it has run.
        self._exit_deadline: float | None = None
        #: Legs whose library threads the exit routine stopped, with messages left.
        self._stopped: list[Leg] = []
        self.dispatcher = Dispatcher(
            self._deliver, settings.max_queue_size, self._legs_ready, self._tend
        )
        directory = settings.spool_dir or os.environ.get(spool.ENVIRONMENT) or None
        #: Each accepted call on disk until every leg is done with it (``spool_dir``).
        self._spool = (
            spool.Spool(directory, settings.spool_max_bytes, names, self._report)
            if directory
            else None
        )
        if self.sync_mode or not uwsgi_master.in_master():
            self._build_legs()
            self._take_over()
        reset_in_child(self._reset_in_child)
        if not self.sync_mode:
            self._exit_hook = exits.watch(self.at_exit)
        elif self._spool is not None:
            # Sync mode delivers at the call and has no exit routine; its
            # spool file, every record in it settled, goes at exit.
            atexit.register(self._finish_spool)

    def _build_legs(self) -> None:
        """The legs' library clients, built in the process that delivers: in
        uWSGI's master, not until each worker (their threads must not exist
        when uWSGI forks)."""
        settings, keys = self._settings, self._keys
        legs: list[Leg] = []
        if posthog_leg.PostHogLeg.name in self._names:
            own = settings.posthog_client
            self._posthog = posthog_leg.PostHogLeg(
                own or self._queueing_posthog_client(),
                settings.group_type,
                self._retried("posthog"),
                rebuild=None if own is not None else self._queueing_posthog_client,
                proxies=settings.proxies,
                on_failure=self._leg_failed("posthog"),
                on_settled=self._settled("posthog") if self._spool is not None else None,
            )
            legs.append(self._posthog)
        if keys.segment_write_key:
            segment_key = keys.segment_write_key
            segment_arguments = settings.segment_client_arguments(self._leg_failed("segment"))
            self._segment = segment_leg.SegmentLeg(
                lambda: SegmentClient(segment_key, **segment_arguments),
                self._retried("segment"),
                beside_posthog=self._posthog is not None,
                on_settled=self._settled("segment") if self._spool is not None else None,
            )
            legs.append(self._segment)
        self.legs = legs
        if uwsgi_master.without_threads() and not self.sync_mode:
            log.warning(
                "analytics_posthog: this uWSGI worker runs without Python threads, so no "
                "event is delivered before the worker exits; start uWSGI with --enable-threads"
            )

    def _queueing_posthog_client(self) -> posthog.Client:
        """Our posthog client; where posthog cannot queue (under eventlet), one
        that sends each event in a request of its own, on our dispatcher's
        thread, rather than one that drops them all."""
        client = self._new_posthog_client(self.sync_mode)
        if self.sync_mode or not posthog_internals.cannot_queue(client):
            return client
        log.warning(
            "analytics_posthog: posthog cannot queue events here (its log says why); "
            "the PostHog leg sends each event in a request of its own"
        )
        client.shutdown()
        return self._new_posthog_client(sync_mode=True)

    def _new_posthog_client(self, sync_mode: bool) -> posthog.Client:
        arguments = self._settings.posthog_client_arguments(self._leg_failed("posthog"))
        arguments["sync_mode"] = sync_mode
        return posthog.Client(
            self._keys.posthog_api_key or "", host=self._keys.posthog_host, **arguments
        )

    @property
    def posthog_client(self) -> posthog.Client | None:
        return self._posthog.client if self._posthog is not None else None

    def accept(self, msg: Message) -> bool:
        """Take one message built by a call: ``True`` once it is queued (in sync
        mode: delivered by every leg); ``False`` when it was not, after it was
        counted, reported and logged."""
        forks.check()
        if self._exit_deadline is not None and not self._closed and self._too_late(msg):
            return False
        if not self._closed:
            if not self._spooled(msg):
                return False
            near_limit = self._segment is not None and message.near_limit(msg)
            if self.sync_mode:
                token = message.delivering_near_limit.set(near_limit)
                try:
                    delivered = self._deliver(msg)
                finally:
                    message.delivering_near_limit.reset(token)
                for leg in self.legs:
                    leg.flush(None)
                return delivered
            if self.dispatcher.put(msg, near_limit):
                if self._exit_deadline is not None:
                    # After the exit routine nobody else will deliver it: now.
                    return self._settle(self._exit_deadline)
                return True
        if self._closed:
            self._dropped(
                [leg.name for leg in self.legs],
                [msg],
                ClientClosed("the client was shut down (join() or shutdown())"),
            )
        else:
            self._turn_away(msg)
        return False

    def _spooled(self, msg: Message) -> bool:
        """With a spool, ``msg`` on disk before the call returns; ``False``
        (counted, reported) when the spool is full. Not in uWSGI's master,
        whose held calls its workers deliver (``uwsgi_master``)."""
        if self._spool is None or uwsgi_master.in_master() or self._spool.write(msg):
            return True
        self._dropped(
            [leg.name for leg in self.legs],
            [msg],
            spool.SpoolFull(
                "the spool in %s holds spool_max_bytes (%d) already"
                % (self._spool.directory, self._spool.max_bytes)
            ),
        )
        return False

    def _unspool(self, msg: Message) -> None:
        """``msg`` will never be delivered here and was reported: off the spool."""
        if self._spool is None:
            return
        ticket = self._spool.ticket(msg)
        if ticket is not None:
            for leg in self._spool.legs_of(ticket):
                self._spool.settle_ticket(leg, ticket)

    def _too_late(self, msg: Message) -> bool:
        """A call made once the exit routine has run (a later ``atexit``
        handler, a ``__del__``) is delivered on the caller's thread within what
        is left of the exit deadline (``accept``); past it, or once a leg was
        stopped, it is counted, reported and logged here instead."""
        assert self._exit_deadline is not None
        if not self._stopped and time.monotonic() < self._exit_deadline:
            return False
        self._dropped(
            [leg.name for leg in self.legs],
            [msg],
            ExitTimeout("the call came after the exit routine had run out of time"),
        )
        return True

    def _turn_away(self, msg: Message) -> None:
        """Our queue is full: ``msg`` is counted now, reported by the dispatcher's thread."""
        for leg in self.legs:
            self._stats.add(leg.name, "dropped")
        self._unspool(msg)
        self._drops.turn_away(msg)
        self.dispatcher.nudge()

    def _deliver(self, msg: Message) -> bool:
        """Give ``msg`` to every leg; one leg's failure never stops the other.

        On the dispatcher's thread, the legs' library code runs inside the
        fork gate (``forks.GATE``), so no fork lands while it holds a lock;
        reporting a failure (the app's ``on_error``) runs outside it. In sync
        mode the caller's thread delivers, over HTTP, and is not gated: a fork
        would wait for the request.
        """
        results: list[tuple[Leg, bool, Exception | None]] = []
        if self._posthog is not None and self._placeholders.see(msg):
            self._stats.add(self._posthog.name, "placeholder")
        ticket = self._spool.ticket(msg) if self._spool is not None else None
        legs = self._legs_for(msg, ticket)
        gated = not self.sync_mode
        if gated:
            GATE.enter()
        try:
            if ticket is not None:
                assert self._spool is not None
                self._spool.hand([(leg.name, leg.key(msg)) for leg in legs], ticket)
            for leg in legs:
                try:
                    # A full leg queue turns the message away here, once, rather
                    # than in posthog, which logs a line for each one.
                    results.append((leg, (self.sync_mode or leg.has_room) and leg.send(msg), None))
                except Exception as raised:
                    results.append((leg, False, raised))
        finally:
            if gated:
                GATE.leave()
        if ticket is not None:
            assert self._spool is not None
            for leg, accepted, _ in results:
                if self.sync_mode or not accepted:
                    self._spool.settle_ticket(leg.name, ticket, leg.key(msg))
        delivered = True
        for leg, accepted, error in results:
            if error is not None:
                log.error("%s leg failed to deliver %s: %s", leg.name, msg["type"], error)
                self._stats.add(leg.name, "refused")
                self._report(error, [msg])
                delivered = False
                continue
            if accepted:
                self._stats.add(leg.name, "accepted")
                continue
            delivered = False
            if self.sync_mode:
                failure = DeliveryError(
                    "the %s leg did not deliver a %s message (its log says why)"
                    % (leg.name, msg["type"])
                )
                log.error("%s", failure)
                self._stats.add(leg.name, "refused")
                self._report(failure, [msg])
            elif leg.refusal is not None:
                self._dropped([leg.name], [msg], DeliveryError(leg.refusal))
            else:
                self._dropped([leg.name], [msg], QueueFull("the %s leg's queue is full" % leg.name))
        return delivered

    def _legs_for(self, msg: Message, ticket: spool.Ticket | None) -> list[Leg]:
        """Every leg, or for a record taken over from the spool, the legs that
        had not settled it; a leg this process lacks is reported and settled."""
        if ticket is None or not ticket[0].taken:
            return self.legs
        assert self._spool is not None
        wanted = self._spool.legs_of(ticket)
        for name in sorted(wanted - set(self._names)):
            self._spool.settle_ticket(name, ticket)
            self._drops.tell(
                DeliveryError(
                    "a spooled message for the %s leg, which this client does not have" % name
                ),
                [msg],
            )
        return [leg for leg in self.legs if leg.name in wanted]

    def _settled(self, leg: str) -> Callable[[list[str]], None]:
        spool_ = self._spool
        assert spool_ is not None
        return lambda keys: spool_.settle(leg, keys)

    def _tend(self) -> None:
        """On the dispatcher's thread, between messages: drops reported; with a
        spool, legs that hold nothing settled, and what dead processes left
        taken over and fed in."""
        self._drops.report_turned_away()
        if self._spool is None:
            return
        self._sweep(self._spool)
        self._spool.scan()
        self._feed()
        self._spool.prepare()

    def _sweep(self, spool_: spool.Spool) -> None:
        """What was handed to a leg that now holds nothing is settled."""
        for leg in self.legs:
            if not leg.pending and leg not in self._stopped:
                spool_.sweep(leg.name)

    def _finish_spool(self) -> None:
        """Delivery is over: settled what can be, and a spool file with
        nothing left in it goes."""
        if self._spool is not None:
            self._sweep(self._spool)
            self._spool.finish()

    def _take_over(self) -> None:
        """At start: a file a dead process left, if any, queued for delivery."""
        if self._spool is not None and not self.sync_mode:
            self._spool.scan(force=True)
            self._feed()

    def _feed(self) -> bool:
        """Records taken over, into our queue as far as it has room; whether
        any went in."""
        spool_ = self._spool
        if spool_ is None or not spool_.backlog_size:
            return False
        room = min(LEG_WINDOW, self._settings.max_queue_size - self.dispatcher.pending)
        fed = False
        for msg, ticket in spool_.backlog(max(room, 0)):
            if self.dispatcher.put(msg):
                fed = True
            else:
                spool_.put_back(msg, ticket)
        return fed

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
            if self._spool is not None and isinstance(batch, list):
                module = posthog_leg if leg == posthog_leg.PostHogLeg.name else segment_leg
                self._spool.settle(leg, module.batch_keys(batch))
            if isinstance(batch, list) and leg == posthog_leg.PostHogLeg.name:
                batch = posthog_leg.undelivered(error, batch)
            self._stats.add(leg, "failed", len(batch) if isinstance(batch, list) else 1)
            self._report(error, batch)

        return failed

    def _dropped(self, legs: list[str], msgs: list[Any], error: DeliveryError) -> None:
        """Count, report and log messages never handed over."""
        for leg in legs:
            self._stats.add(leg, "dropped", len(msgs))
        self._drops.tell(error, msgs)

    def _report(self, error: Exception, batch: Any) -> None:
        """Tell ``on_error``, never letting its own failure escape into a worker thread."""
        if self.on_error is None:
            return
        outer, _reporting.active = _reporting.active, True
        try:
            self.on_error(error, batch)
        except Exception:
            log.exception("on_error raised")
        finally:
            _reporting.active = outer

    def stats(self) -> dict[str, dict[str, int]]:
        """Per leg: queued, delivered, retried, dropped, failed (``stats.DeliveryStats``)."""
        return self._stats.snapshot(
            self.dispatcher.pending, {leg.name: leg.pending for leg in self.legs}
        )

    def _reset_in_child(self) -> None:
        """A forked child's own account and legs; what the dispatcher kept
        (uWSGI's master's held messages) is handed to them."""
        self._stats = DeliveryStats(self._names)
        self._drops.reset()
        self._exit_deadline = None
        self._stopped = []
        if self.legs:
            for leg in self.legs:
                leg.restart()
        elif not self._closed:
            self._build_legs()
        exits.watch_child(self._exit_hook if not self.sync_mode else None)
        if self.dispatcher.pending:
            if self._spool is not None:
                # uWSGI's master wrote no record of what it held: this worker does.
                for msg in self.dispatcher.held():
                    self._spool.write(msg)
            self.dispatcher.nudge()

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every queued message has been delivered (or given up
        on), for at most ``timeout`` seconds in all (``None``: no limit);
        whether nothing is left queued.

        From inside ``on_error`` (which our dispatcher and the libraries'
        consumers call), the flush runs on a thread of its own and this
        returns at once: those threads would otherwise wait for themselves.
        """
        forks.check()
        if _reporting.active:
            _later(lambda: self.flush(timeout))
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        self.dispatcher.flush(timeout)
        while self._spool is not None and self._spool.backlog_size and not self._closed:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            if not self._feed() and not self.dispatcher.pending:
                break
            self.dispatcher.flush(remaining)
        self._drops.report_turned_away()
        for leg in self.legs:
            if leg in self._stopped:
                continue
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is None or remaining > 0:
                leg.flush(remaining)
        return not self.dispatcher.pending and not any(leg.pending for leg in self.legs)

    def join(self) -> None:
        """Deliver what is queued, then end the threads and take no more.

        The exit handler goes too (the posthog client we built has none: ours
        does its work), so a client made for one job is freed once the app
        drops it. From inside ``on_error``, as ``flush``.
        """
        if _reporting.active:
            _later(self.join)
            return
        self._closed = True
        self.dispatcher.stop()
        self._drops.report_turned_away()
        for leg in self.legs:
            if leg not in self._stopped:
                leg.join()
        self._finish_spool()
        if not self.sync_mode:
            exits.unwatch(self._exit_hook)

    def shutdown(self, timeout: float | None = None) -> bool:
        """``flush(timeout)``, then ``join()``; past the deadline what is left
        is taken back, counted and reported first, so the join cannot wait on
        it. Whether everything was delivered. From inside ``on_error``, as ``flush``."""
        if _reporting.active:
            _later(lambda: self.shutdown(timeout))
            return False
        delivered = self.flush(timeout)
        if not delivered and timeout is not None:
            self._settle(time.monotonic(), "the shutdown deadline")
        self.join()
        return delivered

    def at_exit(self) -> None:
        """Deliver what is still queued when the interpreter exits, within ``exit_timeout``;
        count, report and log whatever could not be (``docs/lifecycle.md``).

        A call made after this is still delivered within the same deadline
        (``_too_late``). Not in uWSGI's master: what it holds is its
        workers' to deliver."""
        if uwsgi_master.in_master():
            return
        self._exit_deadline = time.monotonic() + self.exit_timeout
        self._settle(self._exit_deadline)
        self._finish_spool()
        for leg in self.legs:
            leg.close_connections()

    def deliver_now(self) -> bool:
        """A server is stopping: deliver what is queued within ``exit_timeout``,
        count and report the rest, and stay usable (the same process may
        start a server again). Whether everything was delivered."""
        delivered = self._settle(time.monotonic() + self.exit_timeout)
        for leg in self._stopped:
            leg.renew()
        self._stopped = []
        return delivered

    def _settle(self, deadline: float, ending: str = "exit") -> bool:
        """Deliver what is queued by ``deadline``; whatever is left then is
        taken back, counted, reported and logged (``ending`` names the
        deadline in the reason). A leg left with messages has
        its library's threads stopped (``self._stopped``). Whether every
        message was delivered."""
        self.dispatcher.flush(max(0.0, deadline - time.monotonic()))
        while self._spool is not None and self._spool.backlog_size and time.monotonic() < deadline:
            if not self._feed() and not self.dispatcher.pending:
                break
            self.dispatcher.flush(max(0.0, deadline - time.monotonic()))
        self._drops.report_turned_away()
        left = self.dispatcher.discard()
        if left:
            self._dropped(
                [leg.name for leg in self.legs],
                left,
                ExitTimeout("%s came before delivery%s" % (ending, self._kept())),
            )
        for leg in self.legs:
            remaining = deadline - time.monotonic()
            if remaining > 0 and leg not in self._stopped:
                leg.flush(remaining)
        delivered = not left
        for leg in self.legs:
            if not leg.pending or leg in self._stopped:
                continue
            delivered = False
            self._stopped.append(leg)
            if self._spool is not None:
                # Left unsettled: kept for the next process, as the report says.
                self._spool.forget(leg.name)
            taken = leg.abandon()
            if taken:
                # Taken back from the leg: dropped, no longer accepted.
                self._stats.add(leg.name, "accepted", -len(taken))
                self._dropped(
                    [leg.name],
                    taken,
                    ExitTimeout(
                        "%s came before the %s leg delivered%s" % (ending, leg.name, self._kept())
                    ),
                )
            if leg.pending:
                log.warning(
                    "%d message(s) were still in flight to %s at exit; their delivery is unknown",
                    leg.pending,
                    leg.name,
                )
        self._drops.log(force=True)
        return delivered

    def _kept(self) -> str:
        """Said of messages left undelivered: with a spool, not lost."""
        if self._spool is None:
            return ""
        return " (kept in the spool for the next process to deliver)"


class _Reporting(threading.local):
    """Whether this thread is inside ``on_error``, called by ``Delivery._report``."""

    active = False


_reporting = _Reporting()


def _later(operation: Callable[[], object]) -> None:
    """Run ``operation`` on a thread of its own: asked for from inside ``on_error``."""
    threading.Thread(target=operation, name="analytics-posthog-deferred", daemon=True).start()
