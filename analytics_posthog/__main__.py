"""Command line: ``analytics-posthog demo | replay | doctor``.

Each command's module is imported only when that command runs, so
``--help`` and the cheap commands do not pay for the others.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import List, Optional, Tuple


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="analytics-posthog", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="make the six Segment calls and show what PostHog receives (offline)")
    demo.add_argument("--live", action="store_true", help="send to the PostHog project in POSTHOG_API_KEY / POSTHOG_HOST")

    replay = commands.add_parser(
        "replay",
        help="backfill PostHog from Segment archives (JSON lines, plain or gzip)",
        description="Send Segment messages (one JSON object per line, plain or gzipped; files, directories "
        "walked recursively, or - for stdin) to PostHog in historical-migration mode, with the library's "
        "mapping. Event uuids come from messageIds, so re-runs and parallel shards never duplicate. "
        "Exit code: 0 all sent, 1 some lines rejected, 3 PostHog did not accept a batch, 130 interrupted.",
    )
    replay.add_argument("paths", nargs="+", metavar="PATH", help="file, directory or - (stdin)")
    replay.add_argument("--dry-run", action="store_true", help="print the PostHog events as JSON lines, send nothing")
    replay.add_argument("--since", type=_moment, help="only messages at or after this ISO date/datetime (UTC if no zone)")
    replay.add_argument("--until", type=_moment, help="only messages before this ISO date/datetime")
    replay.add_argument("--types", type=_types, help="comma list of track,identify,page,screen,group,alias")
    replay.add_argument("--rate", type=_positive_float, metavar="N", help="send at most N events per second")
    replay.add_argument("--limit", type=_positive_int, metavar="N", help="stop after N lines (try a sample; a re-run resumes after it)")
    replay.add_argument("--checkpoint", metavar="FILE", help="resume file (default: <first PATH>.replay-checkpoint.json)")
    _posthog_arguments(replay)
    replay.add_argument("--group-type", help="PostHog group type for group calls (default segment_group)")

    doctor = commands.add_parser(
        "doctor",
        help="check the configuration: which legs are on, hosts reachable, keys accepted",
        description="Read the configuration as the library does, say which legs are on and why, check each host "
        "is reachable and, with --send, that each key is accepted. Exit code 0 when everything configured works.",
    )
    _posthog_arguments(doctor)
    doctor.add_argument("--write-key", help="Segment write key (default: SEGMENT_WRITE_KEY)")
    doctor.add_argument("--host", help="Segment host (default: Segment's, https://api.segment.io)")
    doctor.add_argument("--send", action="store_true", help="send one test event per leg and report whether the key was accepted")
    doctor.add_argument("--timeout", type=_positive_float, default=5.0, help="seconds per network check (default 5)")

    args = parser.parse_args(argv)

    if args.command == "demo":
        from analytics_posthog import demo as demo_module

        return demo_module.run(live=args.live)
    if args.command == "replay":
        return _replay(args)
    if args.command == "doctor":
        from analytics_posthog import doctor as doctor_module

        return doctor_module.run(
            posthog_api_key=args.posthog_api_key,
            posthog_host=args.posthog_host,
            write_key=args.write_key,
            host=args.host,
            send=args.send,
            timeout=args.timeout,
        )
    return 2


def _replay(args: argparse.Namespace) -> int:
    from analytics_posthog import replay
    from analytics_posthog.config import resolve_keys
    from analytics_posthog.mapping import DEFAULT_GROUP_TYPE

    keys = resolve_keys(None, args.posthog_api_key, args.posthog_host)
    if not keys.posthog_api_key and not args.dry_run:
        print(
            "replay needs a PostHog project key: pass --posthog-api-key or set POSTHOG_API_KEY "
            "(or POSTHOG_PROJECT_API_KEY); --dry-run needs none.",
            file=sys.stderr,
        )
        return replay.EXIT_USAGE
    options = replay.Options(
        paths=args.paths,
        api_key=keys.posthog_api_key,
        host=keys.posthog_host,
        group_type=args.group_type or DEFAULT_GROUP_TYPE,
        dry_run=args.dry_run,
        since=args.since,
        until=args.until,
        types=args.types or replay.TYPES,
        rate=args.rate,
        checkpoint=args.checkpoint,
        limit=args.limit,
    )
    return replay.replay(options)


def _posthog_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--posthog-api-key", help="PostHog project key (default: POSTHOG_API_KEY, POSTHOG_PROJECT_API_KEY)")
    parser.add_argument("--posthog-host", help="PostHog host (default: POSTHOG_HOST, else https://us.i.posthog.com)")


def _moment(value: str) -> datetime:
    from analytics_posthog.replay import parse_moment

    try:
        return parse_moment(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _types(value: str) -> Tuple[str, ...]:
    from analytics_posthog.replay import parse_types

    try:
        return parse_types(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return number


if __name__ == "__main__":
    sys.exit(main())
