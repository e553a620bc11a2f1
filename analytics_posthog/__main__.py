"""Command line: ``python -m analytics_posthog demo [--live]``."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="analytics-posthog", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="make the six Segment calls and show what PostHog receives (offline)")
    demo.add_argument("--live", action="store_true", help="send to the PostHog project in POSTHOG_API_KEY / POSTHOG_HOST")
    args = parser.parse_args(argv)

    if args.command == "demo":
        from analytics_posthog import demo as demo_module

        return demo_module.run(live=args.live)
    return 2


if __name__ == "__main__":
    sys.exit(main())
