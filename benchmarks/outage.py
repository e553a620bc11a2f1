"""A 15-second outage in the middle of steady traffic: what each client loses.

Each contender gets its own loopback capture server. Small track calls go to
all four at the same steady rate for 25 seconds; from second 5 to second 20
every server is down (answering 503, or refusing connections, in turn).
Then each client is flushed and shut down, and the events each server
received (distinct uuids for PostHog, distinct messageIds for Segment) are
compared with the calls made. Every client runs with its defaults (posthog's ``max_retries`` is 3, Segment's
and ours 10). The posthog contender runs with our retry jitter, as every
posthog client in a process with one of ours does; it only lengthens waits.

    .venv/bin/python benchmarks/outage.py          # about a minute
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from _contenders import CONTENDERS, Contender, call_with_timeout
from _server import scrub_environment

import analytics_posthog
from analytics_posthog.testing import CaptureServer

RATE = 200  # calls per second, per contender
SECONDS = 25.0
OUTAGE_START, OUTAGE_SECONDS = 5.0, 15.0
SHUTDOWN_TIMEOUT = 120.0


def run_outage(kind: str) -> list[list[Any]]:
    servers = {c.name: CaptureServer().start() for c in CONTENDERS}
    clients = {c.name: c.make(servers[c.name].url) for c in CONTENDERS}
    calls = {c.name: c.caller(clients[c.name], "small") for c in CONTENDERS}
    made = 0
    started = time.monotonic()
    outage_begun = False
    while True:
        elapsed = time.monotonic() - started
        if elapsed >= SECONDS:
            break
        if not outage_begun and elapsed >= OUTAGE_START:
            for server in servers.values():
                if kind == "503":
                    server.fail(503, seconds=OUTAGE_SECONDS)
                else:
                    server.refuse(seconds=OUTAGE_SECONDS)
            outage_begun = True
        for call in calls.values():
            call()
        made += 1
        time.sleep(max(0.0, started + made / RATE - time.monotonic()))
    finished: dict[str, bool] = {}

    def shut(name: str) -> None:
        finished[name] = call_with_timeout(clients[name].shutdown, SHUTDOWN_TIMEOUT)

    shutters = [threading.Thread(target=shut, args=(c.name,)) for c in CONTENDERS]
    for thread in shutters:
        thread.start()
    for thread in shutters:
        thread.join()
    rows = []
    for contender in CONTENDERS:
        server = servers[contender.name]
        rows.append(row(kind, contender, server, made, finished[contender.name]))
        server.stop()
    return rows


def row(
    kind: str, contender: Contender, server: CaptureServer, made: int, finished: bool
) -> list[Any]:
    received = []
    if contender.per_call[0]:
        received.append(("PostHog", [e["uuid"] for e in server.events]))
    if contender.per_call[1]:
        received.append(("Segment", [m["messageId"] for m in server.segment_messages]))
    lost = ", ".join(
        "%s %d (%.1f%%)" % (leg, made - len(set(ids)), 100.0 * (made - len(set(ids))) / made)
        for leg, ids in received
    )
    twice = ", ".join("%s %d" % (leg, len(ids) - len(set(ids))) for leg, ids in received)
    answered_503 = sum(1 for r in server.requests if r.status == 503)
    note = "" if finished else "shutdown() still running after %.0f s" % SHUTDOWN_TIMEOUT
    return [kind, contender.name, made, lost, twice, answered_503, note]


def main() -> int:
    scrub_environment()
    print(
        "Benchmark run %s · analytics_posthog %s\n"
        % (time.strftime("%Y-%m-%d %H:%M"), analytics_posthog.__version__)
    )
    print(
        "%d calls/s per client for %.0f s; every server down from second %.0f to %.0f; "
        "then shutdown(). Lost = calls whose event never arrived.\n"
        % (RATE, SECONDS, OUTAGE_START, OUTAGE_START + OUTAGE_SECONDS)
    )
    rows = []
    for kind in ("503", "refused"):
        print("[%s outage]" % kind, file=sys.stderr, flush=True)
        rows += run_outage(kind)
    print("| outage | contender | calls | lost | received twice | requests answered 503 | notes |")
    print("|---|---|---:|---:|---:|---:|---|")
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
