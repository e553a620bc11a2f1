"""``export``: the events replay would send, as files for PostHog's managed
migrations (JSON lines in PostHog's event format, content type "PostHog").

One gzipped file per UTC day, ``YYYY-MM-DD.jsonl.gz``, so the names sort
oldest first, then ``persons.jsonl.gz`` (see ``persons``). Files are written in a hidden directory inside ``--out`` and
moved into place at the end, so a re-run replaces an earlier export and an
interrupted one leaves nothing half written. An ``s3://`` or ``gs://``
``--out`` gets the finished files uploaded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from typing import TextIO

from analytics_posthog._backfill import remote
from analytics_posthog._backfill.days import SUFFIX, day_file, days
from analytics_posthog._backfill.progress import Progress
from analytics_posthog._backfill.rejects import Rejects
from analytics_posthog._backfill.run import (
    EXIT_USAGE,
    Options,
    exit_code,
    list_input,
    own_file,
    read_input,
    summary_lines,
)
from analytics_posthog._backfill.scan import ScanStats
from analytics_posthog._backfill.sources import REJECTS_SUFFIX, UsageError

#: zlib's default: the files are kept and uploaded, so size matters more than
#: in replay's spool.
EXPORT_LEVEL = 6


def export(options: Options, err: TextIO) -> int:
    """Run an export; the exit code (see ``analytics_posthog._backfill``)."""
    started = time.monotonic()
    out = options.out or ""
    try:
        listed = list_input(options)
        if remote.is_url(out):
            remote.filesystem(out)
        else:
            os.makedirs(out, exist_ok=True)
    except (UsageError, OSError) as error:
        err.write("export: %s\n" % error)
        return EXIT_USAGE
    rejects = Rejects(options.rejects or own_file(options, REJECTS_SUFFIX), err)
    progress = Progress(err, "export")
    stats = ScanStats()
    written: list[str] = []
    interrupted = False
    work = tempfile.mkdtemp(prefix=".export-", dir=None if remote.is_url(out) else out)
    try:
        stats = read_input(
            options, listed, work, datetime.now(timezone.utc), EXPORT_LEVEL, rejects, progress
        )
        rejects.close(complete=True)
        written = _publish(work, out)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        rejects.close(complete=False)
        progress.end()
        shutil.rmtree(work, ignore_errors=True)
    code = exit_code(bool(rejects.lines or rejects.files), interrupted)
    lines = summary_lines(
        "export",
        "wrote",
        stats,
        stats.events if not interrupted else {},
        time.monotonic() - started,
        rejects,
        interrupted,
    )
    if written:
        lines.append(
            "  %d day files in %s, %s to %s" % (len(written), out, written[0], written[-1])
        )
    err.write("\n".join(lines) + "\n")
    return code


def _publish(work: str, out: str) -> list[str]:
    """Move (or upload) the finished day files into ``out``; their names, oldest first."""
    names = [day + SUFFIX for day in days(work)]
    if remote.is_url(out):
        fs, path = remote.filesystem(out)
        for name in names:
            fs.put_file(day_file(work, name[: -len(SUFFIX)]), path.rstrip("/") + "/" + name)
    else:
        for name in names:
            os.replace(os.path.join(work, name), os.path.join(out, name))
    return names
