"""CPU cost of each stage an event goes through, one thread, no HTTP.

Where the time of ``run.py``'s web and throughput scenarios goes: for each
contender, the work done on the caller's thread and the work its background
threads do later (mapping, posthog's ``capture()``, each consumer's per-event
JSON sizing and its share of a 100-event batch body; for dual-write, the
Segment leg's copy and Segment's consumer too). Everything here holds
the interpreter lock, so in a busy process the totals are what each event
takes away from the app, wherever it runs. The posthog contender runs
posthog's own functions; ours runs them with ``posthog_speedups`` (installed by ``posthog_internals``). The
posthog clients use ``send=False`` (posthog then runs the whole of
``capture()`` but does not queue the event), so the HTTP exchange itself is
not included.

    .venv/bin/python benchmarks/cost_breakdown.py
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import posthog  # noqa: E402
from _contenders import PAYLOADS, _capture_caller, _track_caller  # noqa: E402
from posthog.request import DatetimeSerializer as PostHogSerializer  # noqa: E402
from segment.analytics import Client as SegmentClient  # noqa: E402
from segment.analytics.request import DatetimeSerializer as SegmentSerializer  # noqa: E402

import analytics_posthog  # noqa: E402
from analytics_posthog import posthog_internals  # noqa: E402
from analytics_posthog._delivery.posthog_leg import PostHogLeg  # noqa: E402
from analytics_posthog._delivery.segment_leg import segment_message  # noqa: E402
from analytics_posthog.mapping import to_posthog  # noqa: E402

BATCH = 100


def per_call(fn: Callable[[], Any], n: int = 2000, repeats: int = 5) -> float:
    """Best of ``repeats`` runs, µs per call: the least disturbed by the rest of the machine."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - started) / n)
    return best * 1e6


def final_event(
    client_kwargs: dict[str, Any], send: Callable[[posthog.Client], Any]
) -> dict[str, Any]:
    """The event (after posthog's enrichment) that ``send`` makes a client queue.

    A ``before_send`` hook sees it; the timed clients have none, since posthog
    cleans the whole event again after the hook.
    """
    seen: list[dict[str, Any]] = []
    send(
        posthog.Client(
            "phc_x", send=False, before_send=lambda m: seen.append(m) or m, **client_kwargs
        )
    )
    return seen[-1]


def posthog_consumer_costs(event: dict[str, Any]) -> list[tuple[str, float]]:
    batch = [event] * BATCH
    return [
        (
            "  consumer: size check",
            per_call(lambda: len(json.dumps(event, cls=PostHogSerializer).encode())),
        ),
        (
            "  consumer: batch body, per event",
            per_call(lambda: json.dumps({"batch": batch}, cls=PostHogSerializer), n=40) / BATCH,
        ),
    ]


def segment_consumer_costs(
    msg: dict[str, Any], prefix: str = "  consumer"
) -> list[tuple[str, float]]:
    batch = [msg] * BATCH
    return [
        (
            prefix + ": size check",
            per_call(lambda: len(json.dumps(msg, cls=SegmentSerializer).encode())),
        ),
        (
            prefix + ": batch body, per event",
            per_call(lambda: json.dumps({"batch": batch}, cls=SegmentSerializer), n=40) / BATCH,
        ),
    ]


def stages(payload: str) -> dict[str, list[tuple[str, float]]]:
    segment = SegmentClient("wk", send=False)
    ok, seg_msg = _track_caller(segment, payload)()
    rows: dict[str, list[tuple[str, float]]] = {
        "segment": [("caller: track()", per_call(_track_caller(segment, payload)))]
        + segment_consumer_costs(seg_msg)
    }

    posthog_internals.restore_speedups()
    rows["posthog"] = [
        (
            "caller: capture()",
            per_call(_capture_caller(posthog.Client("phc_x", send=False), payload)),
        )
    ] + posthog_consumer_costs(final_event({}, lambda ph: _capture_caller(ph, payload)()))

    ours = analytics_posthog.Client(posthog_api_key="phc_x", send=False)
    ok, msg = _track_caller(ours, payload)()
    leg = PostHogLeg(
        posthog.Client("phc_x", send=False), "segment_group"
    )  # puts the speed-ups back, as our client does
    rows["ours"] = [
        ("caller: track()", per_call(_track_caller(ours, payload))),
        ("  background: mapping", per_call(lambda: to_posthog(msg, "segment_group"))),
        ("  background: mapping + capture()", per_call(lambda: leg.send(msg))),
    ] + posthog_consumer_costs(
        final_event({}, lambda ph: PostHogLeg(ph, "segment_group").send(msg))
    )
    rows["ours-dual"] = (
        rows["ours"]
        + [("  background: Segment leg's message", per_call(lambda: segment_message(msg, True)))]
        + segment_consumer_costs(segment_message(msg, True), prefix="  Segment's consumer")
    )
    return rows


def main() -> None:
    print("| contender | payload | stage | µs per event |\n|---|---|---|---:|")
    for payload in PAYLOADS:
        for name, rows in stages(payload).items():
            total = sum(cost for label, cost in rows if label != "  background: mapping")
            for label, cost in rows:
                print("| %s | %s | %s | %.1f |" % (name, payload, label, cost))
            print("| %s | %s | **total** | **%.1f** |" % (name, payload, total))


if __name__ == "__main__":
    main()
