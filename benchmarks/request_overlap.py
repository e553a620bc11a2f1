"""Does our background work run while a request runs? A trace of the web workload.

Runs ``run.py``'s simulated requests (3 calls each, 1.5 ms idle between them)
with one of our clients, and records when each request ran, when our
dispatcher delivered each message, and when each leg's consumer uploaded a
batch (posthog's and Segment's ``Consumer.request``, timed by a wrapper for
this run only). It prints how many deliveries and uploads overlapped a
request, and how the requests' time above the median is shared out among
the requests that overlapped nothing, a delivery, or an upload; and, for
comparison, the same requests' time above the median without any calls.

    .venv/bin/python benchmarks/request_overlap.py            # about 20 seconds
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import posthog.consumer as posthog_consumer
import run
import segment.analytics.consumer as segment_consumer
from _contenders import BY_NAME, PAYLOADS
from _server import ServerProcess, scrub_environment

Span = tuple[str, float, float]
REQUESTS = 1500


def timed(kind: str, spans: list[Span], fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spans.append((kind, started, time.perf_counter()))

    return wrapper


def trace(
    server: ServerProcess, size: int, name: str, payload: str, uploads: list[Span]
) -> dict[str, Any]:
    deliveries: list[Span] = []
    contender = BY_NAME[name]
    client = contender.make(server.url)
    dispatcher = client.delivery.dispatcher
    dispatcher._deliver = timed("a delivery", deliveries, dispatcher._deliver)
    call = contender.caller(client, payload)
    run.run_block(size, 60, call)
    run.drain(client, name)
    deliveries.clear()
    uploads.clear()
    requests: list[tuple[float, float]] = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        run.request_work(size)
        call()
        call()
        call()
        requests.append((started, time.perf_counter()))
        time.sleep(run.GAP)
    spans = deliveries + [span for span in uploads if span[1] < requests[-1][1]]
    client.shutdown()

    def during_a_request(a: float, b: float) -> bool:
        return any(a < end and b > start for start, end in requests)

    median = statistics.median(end - start for start, end in requests)
    excess: dict[str, float] = {}
    for start, end in requests:
        over = end - start - median
        if over > 0:
            kinds = sorted({kind for kind, a, b in spans if a < end and b > start})
            key = " and ".join(kinds) or "nothing of ours"
            excess[key] = excess.get(key, 0.0) + over
    return {
        "median": median,
        "excess": excess,
        "counts": {
            kind: sum(1 for k, _, _ in spans if k == kind) for kind in ("a delivery", "an upload")
        },
        "during": {
            kind: sum(1 for k, a, b in spans if k == kind and during_a_request(a, b))
            for kind in ("a delivery", "an upload")
        },
    }


def main() -> int:
    scrub_environment()
    head = run.header(False)
    uploads: list[Span] = []
    posthog_consumer.Consumer.request = timed(
        "an upload", uploads, posthog_consumer.Consumer.request
    )  # type: ignore[method-assign]
    segment_consumer.Consumer.request = timed(
        "an upload", uploads, segment_consumer.Consumer.request
    )  # type: ignore[method-assign]
    server = ServerProcess().start()
    try:
        size = run.calibrate_work()
        baseline = run.run_block(size, REQUESTS, None)
        median = statistics.median(baseline)
        lines = [
            head,
            "",
            "%d requests of the web workload per client and payload." % REQUESTS,
            "",
            "**no calls**: median request %.0f µs; time above the median: %.1f µs a request."
            % (median * 1e6, sum(max(0.0, t - median) for t in baseline) / REQUESTS * 1e6),
            "",
        ]
        for payload in PAYLOADS:
            for name in ("ours", "ours-dual"):
                run.progress("%s/%s" % (name, payload))
                result = trace(server, size, name, payload, uploads)
                counts, during = result["counts"], result["during"]
                lines.append(
                    "**%s, %s**: median request %.0f µs; %d deliveries, %d of them during a request; "
                    "%d uploads, %d of them during a request."
                    % (
                        name,
                        payload,
                        result["median"] * 1e6,
                        counts["a delivery"],
                        during["a delivery"],
                        counts["an upload"],
                        during["an upload"],
                    )
                )
                for key, seconds in sorted(result["excess"].items(), key=lambda item: -item[1]):
                    lines.append(
                        "- time above the median, in requests that overlapped %s: %.1f µs a request"
                        % (key, seconds / REQUESTS * 1e6)
                    )
                lines.append("")
    finally:
        server.stop()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
