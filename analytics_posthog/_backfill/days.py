"""Events bucketed by UTC day: gzipped JSON lines, one file per day.

Export's output and replay's spool are both this, so both put the whole
archive in day order, oldest first, whatever order its files come in.
Events are buffered and each flush appends one gzip member to the day's file
(a file of several members is one valid gzip stream), so an archive that is
not in day order costs more members, never more open files.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
from collections.abc import Iterator, Sequence

SUFFIX = ".jsonl.gz"
#: The file after the last day: the persons' events, which must follow every
#: historical event (see ``persons``); its name sorts after every date.
PERSONS = "persons"
_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2}|" + PERSONS + ")" + re.escape(SUFFIX) + "$")
#: One day's buffer is written out past this size...
FLUSH_BYTES = 1 << 20
#: ...and every buffer once they hold this much together.
BUFFER_BYTES = 32 << 20


def day_file(directory: str, day: str) -> str:
    return os.path.join(directory, day + SUFFIX)


class DayWriter:
    def __init__(self, directory: str, level: int) -> None:
        self.directory = directory
        self.level = level
        self.buffers: dict[str, list[bytes]] = {}
        self.sizes: dict[str, int] = {}
        self.buffered = 0

    def add(self, day: str, data: bytes) -> None:
        buffer = self.buffers.get(day)
        if buffer is None:
            buffer = self.buffers[day] = []
            self.sizes[day] = 0
        buffer.append(data)
        buffer.append(b"\n")
        size = self.sizes[day] = self.sizes[day] + len(data) + 1
        self.buffered += len(data) + 1
        if size >= FLUSH_BYTES:
            self._flush(day)
        elif self.buffered >= BUFFER_BYTES:
            self.close()

    def _flush(self, day: str) -> None:
        buffer = self.buffers.pop(day)
        self.buffered -= self.sizes.pop(day)
        with open(day_file(self.directory, day), "ab") as f:
            f.write(gzip.compress(b"".join(buffer), self.level, mtime=0))

    def close(self) -> None:
        for day in list(self.buffers):
            self._flush(day)


def days(directory: str) -> list[str]:
    """The days with a file in ``directory``, oldest first."""
    return sorted(name[: -len(SUFFIX)] for name in os.listdir(directory) if _DAY_FILE.match(name))


def read_day(directory: str, day: str) -> Iterator[bytes]:
    with gzip.open(day_file(directory, day), "rb") as f:
        yield from f


def merge(parts: Sequence[str], directory: str) -> None:
    """Join the day files of several part directories (in ``parts`` order,
    which keeps each day's events in input order) into ``directory``."""
    for day in sorted({d for part in parts for d in days(part)}):
        with open(day_file(directory, day), "ab") as out:
            for part in parts:
                path = day_file(part, day)
                if os.path.exists(path):
                    with open(path, "rb") as f:
                        shutil.copyfileobj(f, out, 1 << 20)
