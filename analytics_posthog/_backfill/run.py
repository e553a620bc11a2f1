"""What replay and export share: options, exit codes, where the run's own
files go, reading the input into day files, and the summary."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from analytics_posthog._backfill import persons, remote
from analytics_posthog._backfill.days import DayWriter
from analytics_posthog._backfill.lines import LIB, LIB_VERSION, TYPES, Converter, Filters
from analytics_posthog._backfill.progress import Progress
from analytics_posthog._backfill.rejects import Rejects
from analytics_posthog._backfill.scan import ScanStats, scan, scan_parallel
from analytics_posthog._backfill.sending import DEFAULT_RATE
from analytics_posthog._backfill.sources import (
    STDIN,
    Listed,
    Source,
    check_paths,
    listing,
    total_bytes,
)
from analytics_posthog.mapping import DEFAULT_GROUP_TYPE

EXIT_OK = 0
EXIT_REJECTS = 1
EXIT_USAGE = 2
EXIT_DELIVERY = 3
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Options:
    paths: Sequence[str]
    api_key: str | None = None
    host: str | None = None
    group_type: str = DEFAULT_GROUP_TYPE
    dry_run: bool = False
    since: datetime | None = None
    until: datetime | None = None
    types: Sequence[str] = TYPES
    rate: float = DEFAULT_RATE
    checkpoint: str | None = None
    restart: bool = False
    limit: int | None = None
    rejects: str | None = None
    jobs: int = 1
    out: str | None = None

    @property
    def filters(self) -> Filters:
        return Filters(self.group_type, tuple(self.types), self.since, self.until)


def own_file(options: Options, suffix: str) -> str:
    """Beside the first PATH (``<PATH><suffix>``); in the current directory,
    named after it, when the first PATH is stdin or a URL."""
    first = options.paths[0]
    if first == STDIN:
        return "stdin" + suffix
    if remote.is_url(first):
        return (first.rstrip("/").rsplit("/", 1)[-1] or "archive") + suffix
    return first.rstrip("/\\") + suffix


def list_input(options: Options) -> list[Listed]:
    check_paths(options.paths)
    return list(listing(options.paths))


def fingerprint(listed: Sequence[Listed], options: Options) -> str:
    """The input (every file's name and size) and the filters, for telling
    whether a checkpoint belongs to this run."""
    items = [
        [os.path.abspath(i.path) if isinstance(i, Source) else i.path, getattr(i, "size", None)]
        for i in listed
    ]
    filters = [options.group_type, list(options.types), str(options.since), str(options.until)]
    return hashlib.sha256(json.dumps([items, filters]).encode()).hexdigest()


def read_input(
    options: Options,
    listed: Sequence[Listed],
    directory: str,
    now: datetime,
    level: int,
    rejects: Rejects,
    progress: Progress,
) -> ScanStats:
    """Every line of the input converted into day files in ``directory``."""
    stats = ScanStats()
    started = time.monotonic()
    total = total_bytes(listed)

    def tick() -> None:
        fraction = stats.bytes_done / total if total else None
        progress.show("read", stats.lines, "lines", started, fraction)

    sources = [item for item in listed if isinstance(item, Source)]
    if options.jobs > 1 and len(sources) > 1 and STDIN not in options.paths:
        scan_parallel(
            listed, options.filters, now, options.jobs, directory, level, rejects, stats, tick
        )
    else:
        scan(
            listed,
            Converter(options.filters, now),
            DayWriter(directory, level),
            persons.RecordWriter(directory),
            rejects,
            stats,
            tick,
        )
    stats.persons = persons.settle(
        directory, level, {"$lib": LIB, "$lib_version": LIB_VERSION}, rejects
    )
    if stats.persons.persons:
        stats.events[persons.PERSON_TYPE] = stats.persons.persons
    stats.refused_merges += stats.persons.refused
    if progress.tty:
        progress.show("read", stats.lines, "lines", started, 1.0 if total else None, force=True)
        progress.end()
    return stats


def exit_code(rejected: bool, interrupted: bool = False, refused: bool = False) -> int:
    if interrupted:
        return EXIT_INTERRUPTED
    if refused:
        return EXIT_DELIVERY
    return EXIT_REJECTS if rejected else EXIT_OK


def summary_lines(
    command: str,
    verb: str,
    stats: ScanStats,
    sent: dict,
    elapsed: float,
    rejects: Rejects,
    interrupted: bool,
) -> list[str]:
    total = sum(sent.values())
    per_type = ", ".join(
        "%s %d" % (t, sent[t]) for t in (*TYPES, persons.PERSON_TYPE) if sent.get(t)
    )
    elapsed = max(elapsed, 1e-9)
    lines = [
        "%s %s: %d lines read, %s %d events (%s) in %.1fs: %.0f lines/s read, %.0f events/s %s"
        % (
            command,
            "interrupted" if interrupted else "done",
            stats.lines,
            verb,
            total,
            per_type or "none",
            elapsed,
            stats.lines / elapsed,
            total / elapsed,
            verb,
        ),
    ]
    rejected = "  rejected %d lines" % rejects.lines
    if rejects.files:
        rejected += " and %d files" % rejects.files
    if rejects.written:
        rejected += " (see %s)" % rejects.path
    lines.append(rejected)
    if stats.filtered:
        lines.append("  skipped %d outside --types/--since/--until" % stats.filtered)
    if stats.excluded:
        lines.append("  skipped %d whose integrations exclude PostHog" % stats.excluded)
    if stats.refused_merges:
        lines.append(
            "  %d identify/alias calls PostHog will not merge persons on (placeholder ids, or "
            "an id of a person already identified; the events go through; each is named in %s)"
            % (stats.refused_merges, rejects.path)
        )
    if stats.persons.persons:
        lines.append(
            "  person properties: the history's, in time order (%d updates played in %.1fs, "
            "%.0f MB on disk), as one $set_once per person (%d), so no live value is overwritten"
            % (
                stats.persons.records,
                stats.persons.seconds,
                stats.persons.disk_bytes / 1e6,
                stats.persons.persons,
            )
        )
    if stats.dual_write_from is not None:
        moment, name, number = stats.dual_write_from
        lines.append(
            "  dual-write began by %s (%s:%d, the first message marked integrations.PostHog = "
            "false); --until %s stops history where live delivery starts"
            % (moment.isoformat(), name, number, moment.isoformat())
        )
    return lines
