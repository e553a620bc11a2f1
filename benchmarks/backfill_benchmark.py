"""Lines per second of ``export`` and ``replay --dry-run`` on a generated
Segment archive, and events per second of ``replay`` sending to the loopback
capture server.

The archive is laid out as Segment's S3 destination writes it
(``segment-logs/<source>/<day in ms>/<n>.gz``, gzipped JSON lines), with
messages shaped like analytics.js and server-library traffic: every type,
full context, Segment's own fields (``receivedAt``, ``sentAt``, ...)::

    python benchmarks/backfill_benchmark.py [--lines 1000000] [--jobs 1 2] [--send 20000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone

TYPES = ("track", "track", "track", "page", "identify", "screen", "group", "alias", "track", "page")
LINES_PER_FILE = 20000
DAY0 = datetime(2023, 1, 1, tzinfo=timezone.utc)


def message(i: int, day: int, people: int = 9973) -> dict:
    type_ = TYPES[i % len(TYPES)]
    moment = DAY0 + timedelta(days=day, seconds=(i * 7) % 86400, milliseconds=i % 1000)
    stamp = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    msg = {
        "type": type_,
        "messageId": "ajs-next-%d-%032x" % (i, i * 2654435761 % (1 << 128)),
        "timestamp": stamp,
        "originalTimestamp": stamp,
        "sentAt": stamp,
        "receivedAt": stamp,
        "userId": "user-%d" % (i % people),
        "anonymousId": "4f9c2f3e-%04x-4a1b-9c3d-%012x" % (i % 65536, i),
        "channel": "client",
        "version": 2,
        "projectId": "Zs1xQ2abcd",
        "integrations": {},
        "context": {
            "ip": "203.0.%d.%d" % (i % 256, i % 199),
            "library": {"name": "analytics.js", "version": "next-1.70.0"},
            "locale": "en-US",
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.4 Safari/605.1.15",
            "page": {
                "path": "/cart",
                "referrer": "https://www.google.com/",
                "search": "?utm_source=news",
                "title": "Your cart",
                "url": "https://shop.example.com/cart?utm_source=news",
            },
            "campaign": {"source": "news", "medium": "email", "name": "spring"},
            "timezone": "Europe/Berlin",
            "os": {"name": "Mac OS X", "version": "10.15.7"},
        },
    }
    if type_ == "track":
        msg.update(
            event="Order Completed",
            properties={
                "order_id": "o-%d" % i,
                "revenue": 42.5,
                "currency": "EUR",
                "coupon": None,
                "products": [
                    {
                        "product_id": "p-%d" % (i % 500),
                        "sku": "SKU-%d" % (i % 500),
                        "price": 21.25,
                        "quantity": 2,
                    }
                ],
            },
        )
    elif type_ in ("page", "screen"):
        msg.update(name="Cart", category="Shop", properties={"path": "/cart", "title": "Your cart"})
    elif type_ == "identify":
        msg["traits"] = {
            "email": "user-%d@example.com" % i,
            "plan": "pro",
            "created_at": "2022-03-04T05:06:07Z",
        }
    elif type_ == "group":
        msg.update(groupId="acme-%d" % (i % 50), traits={"name": "Acme", "employees": 120})
    else:
        msg["previousId"] = msg["anonymousId"]
    return msg


def generate(root: str, lines: int, days: int, people: int = 9973) -> int:
    """The archive under ``root``; its size in bytes."""
    per_day = max(lines // days, 1)
    written = size = 0
    day = 0
    while written < lines:
        folder = os.path.join(
            root, "segment-logs", "src", str(int((DAY0 + timedelta(days=day)).timestamp() * 1000))
        )
        os.makedirs(folder, exist_ok=True)
        in_day = min(per_day, lines - written)
        for part in range(0, in_day, LINES_PER_FILE):
            path = os.path.join(folder, "%d.gz" % part)
            count = min(LINES_PER_FILE, in_day - part)
            data = "".join(
                json.dumps(message(written + k, day, people)) + "\n" for k in range(count)
            )
            with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as f:
                f.write(data)
            size += os.path.getsize(path)
            written += count
        day += 1
    return size


def timed(args: list, env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and its workers): on a busy
    machine CPU time gives the one-core figure that wall time hides."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    code = subprocess.call(
        [sys.executable, "-m", "analytics_posthog", *args], stdout=subprocess.DEVNULL, env=env
    )
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        raise SystemExit("%s exited %d" % (" ".join(args[:1]), code))
    return elapsed, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def report(label: str, lines: int, wall: float, cpu: float) -> str:
    return (
        "%s: %.1fs, %.0f lines/s wall; %.1f CPU s, %.0f lines per CPU second; load average %.1f"
        % (label, wall, lines / wall, cpu, lines / cpu, os.getloadavg()[0])
    )


def send(archive: str, env: dict, count: int) -> str:
    server = subprocess.Popen(
        [sys.executable, "-m", "analytics_posthog.testing", "--count-only"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().split()[-1]  # type: ignore[union-attr]
        elapsed, _ = timed(
            [
                "replay",
                archive,
                "--rate",
                "1000000",
                "--posthog-api-key",
                "phc_bench",
                "--posthog-host",
                url,
                "--checkpoint",
                os.path.join(os.path.dirname(archive), "cp.json"),
            ],
            env,
        )
        with urllib.request.urlopen(url + "/_stats") as response:
            events = json.load(response)["events"]
    finally:
        server.terminate()
        server.wait()
    return (
        "replay (sending, --rate unlimited): %d lines in %.1fs, %.0f events/s; the server counted %d events"
        % (count, elapsed, count / elapsed, events)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=100)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--people", type=int, default=9973, help="distinct userIds")
    parser.add_argument(
        "--send",
        type=int,
        default=20000,
        help="lines of a second archive replayed over HTTP (0: skip)",
    )
    args = parser.parse_args()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    with tempfile.TemporaryDirectory() as tmp:
        archive = os.path.join(tmp, "segment-logs")
        started = time.monotonic()
        size = generate(tmp, args.lines, args.days, args.people)
        print(
            "archive: %d lines, %d people, %d gzip files, %.1f MB, %d days (generated in %.0fs)"
            % (
                args.lines,
                args.people,
                sum(len(f) for _, _, f in os.walk(archive)),
                size / 1e6,
                args.days,
                time.monotonic() - started,
            ),
            flush=True,
        )
        for jobs in args.jobs:
            out = os.path.join(tmp, "out-%d" % jobs)
            print(
                report(
                    "export --jobs %d" % jobs,
                    args.lines,
                    *timed(["export", archive, "--out", out, "--jobs", str(jobs)], env),
                )
            )
            print(
                report(
                    "replay --dry-run --jobs %d" % jobs,
                    args.lines,
                    *timed(["replay", archive, "--dry-run", "--jobs", str(jobs)], env),
                ),
                flush=True,
            )
        if args.send:
            small = os.path.join(tmp, "small")
            generate(small, args.send, 10)
            print(send(os.path.join(small, "segment-logs"), env, args.send))
    return 0


if __name__ == "__main__":
    sys.exit(main())
