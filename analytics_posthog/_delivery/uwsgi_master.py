"""uWSGI: a master that forks from C, and workers that may run without threads.

uWSGI's master loads the app (unless ``--lazy-apps``) and then forks each
worker from C, where Python's at-fork hooks never run. A thread of ours in
the master could hold the interpreter lock, or a lock of posthog's, at that
moment, and the worker would wait for it forever. So in the master nothing
of ours runs but a queue: calls are held there, no leg or thread is built,
and one worker, right after its fork, delivers what the master held
(``Handoff``). uWSGI's master runs no exit handlers, so the workers are the
only place those messages can go.
"""

from __future__ import annotations

import logging
import os
import select
import struct
import time
from collections.abc import Callable
from types import ModuleType

log = logging.getLogger("analytics_posthog")

uwsgi: ModuleType | None
try:  # only importable inside a uWSGI process
    import uwsgi  # type: ignore[no-redef]
except ImportError:
    uwsgi = None

#: How long a worker that inherited held messages waits for another worker
#: that holds the token (for microseconds, between its read and its write).
CLAIM_WAIT = 2.0
_TOKEN = struct.Struct("<Q")


def in_master() -> bool:
    """Whether this is uWSGI's master (not a worker, mule or spooler)."""
    if uwsgi is None:
        return False
    if uwsgi.worker_id() != 0:
        return False
    if getattr(uwsgi, "mule_id", lambda: 0)():
        return False
    return not getattr(uwsgi, "i_am_the_spooler", lambda: False)()


def without_threads() -> bool:
    """Whether this uWSGI process runs Python threads only when it exits."""
    return uwsgi is not None and not getattr(uwsgi, "has_threads", 1)


def after_each_fork(run: Callable[[], None]) -> None:
    """Have uWSGI run ``run`` in each worker right after forking it.

    Through ``uwsgidecorators.postfork``, uWSGI's public chain of post-fork
    functions, so an app's own ones keep running. Where that module is
    missing, the first call in the worker does the same (``forks.check``).
    """
    try:
        import uwsgidecorators
    except ImportError:
        return
    uwsgidecorators.postfork(run)


class Handoff:
    """Gives the messages the master held to exactly one worker.

    A pipe holds one token: how many of the held messages some worker has
    taken. A worker that inherited ``held`` messages takes the token, skips
    the first ``taken`` (another worker's), puts back ``held`` and delivers
    the rest. A worker forked later (a respawn) inherits the master's held
    messages again and finds them already taken, except any the master held
    since. Reads and writes of 8 bytes on a pipe are atomic.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.write(self._write, _TOKEN.pack(0))

    def claim(self, held: int) -> int:
        """In a worker: how many of its ``held`` messages are others' (``held``: all)."""
        deadline = time.monotonic() + CLAIM_WAIT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning(
                    "analytics_posthog: another uWSGI worker kept the master's %d held "
                    "message(s) past %.0f s; this worker leaves them to it",
                    held,
                    CLAIM_WAIT,
                )
                return held
            select.select([self._read], [], [], remaining)
            try:
                data = os.read(self._read, _TOKEN.size)
            except BlockingIOError:
                continue
            taken = _TOKEN.unpack(data)[0]
            os.write(self._write, _TOKEN.pack(max(taken, held)))
            return min(taken, held)
