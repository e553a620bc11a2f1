"""Helpers for the capture server's tests: plain HTTP to it, and the real clients pointed at it."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import posthog
from segment.analytics.client import Client as SegmentClient

from analytics_posthog.testing import CaptureServer

REPO = Path(__file__).resolve().parents[1]


def post(
    url: str,
    body: Any,
    *,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    timeout: float = 5.0,
) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON answer) of a POST, error statuses included."""
    data = raw if raw is not None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(
        url,
        data=data,
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, dict(res.headers), json.loads(res.read() or b"null")
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), json.loads(err.read() or b"null")


def get(url: str) -> tuple[int, Any]:
    """(status, JSON answer) of a GET, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=5) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read() or b"null")


def get_json(url: str) -> Any:
    """The JSON answer of a GET that must succeed."""
    status, body = get(url)
    assert status == 200, (status, body)
    return body


def posthog_client(server: CaptureServer, **kwargs: Any) -> posthog.Client:
    kwargs.setdefault("sync_mode", True)
    return posthog.Client("phc_test", host=server.url, **kwargs)


def segment_client(server: CaptureServer, **kwargs: Any) -> SegmentClient:
    kwargs.setdefault("sync_mode", True)
    return SegmentClient("wk", host=server.url, **kwargs)


def raw_event(name: str = "raw event") -> dict[str, Any]:
    """A PostHog event as posthog's client puts it in a batch."""
    return {
        "event": name,
        "distinct_id": "u1",
        "properties": {"k": "v"},
        "uuid": str(uuid.uuid4()),
    }


def with_repo_on_path() -> dict[str, str]:
    """The environment for a child Python that must import this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@contextlib.contextmanager
def cli_server(*args: str) -> Iterator[str]:
    """``python -m analytics_posthog.testing`` as a child process: yields its URL, then stops it with SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "analytics_posthog.testing", "--port", "0", *args],
        cwd=str(REPO),
        env=with_repo_on_path(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()))
        reader.start()
        reader.join(timeout=20)
        assert line and line[0].startswith("listening on http://127.0.0.1:"), (line, proc.poll())
        yield line[0].split("listening on ", 1)[1].strip()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.stderr.close()
    assert proc.returncode == 0, proc.returncode
