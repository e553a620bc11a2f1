"""What ``@flush_after`` costs a serverless invocation, against a loopback capture server.

Each invocation is a handler making 3 ``track`` calls; its wall time is
measured from the call to the return, flush included. Configurations:

- ``no flush``: the same handler undecorated (what an invocation costs when
  its events are left queued, and possibly lost, after it returns);
- ``PostHog only``, ``dual-write``: ``@flush_after`` with default settings;
- ``dual-write, upload_interval=0.05``: Segment's client sends a batch only
  at the end of its upload window (0.5 s by default) and cannot be told to
  send early, so its window bounds the flush; a shorter one shortens it.

The capture server runs in its own process (as a real endpoint would), on
127.0.0.1: the figures are this library's and the clients' own cost plus one
loopback round trip per leg, not a network's.

    .venv/bin/python benchmarks/serverless.py            # about 45 seconds
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from _server import ServerProcess, scrub_environment

from analytics_posthog import Client
from analytics_posthog.integrations.serverless import flush_after

INVOCATIONS = 40
CALLS = 3


def make(url: str, segment: bool, **settings: float) -> Client:
    return Client(
        "seg_key" if segment else None,
        host=url,
        posthog_api_key="phc_bench",
        posthog_host=url,
        **settings,
    )


def invocation(client: Client, flush: bool) -> Callable[[], None]:
    def handler() -> None:
        for n in range(CALLS):
            client.track("user-1", "Invoked", {"n": n})

    return flush_after(client=client)(handler) if flush else handler


def measure(server: ServerProcess, client: Client, flush: bool) -> list[float]:
    handler = invocation(client, flush)
    handler()  # the first call starts the client's threads and connections
    client.flush()
    times: list[float] = []
    for _ in range(INVOCATIONS):
        started = time.perf_counter()
        handler()
        times.append(time.perf_counter() - started)
        time.sleep(0.05)  # between invocations, as a platform's would be
    client.flush()
    return times


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "median": statistics.median(ordered) * 1000,
        "p90": ordered[int(len(ordered) * 0.9) - 1] * 1000,
        "max": ordered[-1] * 1000,
    }


def main() -> None:
    scrub_environment()
    server = ServerProcess().start()
    try:
        configs = [
            ("no flush (dual-write)", dict(segment=True), False),
            ("PostHog only", dict(segment=False), True),
            ("dual-write", dict(segment=True), True),
            ("dual-write, upload_interval=0.05", dict(segment=True, upload_interval=0.05), True),
            ("dual-write, upload_interval=0.01", dict(segment=True, upload_interval=0.01), True),
        ]
        print(
            "%d invocations of %d track calls each; wall time per invocation (ms)"
            % (INVOCATIONS, CALLS)
        )
        print("%-36s %8s %8s %8s" % ("", "median", "p90", "max"))
        for name, settings, flush in configs:
            client = make(server.url, **settings)  # type: ignore[arg-type]
            figures = summary(measure(server, client, flush))
            client.shutdown()
            print(
                "%-36s %8.2f %8.2f %8.2f"
                % (name, figures["median"], figures["p90"], figures["max"])
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
