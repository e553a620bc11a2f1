"""Command line: ``analytics-posthog demo | replay | export | doctor``.

The replay and export options are defined in ``_backfill.cli``; demo and
doctor are imported only when they run.
"""

from __future__ import annotations

import argparse
import sys

from analytics_posthog.version import VERSION

#: What ``--help`` says first, for the person running the command.
DESCRIPTION = (
    "Segment's API, delivered to PostHog. demo: see what PostHog receives for each call "
    "(offline). doctor: check that your keys and hosts work. replay / export: bring "
    "Segment's history to PostHog."
)


def versions() -> str:
    """Ours, and the posthog and Segment clients doing the delivery."""
    import posthog

    from analytics_posthog._patches.segment import VERSION as SEGMENT_VERSION

    return "analytics-posthog %s (posthog %s, segment-analytics-python %s)" % (
        VERSION,
        posthog.VERSION,
        SEGMENT_VERSION,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="analytics-posthog", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=versions())
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="make the six Segment calls and show what PostHog receives (offline)"
    )
    demo.add_argument(
        "--live",
        action="store_true",
        help="send to the PostHog project in POSTHOG_API_KEY / POSTHOG_HOST",
    )

    from analytics_posthog._backfill import cli as replay_cli

    replay_cli.add_commands(commands)

    doctor = commands.add_parser(
        "doctor",
        help="check the configuration: which legs are on, hosts reachable, keys accepted",
        description="Read the configuration as the library does, say which legs are on and why, check each host "
        "is reachable and, with --send, that each key is accepted. Exit code 0 when everything configured works.",
    )
    replay_cli.posthog_arguments(doctor)
    doctor.add_argument("--write-key", help="Segment write key (default: SEGMENT_WRITE_KEY)")
    doctor.add_argument("--host", help="Segment host (default: Segment's, https://api.segment.io)")
    doctor.add_argument(
        "--send",
        action="store_true",
        help="send one test event per leg and report whether the key was accepted",
    )
    doctor.add_argument(
        "--verbose", action="store_true", help="list each internal patch and why one is not active"
    )
    doctor.add_argument(
        "--json", action="store_true", help="print the report as one JSON object, for scripts"
    )
    doctor.add_argument(
        "--timeout",
        type=replay_cli.positive_float,
        default=5.0,
        help="seconds per network check (default 5)",
    )

    args = parser.parse_args(argv)

    if args.command == "demo":
        from analytics_posthog._cli import demo as demo_module

        return demo_module.run(live=args.live)
    if args.command in ("replay", "export"):
        return replay_cli.run(args)
    if args.command == "doctor":
        from analytics_posthog._cli import doctor as doctor_module

        return doctor_module.run(
            posthog_api_key=args.posthog_api_key,
            posthog_host=args.posthog_host,
            write_key=args.write_key,
            host=args.host,
            send=args.send,
            timeout=args.timeout,
            verbose=args.verbose,
            as_json=args.json,
        )
    return 2


if __name__ == "__main__":
    sys.exit(main())
