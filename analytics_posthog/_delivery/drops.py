"""Messages that are not delivered: told to ``on_error`` and to the log, in the same units.

Each report is one ``on_error(error, batch)`` call and the same number of
messages in the log: a message turned away by our own queue, refused after
``shutdown()`` or still in our queue at exit is one report for all legs; one
lost by a single leg (its queue full, exit before it delivered) is a report
of that leg's. ``stats()`` counts the same losses per leg.

Log lines are rate-limited to one per DROP_LOG_INTERVAL, each with every drop
since the last one by reason; at exit one more line takes the rest, so the
log's counts add up to what ``on_error`` heard.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from analytics_posthog.errors import DeliveryError, QueueFull

#: At most one log line per this many seconds about dropped messages.
DROP_LOG_INTERVAL = 10.0

#: Turned-away messages kept for ``on_error`` while they wait to be reported:
#: this many, or ``max_queue_size`` if that is more (a busy app turns away
#: hundreds of calls before the dispatcher's thread gets the interpreter).
MIN_KEPT_FOR_ON_ERROR = 1000


class Drops:
    def __init__(
        self, report: Callable[[Exception, Any], None], log: logging.Logger, max_queue_size: int
    ) -> None:
        """``report`` tells ``on_error`` (and survives its failure)."""
        self._report = report
        self._log = log
        self._kept_for_on_error = max(max_queue_size, MIN_KEPT_FOR_ON_ERROR)
        self.reset()

    def reset(self) -> None:
        """Start afresh (in a forked child: another thread may have held the lock)."""
        self._lock = threading.Lock()
        self._turned_away: collections.deque[Any] = collections.deque()
        self._turned_away_unkept = 0
        self._unlogged: dict[str, int] = {}
        self._unkept_unlogged = 0
        self._logged_at = float("-inf")

    def turn_away(self, msg: Any) -> None:
        """Our queue is full: ``msg`` is reported later by the dispatcher's
        thread, since ``on_error`` and logging run the app's code, which may be
        slow, and a call must never wait. While reports wait, at most
        ``MIN_KEPT_FOR_ON_ERROR`` or ``max_queue_size`` messages are kept for
        ``on_error``; the rest are logged only, and the log says how many."""
        if len(self._turned_away) < self._kept_for_on_error:
            self._turned_away.append(msg)
        else:
            self._turned_away_unkept += 1

    def report_turned_away(self) -> None:
        if not self._turned_away and not self._turned_away_unkept:
            return
        msgs: list[Any] = []
        while True:
            try:
                msgs.append(self._turned_away.popleft())
            except IndexError:
                break
        unkept, self._turned_away_unkept = self._turned_away_unkept, 0
        self.tell(QueueFull("analytics-posthog queue is full"), msgs, unkept)

    def tell(self, error: DeliveryError, msgs: list[Any], unkept: int = 0) -> None:
        """``on_error`` for ``msgs``; the log for them and ``unkept`` more."""
        if msgs:
            self._report(error, msgs)
        reason = str(error)
        with self._lock:
            self._unlogged[reason] = self._unlogged.get(reason, 0) + len(msgs) + unkept
            self._unkept_unlogged += unkept
        self.log(force=False)

    def log(self, force: bool) -> None:
        """One line for every drop not yet logged, unless one was logged less
        than DROP_LOG_INTERVAL ago (``force``: at exit)."""
        now = time.monotonic()
        with self._lock:
            if not self._unlogged or (not force and now - self._logged_at < DROP_LOG_INTERVAL):
                return
            counts, self._unlogged = self._unlogged, {}
            unkept, self._unkept_unlogged = self._unkept_unlogged, 0
            self._logged_at = now
        reasons = "; ".join("%s: %d" % item for item in counts.items())
        not_told = " (%d of them too many at once to keep for on_error)" % unkept if unkept else ""
        self._log.warning(
            "analytics_posthog dropped %d message(s)%s (%s); see stats()",
            sum(counts.values()),
            not_told,
            reasons,
        )
