"""How many events/s ``analytics-posthog replay`` sends, end to end.

Generates Segment messages (a realistic mix of types and context), starts the
loopback capture server in its own process (count-only, so its bookkeeping
stays out of the measurement), replays the file into it over HTTP with the
real posthog client, and checks every event arrived::

    python benchmarks/replay_benchmark.py [--count 20000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

TYPES = ("track", "track", "track", "page", "identify", "screen", "group", "alias")
CONTEXT = {
    "ip": "203.0.113.9",
    "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15",
    "page": {"url": "https://shop.example.com/cart?x=1", "path": "/cart", "title": "Cart"},
    "os": {"name": "macOS", "version": "14.4"},
    "library": {"name": "analytics.js", "version": "4.1.0"},
}


def message(i: int) -> dict:
    type_ = TYPES[i % len(TYPES)]
    msg = {
        "type": type_,
        "messageId": "bench-%d" % i,
        "timestamp": "2023-%02d-%02dT10:%02d:%02d.%03dZ" % (i % 12 + 1, i % 28 + 1, i % 60, i % 60, i % 1000),
        "userId": "user-%d" % (i % 997),
        "anonymousId": "anon-%d" % (i % 991),
        "context": CONTEXT,
    }
    if type_ == "track":
        msg.update(event="Order Completed", properties={"order_id": "o-%d" % i, "revenue": 42.5, "currency": "EUR"})
    elif type_ in ("page", "screen"):
        msg.update(name="Cart", category="Shop", properties={"step": 2})
    elif type_ == "identify":
        msg["traits"] = {"email": "user-%d@example.com" % i, "plan": "pro"}
    elif type_ == "group":
        msg.update(groupId="acme-%d" % (i % 50), traits={"name": "Acme"})
    else:
        msg["previousId"] = "anon-%d" % (i % 991)
    return msg


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "export.json.gz")
        with gzip.open(path, "wt", encoding="utf-8") as f:
            for i in range(args.count):
                f.write(json.dumps(message(i)) + "\n")
        server = subprocess.Popen(
            [sys.executable, "-m", "analytics_posthog.testing", "--count-only"], stdout=subprocess.PIPE, text=True
        )
        try:
            url = server.stdout.readline().split()[-1]  # type: ignore[union-attr]
            started = time.monotonic()
            code = subprocess.call(
                [sys.executable, "-m", "analytics_posthog", "replay", path, "--posthog-api-key", "phc_bench", "--posthog-host", url]
            )
            elapsed = time.monotonic() - started
            with urllib.request.urlopen(url + "/_stats") as response:
                stats = json.load(response)
        finally:
            server.terminate()
            server.wait()
    print(
        "replayed %d messages in %.2fs: %.0f events/s end to end (process start included); "
        "the server counted %d events; exit code %d" % (args.count, elapsed, args.count / elapsed, stats["events"], code)
    )
    return 0 if code == 0 and stats["events"] == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
