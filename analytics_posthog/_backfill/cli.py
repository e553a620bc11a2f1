"""The ``replay`` and ``export`` commands' arguments, and running them as a
command: keys from the environment, SIGTERM handled as an interrupt, and no
traceback whatever happens."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from datetime import date, datetime, timezone
from typing import Any

from analytics_posthog._backfill.lines import TYPES

EXIT_CODES = (
    "Exit code: 0 all sent, 1 some lines or files rejected (the rest sent; see the rejects file), "
    "2 usage or configuration error, 3 PostHog did not accept a batch, 130 interrupted."
)


def parse_moment(value: str) -> datetime:
    """An ISO date or datetime for --since/--until; no zone means UTC."""
    from analytics_posthog.mapping import parse_timestamp

    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), timezone.utc)
        return parse_timestamp(value)
    except ValueError:
        raise ValueError(
            "not an ISO date or datetime: %r (e.g. 2024-05-17 or 2024-05-17T09:30:00Z)" % value
        ) from None


def parse_types(value: str) -> tuple[str, ...]:
    types = tuple(t.strip().lower() for t in value.split(",") if t.strip())
    unknown = [t for t in types if t not in TYPES]
    if unknown or not types:
        raise ValueError(
            "unknown type %s: choose from %s" % (", ".join(unknown) or "(none)", ",".join(TYPES))
        )
    return types


def posthog_arguments(parser: argparse.ArgumentParser) -> None:
    """The PostHog key and host options (replay, and the doctor command)."""
    parser.add_argument(
        "--posthog-api-key",
        help="PostHog project key (default: POSTHOG_API_KEY, POSTHOG_PROJECT_API_KEY)",
    )
    parser.add_argument(
        "--posthog-host", help="PostHog host (default: POSTHOG_HOST, else https://us.i.posthog.com)"
    )


def add_commands(commands: Any) -> None:
    replay = commands.add_parser(
        "replay",
        help="backfill PostHog from Segment archives (JSON lines, plain or gzip; files, directories, -, s3://, gs://)",
        description="Send Segment messages to PostHog in historical-migration mode, oldest day first, with the "
        "library's mapping. Event uuids come from messageIds, so re-runs and parallel shards never duplicate. "
        + EXIT_CODES,
    )
    _input_arguments(replay)
    replay.add_argument(
        "--dry-run",
        action="store_true",
        help="print the PostHog events as JSON lines, send nothing",
    )
    replay.add_argument(
        "--rate",
        type=positive_float,
        metavar="N",
        help="at most N events per second (default 1000)",
    )
    replay.add_argument(
        "--limit",
        type=_positive_int,
        metavar="N",
        help="stop after sending N events (a re-run goes on)",
    )
    replay.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="resume file (default: <first PATH>.replay-checkpoint.json)",
    )
    replay.add_argument(
        "--restart", action="store_true", help="ignore the checkpoint and send everything again"
    )
    posthog_arguments(replay)

    export = commands.add_parser(
        "export",
        help="write Segment archives as PostHog events, one gzipped JSON-lines file per day, for PostHog's "
        "managed migrations",
        description="Write the events replay would send (same uuids, timestamps, properties) as gzipped JSON lines "
        "in PostHog's event format, one file per UTC day (YYYY-MM-DD.jsonl.gz, then persons.jsonl.gz), for a PostHog managed migration "
        "(content type PostHog). "
        + EXIT_CODES.replace("sent", "written").replace(", 3 PostHog did not accept a batch", ""),
    )
    _input_arguments(export)
    export.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="directory, s3:// or gs:// URL for the day files",
    )


def _input_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="file, directory, - (stdin), s3:// or gs:// URL"
    )
    parser.add_argument(
        "--since",
        type=_moment,
        help="only messages at or after this ISO date/datetime (UTC if no zone)",
    )
    parser.add_argument("--until", type=_moment, help="only messages before this ISO date/datetime")
    parser.add_argument(
        "--types", type=_types, help="comma list of track,identify,page,screen,group,alias"
    )
    parser.add_argument(
        "--group-type", help="PostHog group type for group calls (default segment_group)"
    )
    parser.add_argument(
        "--rejects", metavar="FILE", help="rejects file (default: <first PATH>.rejects.jsonl)"
    )
    parser.add_argument(
        "--jobs",
        type=_positive_int,
        default=1,
        metavar="N",
        help="read with N processes (default 1)",
    )
    parser.add_argument(
        "--endpoint-url", help="S3-compatible endpoint for s3:// (default: AWS_ENDPOINT_URL)"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``replay`` or ``export`` as parsed; never raises."""
    from analytics_posthog import _backfill as package
    from analytics_posthog._backfill.sending import DEFAULT_RATE
    from analytics_posthog._keys import resolve_keys
    from analytics_posthog.mapping import DEFAULT_GROUP_TYPE

    if args.endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint_url
    common = dict(
        paths=args.paths,
        group_type=args.group_type or DEFAULT_GROUP_TYPE,
        since=args.since,
        until=args.until,
        types=args.types or TYPES,
        rejects=args.rejects,
        jobs=args.jobs,
    )
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.command == "export":
            return package.export(package.Options(out=args.out, **common), sys.stderr)
        keys = resolve_keys(None, args.posthog_api_key, args.posthog_host)
        if not keys.posthog_api_key and not args.dry_run:
            sys.stderr.write(
                "replay needs a PostHog project key: pass --posthog-api-key or set POSTHOG_API_KEY "
                "(or POSTHOG_PROJECT_API_KEY); --dry-run needs none.\n"
            )
            return package.EXIT_USAGE
        options = package.Options(
            api_key=keys.posthog_api_key,
            host=keys.posthog_host,
            dry_run=args.dry_run,
            rate=args.rate or DEFAULT_RATE,
            checkpoint=args.checkpoint,
            restart=args.restart,
            limit=args.limit,
            **common,
        )
        return package.replay(options)
    except KeyboardInterrupt:
        return package.EXIT_INTERRUPTED
    except Exception as error:  # the promise is an exit code and a sentence, never a traceback
        sys.stderr.write("%s failed: %s: %s\n" % (args.command, type(error).__name__, error))
        return package.EXIT_USAGE
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _moment(value: str) -> datetime:
    try:
        return parse_moment(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _types(value: str) -> tuple[str, ...]:
    try:
        return parse_types(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return number
