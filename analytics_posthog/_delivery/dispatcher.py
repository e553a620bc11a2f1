"""Moves delivery off the caller's thread, and out of the app's busy moments.

A call only builds its Segment message and appends it here; mapping and both
legs' work happen on one background thread. Because that thread competes
with the app's request threads for the interpreter lock, it stays out of the
way while calls keep arriving: it works once the app has been quiet for
QUIET seconds (between requests; it sleeps until that moment), yields the
interpreter between messages so a request that starts meanwhile waits for
one message at most, and only works through busy periods, flat out, when the
backlog passes BACKLOG or ``flush()`` asks for it. A call wakes it only
when it has nothing to do (the first call of a burst), so that it can time
the burst's end: otherwise it would notice new messages only at its next idle
poll, and a burst would find it asleep and pile up. Waking it never hands it
the interpreter: it waits for the app to give the lock up.

Each message carries a copy of the caller's contextvars, so posthog's own
contexts and the web hooks' request context apply to it when it is delivered
(posthog's scope frozen as it was at the call: ``posthog_internals.pinned``).
"""

from __future__ import annotations

import collections
import contextvars
import ctypes
import logging
import sys
import threading
import time
from collections.abc import Callable

from analytics_posthog._delivery import uwsgi_master
from analytics_posthog._delivery.forks import reset_in_child
from analytics_posthog._message.build import Message, delivering_near_limit
from analytics_posthog._patches.posthog import active_scope as posthog_scope
from analytics_posthog._patches.posthog import pinned

log = logging.getLogger("analytics_posthog")

Item = tuple[Message, contextvars.Context]

#: The app counts as idle once no call has arrived for this long.
QUIET = 0.0005
#: How often the worker looks again while every leg is backed up.
BUSY_POLL = 0.001
#: How often an idle worker looks for messages anyway: a safety net only, as
#: the first call of a burst wakes it. Each look costs the process CPU (about
#: 125 µs measured on a 2-vCPU VM): 20 looks a second would take more CPU than
#: Segment's and posthog's idle clients together.
IDLE_POLL = 1.0
#: Past this many waiting messages, deliver even while the app is busy.
BACKLOG = 1000
#: Linux ``prctl`` option setting the calling thread's timer slack.
_PR_SET_TIMERSLACK = 29


def sharpen_sleeps() -> None:
    """Ask Linux for 1 ns of timer slack, for the calling thread only.

    Every sleep on Linux, ``sleep(0)`` included, lasts at least the thread's
    timer slack: 50 µs by default, about 100 µs measured on a 2-vCPU VM. The
    worker sleeps between messages to hand the interpreter back to the app,
    so that slack would be CPU time taken out of the app's idle gaps (22 µs a
    sleep with 1 ns of slack on the same VM).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None).prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Dispatcher:
    """``ready(urgent)`` says whether the legs can take more, ``urgent`` while
    a ``flush()`` waits: while they cannot (a long outage), the backlog stays
    here, held once in Segment's compact form, instead of piling up in each
    leg's queue."""

    def __init__(
        self,
        deliver: Callable[[Message], object],
        max_queue_size: int,
        ready: Callable[[bool], bool],
        tend: Callable[[], None],
    ) -> None:
        """``tend`` runs on the worker between messages: the client's chores
        that must stay off its callers' threads (reporting drops)."""
        self._deliver = deliver
        self._ready = ready
        self._tend = tend
        self._max_queue_size = max_queue_size
        self._stopped = False
        #: Set in uWSGI's master once it holds a message for the workers.
        self._handoff: uwsgi_master.Handoff | None = None
        self._reset()
        reset_in_child(self._reset_in_child)

    def _reset_in_child(self) -> None:
        """Start empty: in a forked child the parent's queue is the parent's to
        deliver, except what uWSGI's master held for its workers, which one
        worker takes over (``uwsgi_master.Handoff``)."""
        handoff, self._handoff = self._handoff, None
        # A call the fork cut between its two appends has no context: not kept.
        held = list(zip(self._messages, self._contexts, strict=False))
        self._reset()
        if handoff is not None and held:
            for msg, context in held[handoff.claim(len(held)) :]:
                self._messages.append(msg)
                self._contexts.append(context)

    def _reset(self) -> None:
        self._messages: collections.deque[Message] = collections.deque()
        self._contexts: collections.deque[contextvars.Context] = collections.deque()
        self._last_context = contextvars.Context()
        self._pair_lock = threading.Lock()
        self._last_put = 0.0
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._urgent = 0
        self._idle = False
        self._delivering = False

    @property
    def pending(self) -> int:
        return len(self._messages) + self._delivering

    def put(self, msg: Message, near_limit: bool = False) -> bool:
        """Queue ``msg`` without blocking; ``False`` when full or stopped.
        ``near_limit``: delivered in a context of its own in which
        ``message.delivering_near_limit`` is set."""
        if len(self._messages) >= self._max_queue_size:
            return False
        context = contextvars.copy_context()
        if posthog_scope() is not None:
            context = pinned(context)
        if near_limit:
            context.run(delivering_near_limit.set, True)
        else:
            context = self._shared(context)
        with self._pair_lock:
            if self._stopped:
                return False
            self._messages.append(msg)
            self._contexts.append(context)
        self._last_put = time.monotonic()
        self.nudge()
        return True

    def nudge(self) -> None:
        """Have the worker look: wake it when idle, start it when there is none."""
        if self._idle:
            self._idle = False
            self._wake.set()
        elif self._thread is None:
            self._start()

    def _shared(self, context: contextvars.Context) -> contextvars.Context:
        """Successive calls usually run in the same context (no request, or the
        same request): keep one copy for all of them rather than one each."""
        last = self._last_context
        try:
            if context == last:
                return last
        except Exception:
            pass
        self._last_context = context
        return context

    def _take(self) -> Item:
        with self._pair_lock:
            return self._messages.popleft(), self._contexts.popleft()

    def _start(self) -> None:
        if uwsgi_master.in_master():
            # Held for a worker: a thread here could hang the workers uWSGI forks.
            if self._handoff is None:
                self._handoff = uwsgi_master.Handoff()
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(
                    target=self._run, name="analytics-posthog-dispatcher", daemon=True
                )
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        sharpen_sleeps()
        items = self._messages
        wait = 0.0
        while not (self._stopped and not items):
            self._wake.wait(wait)
            self._idle = False
            self._wake.clear()
            wait = IDLE_POLL
            while items:
                self._chores()
                if not self._ready(bool(self._urgent)):
                    wait = BUSY_POLL
                    break
                pressed = self._urgent or len(items) >= BACKLOG
                until_quiet = QUIET - (time.monotonic() - self._last_put)
                if not pressed and until_quiet > 0:
                    wait = until_quiet
                    break
                self._delivering = True
                try:
                    msg, context = self._take()
                except IndexError:
                    # discard() at exit emptied the queue between the look and the take.
                    self._delivering = False
                    break
                try:
                    context.run(self._deliver, msg)
                except Exception:
                    log.exception("analytics_posthog: delivery failed unexpectedly")
                finally:
                    self._delivering = False
                if not pressed:
                    time.sleep(0)
            self._chores()
            if not items:
                with self._done:
                    self._done.notify_all()
                # Set before looking again, so a call that appends after this
                # look sees the flag and wakes us.
                self._idle = True
                if items:
                    self._idle = False
                    wait = 0

    def _chores(self) -> None:
        try:
            self._tend()
        except Exception:
            log.exception("analytics_posthog: reporting failed unexpectedly")

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver now, whatever the app is doing; wait until every queued
        message has been handed to the legs."""
        if uwsgi_master.in_master():
            return not self.pending
        with self._done:
            self._urgent += 1
        if self._thread is None and self._messages:
            # A call on another thread has queued and not yet started the worker.
            self._start()
        self._wake.set()
        try:
            with self._done:
                return self._done.wait_for(lambda: not self.pending, timeout)
        finally:
            with self._done:
                self._urgent -= 1

    def held(self) -> list[Message]:
        """What is queued, oldest first, left in the queue."""
        with self._pair_lock:
            return list(self._messages)

    def discard(self) -> list[Message]:
        """Take back what was never handed over, so it can be counted and reported."""
        left: list[Message] = []
        while True:
            try:
                left.append(self._take()[0])
            except IndexError:
                return left

    def stop(self, timeout: float | None = None) -> None:
        """Take nothing more, hand over what is queued, then end the thread."""
        with self._pair_lock:
            self._stopped = True
        thread = self._thread
        if thread is None:
            return
        self.flush(timeout)
        self._wake.set()
        thread.join(timeout)
        self._thread = None
