"""Backfill PostHog with Segment's history: ``replay`` sends it, ``export``
writes it as files for PostHog's managed migrations.

Both read Segment messages in Segment's wire format (one camelCase JSON
object per line, plain or gzipped, e.g. Segment's S3/GCS archive) and map each
with the library's own mapping, so a backfilled event is the one the library
sends live: same event name, properties, timestamp and uuid, less its person
properties, which ``persons`` sends once per person in time order. Re-runs
are safe because every event's uuid comes from its ``messageId``; a message
without one is rejected rather than given a uuid derived from its line, which
a reformatted copy would not share.

The modules, by job: ``sources`` (finding and reading files; ``remote`` for
URLs), ``lines`` (one line -> one event or a reason), ``scan`` and ``days``
(the whole input into day files, oldest first), ``rejects``, ``checkpoint``,
``persons`` (person properties in time order), ``sending`` (posthog in
historical mode), ``replaying`` and ``exporting`` (the
two commands), ``run`` (what they share), ``cli`` (the command line).

Exit codes: 0 all sent (or written); 1 some lines or files rejected, the
rest sent; 2 usage or configuration error, nothing done; 3 PostHog did not
accept a batch (replay stops at the last accepted event); 130 interrupted.
"""

from __future__ import annotations

import sys
from typing import TextIO

from analytics_posthog._backfill.cli import parse_moment, parse_types
from analytics_posthog._backfill.exporting import export
from analytics_posthog._backfill.lines import TYPES
from analytics_posthog._backfill.replaying import Replay
from analytics_posthog._backfill.run import (
    EXIT_DELIVERY,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REJECTS,
    EXIT_USAGE,
    Options,
)
from analytics_posthog.mapping import parse_timestamp

__all__ = [
    "EXIT_DELIVERY",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_REJECTS",
    "EXIT_USAGE",
    "TYPES",
    "Options",
    "export",
    "parse_moment",
    "parse_timestamp",
    "parse_types",
    "replay",
]


def replay(options: Options, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run a replay; the exit code (above)."""
    return Replay(options, out, err).run()
