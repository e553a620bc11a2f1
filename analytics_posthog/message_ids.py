"""Random ``messageId`` values without a system call on every call.

``uuid.uuid4()`` reads ``os.urandom`` each time, and CPython releases the GIL
around that read. When a background thread (ours, or posthog's consumer) is
busy, the caller then waits up to the interpreter's switch interval (5 ms by
default) to get the GIL back, inside the user's request. Reading the random
bytes for 256 ids at once keeps uuid4's randomness and format and releases the
GIL once per 256 calls.

A child process must never hand out its parent's ids (PostHog would drop the
second event with the same uuid as a duplicate), so a pool belongs to one pid;
checking the pid also covers servers that fork below Python's fork hooks.
"""

from __future__ import annotations

import os
from typing import Iterator, NamedTuple
from uuid import UUID

IDS_PER_READ = 256
_ID_BYTES = 16


class _Pool(NamedTuple):
    pid: int
    chunks: Iterator[bytes]


_pool = _Pool(-1, iter(()))


def new_message_id() -> str:
    """A random (version 4) uuid as a string, as Segment's client makes one.

    Taking the next chunk from a list iterator is atomic under the GIL, so
    threads never share a chunk; two threads that both find the pool empty
    each read a fresh one, which only wastes the rest of the first.
    """
    pool = _pool
    if pool.pid == os.getpid():
        chunk = next(pool.chunks, None)
        if chunk is not None:
            return str(UUID(bytes=chunk, version=4))
    return str(UUID(bytes=next(_refill()), version=4))


def _refill() -> Iterator[bytes]:
    global _pool
    data = os.urandom(_ID_BYTES * IDS_PER_READ)
    chunks = iter([data[i : i + _ID_BYTES] for i in range(0, len(data), _ID_BYTES)])
    _pool = _Pool(os.getpid(), chunks)
    return chunks
