"""What both legs do with their library's ``queue.Queue`` at exit."""

from __future__ import annotations

import queue
from collections.abc import Iterable
from typing import Any


def take_back(pending: queue.Queue[Any], consumers: Iterable[Any]) -> list[Any]:
    """Stop ``consumers`` and take back what is still queued, each item marked
    done: it is counted as dropped, and must no longer count as queued (in
    ``stats()``) or hold up a ``join()`` of the queue."""
    for consumer in consumers:
        consumer.pause()
    left: list[Any] = []
    while True:
        try:
            left.append(pending.get_nowait())
        except queue.Empty:
            return left
        pending.task_done()
