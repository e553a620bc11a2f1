"""Where the web workload's added time goes, for Segment's client and ours.

``run.py``'s web scenario gives one figure per call: what the calls and the
client's background threads add to the requests, plus the work left over
when a block ends. This splits that figure, on the same workload, by running
each of our clients twice: as it is, and with its dispatcher held off during
the blocks (its quiet period set to an hour, so all mapping and delivery
waits for the ``flush()`` after the block). The second run's in-request time
is what the calls cost on the caller's thread, in situ; the difference to
the first is what the background work costs the requests it overlaps; its
left-over time is all the client's background work per call.

    .venv/bin/python benchmarks/web_breakdown.py            # about 3 minutes
    .venv/bin/python benchmarks/web_breakdown.py --quick    # about 1 minute
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import run
from _contenders import BY_NAME, PAYLOADS
from _server import ServerProcess, scrub_environment

import analytics_posthog._delivery.dispatcher as dispatcher

#: (label, contender, dispatcher held off during the blocks)
VARIANTS = (
    ("segment", "segment", False),
    ("ours", "ours", False),
    ("ours, dispatcher held off", "ours", True),
    ("ours-dual", "ours-dual", False),
    ("ours-dual, dispatcher held off", "ours-dual", True),
)
HELD_OFF_QUIET = 3600.0


def measure(
    server: ServerProcess, size: int, payload: str, rounds: int, pairs: int
) -> dict[str, dict[str, list[float]]]:
    """Per variant, per block pair: µs per call added inside the requests, and left over after the block."""
    per_block = 120
    block_calls = run.CALLS_PER_REQUEST * per_block
    samples: dict[str, dict[str, list[float]]] = {
        label: {"inside": [], "left": []} for label, _, _ in VARIANTS
    }
    quiet = dispatcher.QUIET
    for round_no in range(rounds):
        shift = round_no % len(VARIANTS)
        for label, name, held_off in VARIANTS[shift:] + VARIANTS[:shift]:
            run.progress("%s/%s, round %d" % (label, payload, round_no + 1))
            contender = BY_NAME[name]
            server.reset()
            client = contender.make(server.url)
            call = contender.caller(client, payload)
            calls = 0
            run.run_block(size, 30, call)
            calls += run.CALLS_PER_REQUEST * 30
            run.drain(client, label)
            try:
                for _ in range(pairs):
                    base = run.run_block(size, per_block, None)
                    run.drain(client, label)
                    dispatcher.QUIET = HELD_OFF_QUIET if held_off else quiet
                    with_calls = run.run_block(size, per_block, call)
                    dispatcher.QUIET = quiet
                    calls += block_calls
                    cpu = time.process_time()
                    run.drain(client, label)
                    left = time.process_time() - cpu
                    samples[label]["inside"].append(
                        (statistics.fmean(with_calls) - statistics.fmean(base))
                        * per_block
                        / block_calls
                        * 1e6
                    )
                    samples[label]["left"].append(left / block_calls * 1e6)
            finally:
                dispatcher.QUIET = quiet
            note = run.finish(server, client, contender, calls, label)
            if note:
                raise SystemExit("%s: %s" % (label, note))
    return samples


def report(payload: str, samples: dict[str, dict[str, list[float]]]) -> list[list[Any]]:
    def median(label: str, key: str) -> float:
        return statistics.median(samples[label][key])

    rows = []
    for label, _, _held_off in VARIANTS:
        inside = samples[label]["inside"]
        total = [a + b for a, b in zip(inside, samples[label]["left"], strict=False)]
        lo, hi = run.median_ci(total)
        background = ""
        if label in ("ours", "ours-dual"):
            background = run.fmt(
                median(label, "inside") - median(label + ", dispatcher held off", "inside")
            )
        rows.append(
            [
                label,
                payload,
                "%s (%s–%s)" % (run.fmt(statistics.median(total)), run.fmt(lo), run.fmt(hi)),
                run.fmt(median(label, "inside")),
                background,
                run.fmt(median(label, "left")),
            ]
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 rounds of 2 pairs instead of 4 of 5"
    )
    args = parser.parse_args(argv)
    rounds, pairs = (2, 2) if args.quick else (4, 5)
    scrub_environment()
    head = run.header(args.quick)
    run.progress(head)
    server = ServerProcess().start()
    try:
        size = run.calibrate_work()
        rows: list[list[Any]] = []
        for payload in PAYLOADS:
            rows += report(payload, measure(server, size, payload, rounds, pairs))
    finally:
        server.stop()
    print(head + "\n")
    print(
        "Medians over %d block pairs of the web workload (%d requests each, %d calls per request, %.1f ms idle between "
        "requests); µs per call.\n" % (rounds * pairs, 120, run.CALLS_PER_REQUEST, run.GAP * 1e3)
    )
    print(
        run.table(
            [
                "variant",
                "payload",
                "added in all (95% interval)",
                "inside the requests",
                "of which background work",
                "left over after the block",
            ],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
