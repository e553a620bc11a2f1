"""Moves delivery off the caller's thread.

A call only builds its Segment message; mapping and both legs' work happen on
one background thread. Each message carries a copy of the caller's
contextvars, so posthog's own contexts and the web hooks' request context
apply to it even though it is delivered later.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
from typing import Callable, List, Optional, Tuple

from analytics_posthog.forks import reset_in_child
from analytics_posthog.message import Message

log = logging.getLogger("analytics_posthog")

Item = Tuple[Message, contextvars.Context]


class Dispatcher:
    def __init__(self, deliver: Callable[[Message], None], max_queue_size: int) -> None:
        self._deliver = deliver
        self._max_queue_size = max_queue_size
        self._reset()
        reset_in_child(self._reset)

    def _reset(self) -> None:
        """Start empty: in a forked child the parent's queue is the parent's to deliver."""
        self._queue: "queue.Queue[Optional[Item]]" = queue.Queue(self._max_queue_size)
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return self._queue.unfinished_tasks

    def put(self, msg: Message) -> bool:
        """Queue ``msg`` without blocking; ``False`` when the queue is full."""
        if self._thread is None:
            self._start()
        try:
            self._queue.put_nowait((msg, contextvars.copy_context()))
        except queue.Full:
            return False
        return True

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="analytics-posthog-dispatcher", daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        pending = self._queue
        while True:
            item = pending.get()
            try:
                if item is None:
                    return
                msg, context = item
                context.run(self._deliver, msg)
            except Exception:
                log.exception("analytics_posthog: delivery failed unexpectedly")
            finally:
                pending.task_done()

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every queued message has been handed to the legs."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = self._queue
        with pending.all_tasks_done:
            while pending.unfinished_tasks:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                pending.all_tasks_done.wait(remaining)
        return True

    def discard(self) -> List[Message]:
        """Take back what was never handed over, so it can be counted and reported."""
        left: List[Message] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return left
            self._queue.task_done()
            if item is not None:
                left.append(item[0])

    def stop(self, timeout: Optional[float] = None) -> None:
        """Hand over what is queued, then end the thread."""
        thread = self._thread
        if thread is None:
            return
        self.flush(timeout)
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            return
        thread.join(timeout)
        self._thread = None
