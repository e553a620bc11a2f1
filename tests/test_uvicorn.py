"""uvicorn, started as operators start it and stopped with SIGTERM: a burst of calls made
just before arrives in full on both legs, whether or not the app speaks ASGI lifespan."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from analytics_posthog.testing import CaptureServer

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent


def start_uvicorn(app, socket_path, log, posthog, segment, *args):
    env = {
        **os.environ,
        "TEST_POSTHOG_HOST": posthog.url,
        "TEST_SEGMENT_HOST": segment.url,
        "PYTHONPATH": str(HERE),
    }
    env = {k: v for k, v in env.items() if not k.startswith(("POSTHOG_", "SEGMENT_"))}
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "uvicorn_apps:" + app,
        "--uds",
        str(socket_path),
        "--no-access-log",
        *args,
    ]
    if app.endswith("_app"):
        command.append("--factory")
    # Output to a file: a pipe nobody reads while the test runs would fill and block the workers.
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def get(client, path, deadline, delay):
    time.sleep(delay)
    while True:
        try:
            return client.get(path)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.parametrize(
    "app, workers",
    [("plain", 1), ("starlette", 1), ("django_app", 1), ("plain", 2)],
    ids=["no-lifespan", "starlette", "django", "no-lifespan-2-workers"],
)
def test_burst_then_sigterm_every_event_arrives_on_both_legs(tmp_path, app, workers):
    requests, calls = (
        4 * workers,
        5000 // (4 * workers),
    )  # at least; more rounds until each worker served some
    socket_path, log_path = tmp_path / "uvicorn.sock", tmp_path / "uvicorn.log"
    with CaptureServer() as posthog, CaptureServer() as segment, log_path.open("wb") as log:
        server = start_uvicorn(
            app,
            socket_path,
            log,
            posthog,
            segment,
            *(["--workers", str(workers)] if workers > 1 else []),
        )
        try:
            deadline = time.monotonic() + 15
            while not socket_path.exists():
                assert server.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.05)
            transport = httpx.HTTPTransport(uds=str(socket_path))
            headers = {"Connection": "close"}  # a new connection each: the workers share them out
            with httpx.Client(
                transport=transport, base_url="http://uvicorn", headers=headers, timeout=10
            ) as client:
                pids: collections.Counter = collections.Counter()
                with ThreadPoolExecutor(4) as pool:
                    # Rounds of 4, 0.05 s apart (a request holds its worker 0.2 s), until every
                    # worker has served some: a worker that is up first takes all.
                    while len(pids) < workers or sum(pids.values()) < requests:
                        assert time.monotonic() < deadline, (pids, log_path.read_text())
                        responses = list(
                            pool.map(
                                lambda i: get(
                                    client, "/burst/%d" % calls, deadline, delay=0.05 * i
                                ),
                                range(4),
                            )
                        )
                        assert [r.status_code for r in responses] == [200] * 4
                        pids.update(r.text for r in responses)
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=20)
        finally:
            if server.poll() is None:
                server.kill()
    # Each request's calls once on each leg: (worker pid, i) as many times as that worker served the request.
    expected = collections.Counter(
        {(pid, i): served for pid, served in pids.items() for i in range(calls)}
    )
    output = log_path.read_text() + "\n%d of %d events reached PostHog, %d Segment" % (
        len(posthog.events),
        sum(pids.values()) * calls,
        len(segment.segment_messages),
    )
    assert (
        collections.Counter(
            (str(e["properties"]["pid"]), e["properties"]["i"]) for e in posthog.events
        )
        == expected
    ), output
    assert (
        collections.Counter(
            (str(m["properties"]["pid"]), m["properties"]["i"]) for m in segment.segment_messages
        )
        == expected
    ), output
    assert len(pids) == workers, pids
