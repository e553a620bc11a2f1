"""Helpers for tests that start a real server or job as a process."""

from __future__ import annotations

import collections
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

#: The uwsgi the test extra installs beside this Python, or one on PATH.
UWSGI = shutil.which("uwsgi", path=os.path.dirname(sys.executable)) or shutil.which("uwsgi")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, deadline: float) -> bytes:
    """GET ``url``, retrying while the server starts, until ``deadline`` (monotonic)."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def counted(
    items: Iterable[dict[str, Any]],
    name_key: str,
    id_key: str,
    extra: Callable[[dict[str, Any]], Any] | None = None,
) -> collections.Counter[tuple[Any, ...]]:
    """How many times each (name, id[, extra]) arrived."""
    if extra is None:
        return collections.Counter((item[name_key], item[id_key]) for item in items)
    return collections.Counter((item[name_key], item[id_key], extra(item)) for item in items)


def run_script(
    path: Path, text: str, args: list[str], posthog: Any, segment: Any, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Write ``text`` to ``path`` and run it with ``args``, pointed at both
    loopback endpoints (``POSTHOG_HOST``, ``SEGMENT_HOST``); it must exit 0
    and print no traceback."""
    path.write_text(text)
    env = {**os.environ, "POSTHOG_HOST": posthog.url, "SEGMENT_HOST": segment.url}
    done = subprocess.run(
        [sys.executable, "-W", "ignore", str(path), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done
