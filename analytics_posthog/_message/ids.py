"""Random ``messageId`` values without a system call on every call.

``uuid.uuid4()`` reads ``os.urandom`` each time, and CPython releases the GIL
around that read. When a background thread (ours, or posthog's consumer) is
busy, the caller then waits up to the interpreter's switch interval (5 ms by
default) to get the GIL back, inside the user's request. Reading the random
bytes for 256 ids at once keeps uuid4's randomness and format and releases the
GIL once per 256 calls. The string is formatted from hex directly: building a
``uuid.UUID`` to print it cost more than everything else here.

A child process must never hand out its parent's ids (PostHog would drop the
second event with the same uuid as a duplicate), so a pool belongs to one pid;
checking the pid also covers servers that fork below Python's fork hooks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NamedTuple

IDS_PER_READ = 256
_ID_BYTES = 16
_HEX_DIGITS = 2 * _ID_BYTES
#: uuid4's variant bits (``10xx``) applied to a random hex digit, as
#: ``UUID(bytes=..., version=4)`` applies them to the byte.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


class _Pool(NamedTuple):
    pid: int
    chunks: Iterator[str]


_pool = _Pool(-1, iter(()))


def new_message_id() -> str:
    """A random (version 4) uuid as a string, as Segment's client makes one.

    Taking the next chunk from a list iterator is atomic under the GIL, so
    threads never share a chunk; two threads that both find the pool empty
    each read a fresh one, which only wastes the rest of the first.
    """
    pool = _pool
    hex_ = next(pool.chunks, None) if pool.pid == os.getpid() else None
    if hex_ is None:
        hex_ = next(_refill())
    return "%s-%s-4%s-%s%s-%s" % (
        hex_[:8],
        hex_[8:12],
        hex_[13:16],
        _VARIANT[hex_[16]],
        hex_[17:20],
        hex_[20:],
    )


def _refill() -> Iterator[str]:
    global _pool
    data = os.urandom(_ID_BYTES * IDS_PER_READ).hex()
    chunks = iter([data[i : i + _HEX_DIGITS] for i in range(0, len(data), _HEX_DIGITS)])
    _pool = _Pool(os.getpid(), chunks)
    return chunks
