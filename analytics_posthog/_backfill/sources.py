"""Finding and reading archive files: local paths, stdin, or URLs (see ``remote``).

Whatever a tree holds, listing and reading never raise: a file or link that
cannot be read comes out as an ``Unreadable`` naming it and why, and a damaged
gzip gives up the lines before the damage, then says where it stopped.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import stat
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, cast

from analytics_posthog._backfill import remote
from analytics_posthog._backfill.usage import UsageError

STDIN = "-"
GZIP_MAGIC = b"\x1f\x8b"
#: The rejects and checkpoint files next to the first PATH by default.
REJECTS_SUFFIX = ".rejects.jsonl"
CHECKPOINT_SUFFIX = ".replay-checkpoint.json"
#: This tool's own files, never read as input when they sit in the tree.
OWN_SUFFIXES = (REJECTS_SUFFIX, CHECKPOINT_SUFFIX)


@dataclass(frozen=True)
class Source:
    """One file to read (a local path, a URL, or ``-`` for stdin)."""

    path: str
    size: int | None

    @property
    def name(self) -> str:
        return "<stdin>" if self.path == STDIN else self.path


@dataclass(frozen=True)
class Unreadable:
    """A file or link in the input that is skipped, and why."""

    path: str
    reason: str


class Damaged(Exception):
    """Raised by ``read_lines`` after the readable head of a damaged file."""


Listed = Source | Unreadable


def check_paths(paths: Sequence[str]) -> None:
    """Every PATH given on the command line must exist: a typo is a usage error,
    not a silently empty backfill."""
    for path in paths:
        if path == STDIN or remote.is_url(path):
            continue
        try:
            os.stat(path)
        except OSError as error:
            raise UsageError("%s: %s" % (path, _reason(path, error))) from None


def listing(paths: Sequence[str]) -> Iterator[Listed]:
    """Files in argument order; a directory is walked recursively in name
    order, skipping hidden entries and this tool's own files."""
    for path in paths:
        if path == STDIN:
            yield Source(STDIN, None)
        elif remote.is_url(path):
            try:
                found = list(remote.list_files(path))
            except UsageError:
                raise
            except Exception as error:  # OSError, or the store's own (botocore's, google's) errors
                raise UsageError(
                    "%s: cannot list (%s: %s)" % (path, type(error).__name__, error)
                ) from None
            for url, size in found:
                yield Source(url, size)
        elif os.path.isdir(path):
            yield from _walk(path)
        else:
            yield _entry(path)


def _walk(top: str) -> Iterator[Listed]:
    problems: list[Unreadable] = []
    walker = os.walk(
        top,
        onerror=lambda error: problems.append(
            Unreadable(error.filename or top, _reason(top, error))
        ),
    )
    for root, dirs, files in walker:
        yield from problems
        problems.clear()
        for name in sorted(
            d for d in dirs if not d.startswith(".") and os.path.islink(os.path.join(root, d))
        ):
            yield Unreadable(
                os.path.join(root, name),
                "symbolic link to a directory, not followed (give its target as a PATH)",
            )
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and not os.path.islink(os.path.join(root, d))
        )
        for name in sorted(files):
            if not name.startswith(".") and not name.endswith(OWN_SUFFIXES):
                yield _entry(os.path.join(root, name))
    yield from problems


def _entry(path: str) -> Listed:
    try:
        info = os.stat(path)
    except OSError as error:
        return Unreadable(path, _reason(path, error))
    if not stat.S_ISREG(info.st_mode):
        return Unreadable(path, "not a regular file")
    return Source(path, info.st_size)


def _reason(path: str, error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "symbolic link loop"
    if error.errno == errno.ENOENT and os.path.islink(path):
        return "dangling symbolic link (to %s, which does not exist)" % os.readlink(path)
    return error.strerror or str(error)


def total_bytes(listed: Sequence[Listed]) -> int | None:
    """Bytes to read (compressed size for gzip), for the ETA; unknown with stdin."""
    sizes = [item.size for item in listed if isinstance(item, Source)]
    return None if any(size is None for size in sizes) else sum(cast(list[int], sizes))


def read_lines(source: Source) -> Iterator[tuple[int, bytes, int]]:
    """(line number, line, bytes of the file read so far); gzip is detected by
    its magic bytes, so ``.json`` files that are really gzip work too.

    ``Damaged`` after the last readable line of a damaged file; an
    ``OSError`` if it cannot be opened at all.
    """
    if source.path == STDIN:
        raw: IO[bytes] = sys.stdin.buffer
    elif remote.is_url(source.path):
        try:
            raw = remote.open_binary(source.path)
        except Exception as error:  # the store's own errors, as the OSError local files raise
            raise OSError("%s: %s" % (type(error).__name__, error)) from None
    else:
        raw = open(source.path, "rb")
    number = 0
    try:
        buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[arg-type,type-var]
        compressed = buffered.peek(2)[:2] == GZIP_MAGIC
        stream = cast(IO[bytes], gzip.GzipFile(fileobj=buffered) if compressed else buffered)
        position = buffered.tell if source.path != STDIN else (lambda: 0)
        try:
            for number, line in enumerate(stream, 1):
                yield number, line, position()
        except (EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise Damaged(
                "damaged gzip after line %d (%s): the lines before were read, the rest of the file is skipped"
                % (number, str(error) or type(error).__name__)
            ) from None
        except Exception as error:  # OSError, or a remote store's own errors mid-file
            raise Damaged(
                "read error after line %d (%s: %s): the rest of the file is skipped"
                % (number, type(error).__name__, error)
            ) from None
    finally:
        if source.path != STDIN:
            raw.close()
