"""``python -m analytics_posthog.testing``: a capture server in a process of its own.

For what cannot share a process with the server: an app under test started
as its own process, or a benchmark whose measurements the server's work must
not disturb. The control API (``control``) reads what it captured and arms
faults over HTTP.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence
from typing import Any

from .server import CaptureServer


def main(argv: Sequence[str] | None = None) -> int:
    """Print ``listening on http://HOST:PORT``, then serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m analytics_posthog.testing",
        description="Loopback capture server for PostHog and Segment clients.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--count-only", action="store_true", help="count events without storing them (benchmarks)"
    )
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    server = CaptureServer(args.host, args.port, keep=not args.count_only).start()
    try:
        print("listening on %s" % server.url, flush=True)
        while not stop.wait(0.2):
            pass
    finally:
        server.stop()
    return 0
