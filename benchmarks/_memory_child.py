"""One memory measurement in a fresh interpreter (run by run.py, one process per contender).

The client points at a 127.0.0.1 port where nothing listens, with
``max_retries`` high, so its consumers are stuck retrying the first batch and
every later event stays queued. Prints one JSON line, then leaves with
``os._exit`` so no exit handler waits for a delivery that can never happen.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _contenders  # noqa: E402
from _server import refused_url, scrub_environment  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def pending(client) -> int:
    """Events still on their way to the legs' queues (our dispatcher), if visible."""
    dispatcher = getattr(client, "_dispatcher", None)
    return int(getattr(dispatcher, "pending", 0) or 0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contender", required=True)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--mode", choices=("tracemalloc", "rss"), default="tracemalloc")
    parser.add_argument("--settle", type=float, default=30.0)
    args = parser.parse_args()

    logging.disable(logging.CRITICAL)  # the stuck consumers log every retry
    scrub_environment()
    contender = _contenders.BY_NAME[args.contender]
    url = refused_url()
    # Import everything the client needs before measuring: imports are not backlog.
    import posthog  # noqa: F401
    import segment.analytics  # noqa: F401

    import analytics_posthog  # noqa: F401

    traced = args.mode == "tracemalloc"
    gc.collect()
    if traced:
        tracemalloc.start()

    def now() -> int:
        return tracemalloc.get_traced_memory()[0] if traced else rss_bytes()

    base = now()
    client = contender.make(url, max_queue_size=200_000, max_retries=1000)
    track = getattr(client, "capture" if args.contender == "posthog" else "track")
    accepted = 0
    t0 = time.perf_counter()
    for i in range(args.events):
        properties = {"button": "checkout", "plan": "pro", "n": i}
        if args.contender == "posthog":
            result = track("Button Clicked", distinct_id=_contenders.USER_ID, properties=properties)
            accepted += result is not None
        else:
            ok, _ = track(_contenders.USER_ID, "Button Clicked", properties)
            accepted += bool(ok)
    calls_s = time.perf_counter() - t0
    at_return = now() - base

    # Settle: our dispatcher may still be moving events into the legs' queues.
    deadline = time.monotonic() + args.settle
    last = now()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        cur = now()
        if pending(client) == 0 and abs(cur - last) <= 0.005 * max(abs(last - base), 1):
            break
        last = cur
    settled = now() - base
    peak = (tracemalloc.get_traced_memory()[1] - base) if traced else None
    result = {
        "contender": args.contender,
        "mode": args.mode,
        "events": args.events,
        "accepted": accepted,
        "calls_s": calls_s,
        "at_return": at_return,
        "settled": settled,
        "peak": peak,
        "still_dispatching": pending(client),
        "settle_s": args.settle - max(0.0, deadline - time.monotonic()),
    }
    print(json.dumps(result), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
