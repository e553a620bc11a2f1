"""The exit routine, run however the process ends: the interpreter's exit,
or multiprocessing's.

``atexit`` covers a process that ends through the interpreter. A
multiprocessing child (``fork`` and ``forkserver`` start methods, ``Pool``
and ``ProcessPoolExecutor`` workers) ends with ``os._exit()`` after its
target returns, which runs no ``atexit`` handler; multiprocessing runs its
own finalizers just before, so the routine is registered there too. A
``Pool`` is usually ended with ``terminate()`` (``with Pool() as pool:``),
which sends its workers SIGTERM: there, a SIGTERM left at its default makes
the worker exit through those finalizers instead of dying on the spot.
The routine runs once per process, whichever path reaches it first.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any

Hook = Callable[[], None]

#: Runs before multiprocessing's own finalizers of queues (-5, -10) and
#: after a ``Pool``'s (15), which ends the pool the child may run itself.
EXIT_PRIORITY = 10

#: The process ids whose exit routine has begun.
_exiting: set[int] = set()
#: Each hook's multiprocessing finalizer in this process, to cancel at ``unwatch``.
_finalizers: dict[Hook, Any] = {}


def watch(at_exit: Callable[[], None]) -> Hook:
    """Run the bound ``at_exit`` when this process ends, for as long as its
    object lives (the exit handler list must not keep a dropped client alive)."""
    ref = weakref.WeakMethod(at_exit)
    ran_in: list[int] = []

    def hook() -> None:
        if os.getpid() in ran_in:
            return
        ran_in.append(os.getpid())
        _exiting.add(os.getpid())
        live = ref()
        if live is not None:
            live()

    atexit.register(hook)
    if _multiprocessing_child():
        _finalize(hook)
    return hook


def watch_child(hook: Hook | None) -> None:
    """In a forked child: have multiprocessing's exit run ``hook``, if it is a
    multiprocessing child. Runs at the fork, before multiprocessing has
    cleared the parent's finalizers, so the finalizer is registered just
    after that, by multiprocessing's own after-fork hook."""
    util = sys.modules.get("multiprocessing.util")
    if hook is not None and util is not None:
        util.register_after_fork(hook, _finalize)


def unwatch(hook: Hook) -> None:
    atexit.unregister(hook)
    finalizer = _finalizers.pop(hook, None)
    if finalizer is not None:
        finalizer.cancel()


def _multiprocessing_child() -> bool:
    processes = sys.modules.get("multiprocessing")
    return processes is not None and processes.parent_process() is not None


def _finalize(hook: Hook) -> None:
    import multiprocessing
    import multiprocessing.util

    _finalizers[hook] = multiprocessing.util.Finalize(None, hook, exitpriority=EXIT_PRIORITY)
    if (
        "PoolWorker" in multiprocessing.current_process().name
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _exit_through_finalizers)


def _exit_through_finalizers(signum: int, frame: FrameType | None) -> None:
    """A ``Pool`` worker told to stop: unwind, so multiprocessing's exit runs.

    A worker already on its way out (a pool's ``terminate()`` also stops
    workers that got its end-of-work sentinel and are running their
    finalizers) finishes them, ours included, which the exit deadline
    bounds: an exception raised there would skip the finalizers still to
    run."""
    if os.getpid() in _exiting or _in_multiprocessing_exit(frame):
        return
    signal.signal(signum, signal.SIG_DFL)
    raise SystemExit(128 + signum)


def _in_multiprocessing_exit(frame: FrameType | None) -> bool:
    """Whether ``frame`` runs inside multiprocessing's exit (``util._exit_function``)."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "_exit_function" and code.co_filename.endswith(
            os.path.join("multiprocessing", "util.py")
        ):
            return True
        frame = frame.f_back
    return False
