"""Fork safety: threads do not survive ``fork()``, queues and held locks do.

A child process (gunicorn ``--preload``, Celery prefork, ``multiprocessing``)
must get fresh queues and threads, or it would deliver nothing, or deliver
again what the parent had queued.

A child also inherits every lock exactly as it was at the fork, held ones
included, and the thread that held it is gone. Our dispatcher thread runs
posthog's and Segment's code (posthog's ``capture()`` looks up the server's
OS through ``distro``, whose cached properties hold a lock while a
subprocess runs; queues and logging hold theirs): a fork that lands there
leaves the child waiting forever for a lock nobody will release. So the
dispatcher enters that code through ``GATE``, and a fork waits, for at most
``FORK_WAIT`` seconds, until no dispatcher is inside. The libraries' own
threads (posthog's and Segment's consumers) are theirs to make fork-safe:
posthog rebuilds its queues, consumers and HTTP sessions in a child, and the
Segment leg builds a fresh Segment client there.

One thing no library can undo in a child is an import that another thread
had half done at the fork: the module's import lock stays held, and the
child's next import of it waits forever. ``requests`` imports ``netrc`` on
every request's first use, so the consumers' first requests in the parent
were such a moment; it is imported here, before any of those threads exist.
"""

from __future__ import annotations

import logging
import netrc  # noqa: F401  (see above)
import os
import threading
import time
import weakref
from collections.abc import Callable

log = logging.getLogger("analytics_posthog")

#: The longest a fork waits for a dispatcher to leave the libraries' code. One
#: message takes microseconds there; the slowest case seen is the first one in
#: a process, while ``distro`` runs ``lsb_release`` (tens of milliseconds).
FORK_WAIT = 3.0


class ForkGate:
    """Many dispatcher threads may be inside at once; a fork waits until none is.

    ``enter``/``leave`` bracket each message's delivery to the legs (about a
    microsecond together); a thread that forks from inside (``on_error`` run by the libraries
    on the dispatcher's thread, say) does not wait for itself.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._inside: set[int] = set()
        self._forking = 0

    def enter(self) -> None:
        with self._lock:
            while self._forking:
                self._cond.wait()
            self._inside.add(threading.get_ident())

    def leave(self) -> None:
        with self._lock:
            self._inside.discard(threading.get_ident())
            if self._forking and not self._inside:
                self._cond.notify_all()

    def before_fork(self) -> None:
        me = threading.get_ident()
        started = time.monotonic()
        with self._lock:
            self._forking += 1
            if not self._cond.wait_for(lambda: not (self._inside - {me}), FORK_WAIT):
                log.warning(
                    "analytics_posthog: forking while its dispatcher is still inside posthog or Segment code "
                    "after %.1f s; the child's deliveries may hang",
                    time.monotonic() - started,
                )

    def after_in_parent(self) -> None:
        with self._lock:
            self._forking -= 1
            self._cond.notify_all()


GATE = ForkGate()
os.register_at_fork(
    before=GATE.before_fork, after_in_parent=GATE.after_in_parent, after_in_child=GATE._reset
)


def reset_in_child(method: Callable[[], None]) -> None:
    """Run the bound ``method`` in every forked child, for as long as its object lives."""
    ref = weakref.WeakMethod(method)

    def after_in_child() -> None:
        bound = ref()
        if bound is not None:
            bound()

    os.register_at_fork(after_in_child=after_in_child)


def fork_safe_lock() -> threading.Lock:
    """A lock that every forked child starts with unlocked.

    Another thread of the parent may hold it at the moment of ``fork()`` (a
    server forking workers while a thread makes its first call); that thread
    does not exist in the child, which would wait for it forever.
    """
    lock = threading.Lock()
    os.register_at_fork(after_in_child=lock._at_fork_reinit)  # type: ignore[attr-defined]
    return lock
