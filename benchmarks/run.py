"""Benchmark analytics-posthog against segment-analytics-python and posthog.

    .venv/bin/python benchmarks/run.py            # full run (~3-4 minutes on 2 cores)
    .venv/bin/python benchmarks/run.py --quick    # shorter run, same tables

Prints markdown tables (progress goes to stderr) and writes them to
benchmarks/results.md. See benchmarks/README.md for what each scenario means.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import hashlib
import json
import logging
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from _contenders import CONTENDERS, PAYLOADS, Contender, call_with_timeout  # noqa: E402
from _server import ServerProcess, scrub_environment  # noqa: E402

perf = time.perf_counter
T0 = perf()


def progress(text: str) -> None:
    print("[%6.1fs] %s" % (perf() - T0, text), file=sys.stderr, flush=True)


# -- settings ------------------------------------------------------------------

FULL = dict(
    call_batches=5,
    call_n=2000,
    web_rounds=4,
    web_pairs=6,
    web_block_requests=120,
    web_warmup=60,
    thr_n=5000,
    thr_repeats=3,
    mem_events=100_000,
    mem_settle=45.0,
    mem_traced_events=10_000,
    mem_traced_settle=20.0,
)
QUICK = dict(
    call_batches=3,
    call_n=1000,
    web_rounds=2,
    web_pairs=2,
    web_block_requests=120,
    web_warmup=30,
    thr_n=2000,
    thr_repeats=1,
    mem_events=20_000,
    mem_settle=30.0,
    mem_traced_events=0,
    mem_traced_settle=0.0,
)
WORK_TARGET = 300e-6  # CPU per simulated request
GAP = 0.0015  # idle time between requests
CALLS_PER_REQUEST = 3
FLUSH_TIMEOUT = 120.0  # flush()/shutdown() of one client
ARRIVAL_TIMEOUT = 20.0  # after flush returned, for the server to count everything


# -- helpers ---------------------------------------------------------------------


class Lost(Exception):
    pass


def expected(contender: Contender, calls: int) -> tuple[int, int]:
    return contender.per_call[0] * calls, contender.per_call[1] * calls


def drain(client: Any, what: str) -> None:
    if not call_with_timeout(client.flush, FLUSH_TIMEOUT):
        raise Lost("%s: flush() still running after %.0fs" % (what, FLUSH_TIMEOUT))


def finish(
    server: ServerProcess, client: Any, contender: Contender, calls: int, what: str
) -> str | None:
    """Shut the client down and check that the server counted every event; a note if not."""
    notes = []
    if not call_with_timeout(client.shutdown, FLUSH_TIMEOUT):
        notes.append("shutdown() still running after %.0fs" % FLUSH_TIMEOUT)
    want_ph, want_seg = expected(contender, calls)
    ok, got = server.wait_for(want_ph, want_seg, ARRIVAL_TIMEOUT, poll=0.01)
    if not ok:
        notes.append(
            "lost %d (posthog %d/%d, segment %d/%d)"
            % (
                want_ph - got["events"] + want_seg - got["segment"],
                got["events"],
                want_ph,
                got["segment"],
                want_seg,
            )
        )
    extra = got["events"] - want_ph + got["segment"] - want_seg
    if extra > 0:
        notes.append("%d extra (duplicates)" % extra)
    if notes:
        progress("  %s: %s" % (what, "; ".join(notes)))
    return "; ".join(notes) or None


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return "%.2fx" % (a / b)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---:" if i else "---" for i in range(len(headers))) + "|",
    ]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


# -- scenario 1: isolated call cost ------------------------------------------------


def scenario_calls(
    server: ServerProcess, cfg: dict[str, Any]
) -> dict[tuple[str, str], dict[str, Any]]:
    results = {}
    for payload in PAYLOADS:
        for contender in CONTENDERS:
            what = "call cost %s/%s" % (contender.name, payload)
            progress(what)
            server.reset()
            client = contender.make(server.url)
            call = contender.caller(client, payload)
            n = cfg["call_n"]
            calls = 0
            per_call = []
            note = None
            try:
                for _ in range(200):  # warm-up: threads started, connection open
                    call()
                calls += 200
                drain(client, what)
                for _ in range(cfg["call_batches"]):
                    gc.collect()
                    t = perf()
                    for _ in range(n):
                        call()
                    per_call.append((perf() - t) / n * 1e6)
                    calls += n
                    drain(client, what)
            except Lost as error:
                note = str(error)
            note = finish(server, client, contender, calls, what) or note
            results[(contender.name, payload)] = {
                "median": statistics.median(per_call) if per_call else None,
                "min": min(per_call) if per_call else None,
                "max": max(per_call) if per_call else None,
                "note": note,
            }
    return results


def report_calls(res: dict[tuple[str, str], dict[str, Any]], cfg: dict[str, Any]) -> str:
    rows = []
    for payload in PAYLOADS:
        seg = res[("segment", payload)]["median"]
        ph = res[("posthog", payload)]["median"]
        for c in CONTENDERS:
            r = res[(c.name, payload)]
            rows.append(
                [
                    c.name,
                    payload,
                    fmt(r["median"], 1),
                    "%s–%s" % (fmt(r["min"], 1), fmt(r["max"], 1)),
                    ratio(r["median"], seg),
                    ratio(r["median"], ph),
                    r["note"] or "",
                ]
            )
    return (
        "### 1. Isolated call cost (µs per call on the caller thread)\n\n"
        "Median over %d batches of %d calls; the queue is flushed between batches.\n\n"
        % (cfg["call_batches"], cfg["call_n"])
        + table(
            [
                "contender",
                "payload",
                "µs/call (median)",
                "range over batches",
                "vs segment",
                "vs posthog",
                "notes",
            ],
            rows,
        )
    )


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else ("%." + str(digits) + "f") % value


# -- scenario 2: simulated web workload -------------------------------------------


def request_work(size: int) -> int:
    """Pure-Python CPU work standing in for a request handler: build a dict, serialise it."""
    data = {
        "field_%d" % i: {"id": i, "name": "item %d" % i, "price": i * 1.25, "tags": ["a", "b"]}
        for i in range(size)
    }
    return len(json.dumps(data))


def calibrate_work() -> int:
    """Entries that make ``request_work`` take WORK_TARGET (median of three calibrations)."""
    return int(statistics.median(_calibrate_once() for _ in range(3)))


def _calibrate_once() -> int:
    size = 20
    while True:
        samples = []
        for _ in range(50):
            t = perf()
            request_work(size)
            samples.append(perf() - t)
        took = statistics.median(samples)
        if abs(took - WORK_TARGET) / WORK_TARGET < 0.05 or size > 100_000:
            return size
        size = max(1, int(size * WORK_TARGET / took))


def run_block(size: int, requests: int, call: Callable[[], Any] | None) -> list[float]:
    times = []
    sleep = time.sleep
    for _ in range(requests):
        t = perf()
        request_work(size)
        if call is not None:
            call()
            call()
            call()
        times.append(perf() - t)
        sleep(GAP)
    return times


def scenario_web(
    server: ServerProcess, cfg: dict[str, Any], size: int
) -> dict[tuple[str, str], dict[str, Any]]:
    """Rounds of block pairs, the contenders in a rotating order within each round,
    so that a slow spell of the machine falls on all of them rather than on one."""
    results = {}
    per_block = cfg["web_block_requests"]
    block_calls = CALLS_PER_REQUEST * per_block
    for payload in PAYLOADS:
        runs: dict[str, dict[str, list[Any]]] = {
            c.name: {"added": [], "left": [], "base": [], "with": [], "notes": []}
            for c in CONTENDERS
        }
        for round_no in range(cfg["web_rounds"]):
            shift = round_no % len(CONTENDERS)
            for contender in CONTENDERS[shift:] + CONTENDERS[:shift]:
                what = "web workload %s/%s, round %d" % (contender.name, payload, round_no + 1)
                progress(what)
                run = runs[contender.name]
                server.reset()
                client = contender.make(server.url)
                call = contender.caller(client, payload)
                calls = 0
                try:
                    run_block(size, cfg["web_warmup"], call)
                    calls += CALLS_PER_REQUEST * cfg["web_warmup"]
                    drain(client, what)
                    for _ in range(cfg["web_pairs"]):
                        base = run_block(size, per_block, None)
                        drain(client, what)
                        with_calls = run_block(size, per_block, call)
                        calls += block_calls
                        cpu = time.process_time()
                        drain(
                            client, what
                        )  # nothing of the client's left to do during the next baseline
                        left = time.process_time() - cpu
                        run["added"].append(
                            (
                                (statistics.fmean(with_calls) - statistics.fmean(base)) * per_block
                                + left
                            )
                            / block_calls
                            * 1e6
                        )
                        run["left"].append(left / block_calls * 1e6)
                        run["base"].append(base)
                        run["with"].append(with_calls)
                except Lost as error:
                    run["notes"].append(str(error))
                note = finish(server, client, contender, calls, what)
                if note:
                    run["notes"].append(note)
        for name, run in runs.items():
            added = run["added"]
            flat_base = [t for block in run["base"] for t in block]
            flat_with = [t for block in run["with"] for t in block]
            results[(name, payload)] = {
                "added": statistics.median(added) if added else None,
                "added_samples": added,
                "added_ci": median_ci(added),
                "base_mean": statistics.median([statistics.fmean(b) for b in run["base"]]) * 1e6
                if run["base"]
                else None,
                "with_mean": statistics.median([statistics.fmean(w) for w in run["with"]]) * 1e6
                if run["with"]
                else None,
                "base_p50": pct(flat_base, 0.5) * 1e6 if flat_base else None,
                "base_p99": pct(flat_base, 0.99) * 1e6 if flat_base else None,
                "p50": pct(flat_with, 0.5) * 1e6 if flat_with else None,
                "p99": pct(flat_with, 0.99) * 1e6 if flat_with else None,
                "leftover": statistics.median(run["left"]) if run["left"] else None,
                "note": "; ".join(run["notes"]) or None,
            }
    return results


BOOTSTRAP = 2000


def median_ci(samples: Sequence[float]) -> tuple[float | None, float | None]:
    """95% bootstrap interval of the median: how far the figure could move on a rerun."""
    if len(samples) < 2:
        return None, None
    rng = random.Random(0)
    medians = sorted(
        statistics.median(rng.choices(samples, k=len(samples))) for _ in range(BOOTSTRAP)
    )
    return medians[int(0.025 * BOOTSTRAP)], medians[int(0.975 * BOOTSTRAP) - 1]


def ratio_ci(ours: Sequence[float], theirs: Sequence[float]) -> tuple[float | None, float | None]:
    """95% bootstrap interval of median(ours) / median(theirs), each resampled on its own."""
    if len(ours) < 2 or len(theirs) < 2:
        return None, None
    rng = random.Random(1)
    ratios = []
    for _ in range(BOOTSTRAP):
        denominator = statistics.median(rng.choices(theirs, k=len(theirs)))
        if denominator > 0:
            ratios.append(statistics.median(rng.choices(ours, k=len(ours))) / denominator)
    if len(ratios) < BOOTSTRAP // 2:
        return None, None
    ratios.sort()
    return ratios[int(0.025 * len(ratios))], ratios[int(0.975 * len(ratios)) - 1]


def report_web(
    res: dict[tuple[str, str], dict[str, Any]], cfg: dict[str, Any], size: int, work_us: float
) -> str:
    rows = []
    for payload in PAYLOADS:
        seg = res[("segment", payload)]
        ph = res[("posthog", payload)]["added"]
        for c in CONTENDERS:
            r = res[(c.name, payload)]
            lo, hi = r["added_ci"]
            vs_segment = ratio(r["added"], seg["added"])
            if c.name != "segment":
                rlo, rhi = ratio_ci(r["added_samples"], seg["added_samples"])
                if rlo is not None:
                    vs_segment += " (%.2f–%.2f)" % (rlo, rhi)
            rows.append(
                [
                    c.name,
                    payload,
                    fmt(r["added"]),
                    "%s–%s" % (fmt(lo), fmt(hi)),
                    vs_segment,
                    ratio(r["added"], ph),
                    fmt(r["leftover"]),
                    fmt(r["base_mean"], 0),
                    fmt(r["with_mean"], 0),
                    "%s / %s" % (fmt(r["base_p50"], 0), fmt(r["base_p99"], 0)),
                    "%s / %s" % (fmt(r["p50"], 0), fmt(r["p99"], 0)),
                    r["note"] or "",
                ]
            )
    pairs = cfg["web_rounds"] * cfg["web_pairs"]
    return (
        "### 2. Simulated web workload (time added to a request, µs per analytics call)\n\n"
        "A request = %.0f µs (median baseline request) of pure-Python work (dict of %d entries built and JSON-serialised) + %d calls, "
        "then %.1f ms idle. Per contender, %d pairs of blocks of %d requests: a baseline block (no calls), then a block with calls; "
        "%d rounds of %d pairs, each round with a fresh client and the contenders in a rotated order. "
        "added/call = median over the pairs of (mean with calls − mean of the baseline) / %d, "
        "plus the work left over when the block ends: the process CPU time `flush()` takes after it, per call "
        "(charged in full, although a server would do it in its next idle gaps). "
        "Request time = work + calls on the main thread (background threads' GIL use included). "
        "The intervals are 95%% bootstrap intervals of the median (and of the ratio of medians) "
        "over this run's block pairs; they do not cover the machine's changes from one run to the next.\n\n"
        % (
            work_us,
            size,
            CALLS_PER_REQUEST,
            GAP * 1e3,
            pairs,
            cfg["web_block_requests"],
            cfg["web_rounds"],
            cfg["web_pairs"],
            CALLS_PER_REQUEST,
        )
        + table(
            [
                "contender",
                "payload",
                "added µs/call",
                "95% interval",
                "vs segment (95% interval)",
                "vs posthog",
                "of which left over µs/call",
                "baseline mean µs",
                "with calls mean µs",
                "baseline p50 / p99 µs",
                "with calls p50 / p99 µs",
                "notes",
            ],
            rows,
        )
    )


# -- scenario 3: saturated throughput -----------------------------------------------


def scenario_throughput(
    server: ServerProcess, cfg: dict[str, Any]
) -> dict[tuple[str, str], dict[str, Any]]:
    results = {}
    n = cfg["thr_n"]
    for payload in PAYLOADS:
        for contender in CONTENDERS:
            rates, calls_s, notes = [], [], []
            for rep in range(cfg["thr_repeats"]):
                what = "throughput %s/%s #%d" % (contender.name, payload, rep + 1)
                progress(what)
                server.reset()
                client = contender.make(server.url)
                call = contender.caller(client, payload)
                want_ph, want_seg = expected(contender, n)
                gc.collect()
                t = perf()
                for _ in range(n):
                    call()
                t_calls = perf() - t
                flushed = call_with_timeout(client.flush, FLUSH_TIMEOUT)
                ok, got = server.wait_for(
                    want_ph, want_seg, ARRIVAL_TIMEOUT if flushed else 0.0, poll=0.002
                )
                elapsed = perf() - t
                if ok:
                    rates.append(n / elapsed)
                    calls_s.append(t_calls)
                else:
                    notes.append("lost %d" % (want_ph - got["events"] + want_seg - got["segment"]))
                note = finish(server, client, contender, n, what)
                if note and ok:
                    notes.append(note)
            results[(contender.name, payload)] = {
                "rate": statistics.median(rates) if rates else None,
                "calls_rate": n / statistics.median(calls_s) if calls_s else None,
                "note": "; ".join(notes),
            }
    return results


def report_throughput(res: dict[tuple[str, str], dict[str, Any]], cfg: dict[str, Any]) -> str:
    rows = []
    for payload in PAYLOADS:
        seg = res[("segment", payload)]["rate"]
        ph = res[("posthog", payload)]["rate"]
        for c in CONTENDERS:
            r = res[(c.name, payload)]
            rows.append(
                [
                    c.name,
                    payload,
                    fmt(r["rate"], 0),
                    ratio(r["rate"], seg),
                    ratio(r["rate"], ph),
                    fmt(r["calls_rate"], 0),
                    r["note"] or "",
                ]
            )
    return (
        "### 3. Saturated throughput (events/s delivered)\n\n"
        "%d calls flat out on the main thread, then `flush()`; the clock stops when the capture server has counted "
        "every event (for ours-dual: on both legs). Median of %d run(s).\n\n"
        % (cfg["thr_n"], cfg["thr_repeats"])
        + table(
            [
                "contender",
                "payload",
                "events/s delivered",
                "vs segment",
                "vs posthog",
                "calls/s (call loop only)",
                "notes",
            ],
            rows,
        )
    )


# -- scenario 4: memory for a backlog ------------------------------------------------


def run_children(jobs: list[list[str]], parallel: int, timeout: float) -> dict[str, Any]:
    """Run memory children, ``parallel`` at a time; ``{contender: result or error}``."""
    out: dict[str, Any] = {}
    pending = list(jobs)
    running: list[tuple[str, subprocess.Popen, float]] = []
    try:
        while pending or running:
            while pending and len(running) < parallel:
                args = pending.pop(0)
                name = args[args.index("--contender") + 1]
                proc = subprocess.Popen(
                    [sys.executable, os.path.join(HERE, "_memory_child.py")] + args,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                running.append((name, proc, time.monotonic()))
            time.sleep(0.1)
            for item in list(running):
                name, proc, started = item
                if proc.poll() is None and time.monotonic() - started < timeout:
                    continue
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                    out[name] = {"error": "timed out after %.0fs" % timeout}
                else:
                    stdout, stderr = proc.communicate()
                    try:
                        out[name] = json.loads(stdout.strip().splitlines()[-1])
                    except (ValueError, IndexError):
                        out[name] = {
                            "error": "exit %s: %s" % (proc.returncode, stderr.strip()[-300:])
                        }
                running.remove(item)
                progress("  memory %s done" % name)
    finally:
        for _, proc, _ in running:
            proc.kill()
            proc.wait()
    return out


def scenario_memory(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    order = ["ours-dual", "ours", "posthog", "segment"]  # longest first
    results: dict[str, dict[str, Any]] = {}
    progress("memory: RSS, %d events per contender (2 processes at a time)" % cfg["mem_events"])
    results["rss"] = run_children(
        [
            [
                "--contender",
                c,
                "--events",
                str(cfg["mem_events"]),
                "--mode",
                "rss",
                "--settle",
                str(cfg["mem_settle"]),
            ]
            for c in order
        ],
        parallel=2,
        timeout=cfg["mem_settle"] + 120,
    )
    if cfg["mem_traced_events"]:
        progress("memory: tracemalloc, %d events per contender" % cfg["mem_traced_events"])
        results["tracemalloc"] = run_children(
            [
                [
                    "--contender",
                    c,
                    "--events",
                    str(cfg["mem_traced_events"]),
                    "--mode",
                    "tracemalloc",
                    "--settle",
                    str(cfg["mem_traced_settle"]),
                ]
                for c in order
            ],
            parallel=2,
            timeout=cfg["mem_traced_settle"] + 150,
        )
    return results


def report_memory(res: dict[str, dict[str, Any]], cfg: dict[str, Any]) -> str:
    parts = ["### 4. Memory held by a backlog of queued events\n"]
    mib = 1024 * 1024
    for mode, title in (
        ("rss", "RSS increase"),
        ("tracemalloc", "Python heap increase (tracemalloc)"),
    ):
        if mode not in res:
            continue
        data = res[mode]
        rows = []
        seg = data.get("segment", {}).get("settled")
        ph = data.get("posthog", {}).get("settled")
        events = None
        for c in CONTENDERS:
            r = data.get(c.name, {})
            if "error" in r or not r:
                rows.append([c.name] + ["n/a"] * 7 + [r.get("error", "missing")])
                continue
            events = r["events"]
            note = []
            if r["accepted"] != r["events"]:
                note.append("%d not accepted" % (r["events"] - r["accepted"]))
            if r["still_dispatching"]:
                note.append(
                    "%d still in our dispatcher after %.0fs"
                    % (r["still_dispatching"], r["settle_s"])
                )
            rows.append(
                [
                    c.name,
                    "%.1f" % (r["at_return"] / mib),
                    "%.1f" % (r["settled"] / mib),
                    "%.1f" % (r["peak"] / mib) if r.get("peak") is not None else "—",
                    "%.0f" % (r["settled"] / r["events"]),
                    ratio(r["settled"], seg),
                    ratio(r["settled"], ph),
                    "%.1f" % (r["calls_s"]),
                    "; ".join(note),
                ]
            )
        parts.append(
            "**%s**, %s events (small track, a fresh properties dict per call), client pointed at a refused "
            "127.0.0.1 port with `max_retries=1000`, `max_queue_size=200000`.\n\n"
            % (title, f"{events or 0:,}")
            + table(
                [
                    "contender",
                    "MiB after the calls",
                    "MiB settled",
                    "MiB peak",
                    "bytes/event (settled)",
                    "vs segment",
                    "vs posthog",
                    "call loop s",
                    "notes",
                ],
                rows,
            )
            + "\n"
        )
    return "\n".join(parts)


# -- main ----------------------------------------------------------------------------


def header(quick: bool) -> str:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except Exception:
            return "?"

    digest = hashlib.sha256()
    for name in (
        "client.py",
        "_delivery/delivery.py",
        "_delivery/dispatcher.py",
        "_delivery/posthog_leg.py",
        "_delivery/segment_leg.py",
        "mapping.py",
        "_message/build.py",
    ):
        try:
            with open(os.path.join(ROOT, "analytics_posthog", name), "rb") as f:
                digest.update(f.read())
        except OSError:
            pass
    import posthog.version
    from segment.analytics.version import VERSION as segment_version

    dirty = (
        " (uncommitted changes)" if git("status", "--porcelain", "--", "analytics_posthog") else ""
    )
    return (
        "Benchmark run %s%s · %s · Python %s · %d CPUs · posthog %s · segment-analytics-python %s · "
        "analytics_posthog at %s%s, source sha256 %s"
        % (
            datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            " (--quick)" if quick else "",
            platform.platform(),
            platform.python_version(),
            os.cpu_count() or 0,
            posthog.version.VERSION,
            segment_version,
            git("rev-parse", "--short", "HEAD") or "?",
            dirty,
            digest.hexdigest()[:12],
        )
    )


def verdicts(web, thr, mem) -> str:
    lines = ["### Targets\n"]

    def check(label: str, value: float | None, ok: Callable[[float], bool], goal: str) -> None:
        if value is None:
            lines.append("- %s: n/a (goal %s)" % (label, goal))
        else:
            lines.append(
                "- %s: %.2fx — %s (goal %s)"
                % (label, value, "met" if ok(value) else "NOT met", goal)
            )

    def r(a, b):
        return None if a is None or b in (None, 0) else a / b

    for name in ("ours", "ours-dual"):
        for payload in PAYLOADS:
            label = "web workload, added time per call, %s / segment (%s)" % (name, payload)
            value = r(web[(name, payload)]["added"], web[("segment", payload)]["added"])
            lo, hi = ratio_ci(
                web[(name, payload)]["added_samples"], web[("segment", payload)]["added_samples"]
            )
            if value is None or lo is None:
                check(label, value, lambda v: v <= 0.5, "≤ 0.5x")
                continue
            verdict = (
                "met"
                if hi <= 0.5
                else "NOT met"
                if lo > 0.5
                else "within the noise: the interval holds 0.5x"
            )
            lines.append(
                "- %s: %.2fx, 95%% interval %.2f–%.2f — %s (goal ≤ 0.5x)"
                % (label, value, lo, hi, verdict)
            )
    for payload in PAYLOADS:
        check(
            "throughput, ours / posthog (%s)" % payload,
            r(thr[("ours", payload)]["rate"], thr[("posthog", payload)]["rate"]),
            lambda v: v >= 0.9,
            "≥ 0.9x",
        )
    for mode in ("rss", "tracemalloc"):
        if mode in mem:
            check(
                "memory (%s, settled), ours / segment" % mode,
                r(
                    mem[mode].get("ours", {}).get("settled"),
                    mem[mode].get("segment", {}).get("settled"),
                ),
                lambda v: v <= 1.0,
                "≤ 1.0x",
            )
    return "\n".join(lines)


def only(scenario: str, cfg: dict[str, Any]) -> int:
    """One scenario, printed, for iterating on the library (results.md is left alone)."""
    if scenario == "memory":
        print(report_memory(scenario_memory(cfg), cfg))
        return 0
    server = ServerProcess().start()
    try:
        if scenario == "calls":
            text = report_calls(scenario_calls(server, cfg), cfg)
        elif scenario == "web":
            size = calibrate_work()
            web = scenario_web(server, cfg, size)
            text = report_web(
                web,
                cfg,
                size,
                statistics.median(r["base_p50"] for r in web.values() if r["base_p50"] is not None),
            )
        else:
            text = report_throughput(scenario_throughput(server, cfg), cfg)
    finally:
        server.stop()
    print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer/shorter repetitions (about a minute)"
    )
    parser.add_argument("--skip-memory", action="store_true", help="skip scenario 4")
    parser.add_argument(
        "--only",
        choices=["calls", "web", "throughput", "memory"],
        help="run one scenario and print it",
    )
    parser.add_argument("--output", default=os.path.join(HERE, "results.md"))
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL

    scrub_environment()
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s"
    )
    head = header(args.quick)
    progress(head)

    if args.only:
        return only(args.only, cfg)

    server = ServerProcess().start()
    progress("capture server at %s" % server.url)
    try:
        calls = scenario_calls(server, cfg)
        size = calibrate_work()
        work_us = (
            statistics.median(
                [(lambda t: (request_work(size), perf() - t)[1])(perf()) for _ in range(200)]
            )
            * 1e6
        )
        progress("request work: %d entries ≈ %.0f µs" % (size, work_us))
        web = scenario_web(server, cfg, size)
        # What a request's work actually cost during the run: the median baseline request.
        work_us = statistics.median(
            r["base_p50"] for r in web.values() if r["base_p50"] is not None
        )
        thr = scenario_throughput(server, cfg)
    finally:
        server.stop()
    mem = {} if args.skip_memory else scenario_memory(cfg)

    sections = [
        head,
        report_calls(calls, cfg),
        report_web(web, cfg, size, work_us),
        report_throughput(thr, cfg),
    ]
    if mem:
        sections.append(report_memory(mem, cfg))
    sections.append(verdicts(web, thr, mem))
    sections.append("Total run time: %.0f s." % (perf() - T0))
    text = "\n\n".join(sections) + "\n"
    print(text)
    with open(args.output, "w") as f:
        f.write(text)
    progress("wrote %s" % args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
