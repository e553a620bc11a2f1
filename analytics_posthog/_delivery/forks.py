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

A process can also be forked from C, where Python's at-fork hooks never run:
uWSGI forks its workers so. ``check()``, at each call, compares the process
id with the one recorded at the last fork it knows of (one ``getpid()``
system call, about 0.2 µs measured on a 2-vCPU VM) and runs the same child
resets there, before the call touches any queue. uWSGI's master is kept
free of our threads altogether (``uwsgi_master.py``): a fork from C cannot
wait at ``GATE``.
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

#: The process the resets last ran for (or that imported this module).
_pid = os.getpid()
#: What a child runs, in the order it was registered: strong for locks, weak for objects.
_in_child: list[Callable[[], None]] = []
#: Whether Python's at-fork hooks ran for the last fork (the libraries' own ran too).
_seen_by_python = True


def _after_fork_in_child(by_python: bool = True) -> None:
    global _pid, _seen_by_python
    _pid = os.getpid()
    _seen_by_python = by_python
    GATE._reset()
    for reset in list(_in_child):
        try:
            reset()
        except Exception:
            log.exception("analytics_posthog: resetting after a fork failed")


os.register_at_fork(
    before=GATE.before_fork,
    after_in_parent=GATE.after_in_parent,
    after_in_child=_after_fork_in_child,
)


def check() -> None:
    """Run the child resets if this process was forked where Python did not see it.

    Called at the start of each call, before any queue is touched. A
    thread that sees the new pid swaps it in before running the resets, so
    a second thread arriving after the swap runs none. Two threads that
    read the old pid at the same instant would both run them; under uWSGI
    the post-fork hook runs them before the worker takes any request.
    """
    global _pid
    pid = os.getpid()
    if pid != _pid:
        _pid, seen = pid, _pid
        if seen != pid:
            _after_fork_in_child(by_python=False)


def seen_by_python() -> bool:
    """Whether the libraries' own at-fork hooks ran in this child (posthog
    rebuilds its client's queues and threads there; after a fork from C,
    nothing did)."""
    return _seen_by_python


def at_fork(function: Callable[[], None]) -> None:
    """Run ``function`` in every forked child, for as long as this process lives."""
    _in_child.append(function)


def reset_in_child(method: Callable[[], None]) -> None:
    """Run the bound ``method`` in every forked child, for as long as its object lives."""
    ref = weakref.WeakMethod(method)

    def after_in_child() -> None:
        bound = ref()
        if bound is not None:
            bound()
        else:
            _in_child.remove(after_in_child)

    _in_child.append(after_in_child)


def fork_safe_lock() -> threading.Lock:
    """A lock that every forked child starts with unlocked.

    Another thread of the parent may hold it at the moment of ``fork()`` (a
    server forking workers while a thread makes its first call); that thread
    does not exist in the child, which would wait for it forever.
    """
    lock = threading.Lock()
    at_fork(lock._at_fork_reinit)  # type: ignore[attr-defined]
    return lock
