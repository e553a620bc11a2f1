"""The first pass of both commands: read every source, convert each line,
put the events in day files and the rest in the rejects file.

With ``jobs`` > 1 the sources are cut into runs of consecutive files, each
scanned by a worker process into its own day files and rejects file; joining
them in order gives exactly what one process would have written. Workers are
spawned, not forked: by then fsspec's I/O thread (listing ``s3://``) may hold
locks that a forked child would inherit held.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from analytics_posthog._backfill import persons
from analytics_posthog._backfill.days import DayWriter, merge
from analytics_posthog._backfill.lines import EVENT, FILTERED, Converter, Filters, Rejected
from analytics_posthog._backfill.rejects import Rejects
from analytics_posthog._backfill.sources import (
    Damaged,
    Listed,
    Source,
    Unreadable,
    read_lines,
)

#: Parts per worker: smaller parts balance uneven files and show progress sooner.
PARTS_PER_JOB = 4


@dataclass
class ScanStats:
    lines: int = 0
    events: Counter = field(default_factory=Counter)
    filtered: int = 0
    excluded: int = 0
    #: identify and alias calls whose merge PostHog will refuse (sent all the same).
    refused_merges: int = 0
    bytes_done: int = 0
    #: The earliest message marked as dual-written: (time, file, line).
    dual_write_from: tuple[datetime, str, int] | None = None
    #: What the person pass did, once the scan is over.
    persons: persons.Settled = field(default_factory=persons.Settled)

    def dual_written(self, moment: datetime, name: str, number: int) -> None:
        if self.dual_write_from is None or moment < self.dual_write_from[0]:
            self.dual_write_from = (moment, name, number)

    def add(self, other: ScanStats) -> None:
        self.lines += other.lines
        self.events.update(other.events)
        self.filtered += other.filtered
        self.excluded += other.excluded
        self.refused_merges += other.refused_merges
        self.bytes_done += other.bytes_done
        if other.dual_write_from is not None:
            self.dual_written(*other.dual_write_from)


def scan(
    listed: Sequence[Listed],
    converter: Converter,
    writer: DayWriter,
    people: persons.RecordWriter,
    rejects: Rejects,
    stats: ScanStats,
    tick: Callable[[], None] = lambda: None,
) -> None:
    convert = converter.convert
    add = writer.add
    events = stats.events
    for item in listed:
        if isinstance(item, Unreadable):
            rejects.file(item.path, item.reason)
            continue
        base = stats.bytes_done
        try:
            for number, line, position in read_lines(item):
                if not line.strip():
                    continue
                stats.lines += 1
                try:
                    outcome, value = convert(line)
                except Rejected as reason:
                    rejects.line(item.name, number, line, str(reason))
                    continue
                if outcome is EVENT:
                    day, type_, data, refused, person = value
                    add(day, data)
                    events[type_] += 1
                    if refused is not None:
                        stats.refused_merges += 1
                        rejects.note(item.name, number, line, refused)
                    if person is not None:
                        people.add(day, person, item.name, number, line)
                elif outcome is FILTERED:
                    stats.filtered += 1
                else:
                    stats.excluded += 1
                    if value is not None:
                        stats.dual_written(value, item.name, number)
                if not stats.lines & 1023:
                    stats.bytes_done = base + position
                    tick()
        except Damaged as damage:
            rejects.file(item.name, str(damage))
        except OSError as error:
            rejects.file(item.name, "cannot be read: %s" % (error.strerror or error))
        stats.bytes_done = base + (item.size or 0)
        tick()
    writer.close()
    people.close()


def scan_parallel(
    listed: Sequence[Listed],
    filters: Filters,
    now: datetime,
    jobs: int,
    directory: str,
    level: int,
    rejects: Rejects,
    stats: ScanStats,
    tick: Callable[[], None],
) -> None:
    parts = _cut(listed, jobs * PARTS_PER_JOB)
    dirs: list[str] = []
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = []
        for index, part in enumerate(parts):
            part_dir = os.path.join(directory, ".part-%04d" % index)
            os.mkdir(part_dir)
            dirs.append(part_dir)
            futures.append(pool.submit(_scan_part, part, filters, now, part_dir, level))
        for future in futures:
            part_stats, lines, files = future.result()
            stats.add(part_stats)
            rejects.lines += lines
            rejects.files += files
            tick()
    merge(dirs, directory)
    persons.merge_records(dirs, directory)
    rejects.append_parts([os.path.join(d, "rejects.jsonl") for d in dirs])


def _scan_part(
    listed: Sequence[Listed], filters: Filters, now: datetime, directory: str, level: int
) -> tuple[ScanStats, int, int]:
    stats = ScanStats()
    rejects = Rejects(os.path.join(directory, "rejects.jsonl"), sys.stderr)
    try:
        scan(
            listed,
            Converter(filters, now),
            DayWriter(directory, level),
            persons.RecordWriter(directory),
            rejects,
            stats,
        )
    finally:
        rejects.close(complete=False)
    return stats, rejects.lines, rejects.files


def _cut(listed: Sequence[Listed], count: int) -> list[list[Listed]]:
    """Consecutive runs of about equal bytes."""
    sizes = [item.size or 0 if isinstance(item, Source) else 0 for item in listed]
    target = max(sum(sizes) / max(count, 1), 1)
    parts: list[list[Listed]] = [[]]
    filled = 0.0
    for item, size in zip(listed, sizes, strict=False):
        if filled >= target and parts[-1]:
            parts.append([])
            filled = 0.0
        parts[-1].append(item)
        filled += size
    return parts
