"""Fork safety: threads do not survive ``fork()``, queues do.

A child process (gunicorn ``--preload``, Celery prefork, ``multiprocessing``)
must get fresh queues and threads, or it would deliver nothing, or deliver
again what the parent had queued.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Callable


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
