"""The capture server, run in its own process for the whole benchmark."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request


class ServerProcess:
    """``python -m analytics_posthog.testing --port 0 --count-only`` in a child process."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 15.0) -> ServerProcess:
        self.proc = subprocess.Popen(
            [self.python, "-m", "analytics_posthog.testing", "--port", "0", "--count-only"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        line: dict[str, str] = {}

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            line["text"] = self.proc.stdout.readline()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        text = line.get("text", "")
        if not text.startswith("listening on "):
            self.stop()
            raise RuntimeError("capture server did not start (got %r)" % text)
        self.url = text.split("listening on ", 1)[1].strip()
        return self

    def _request(self, method: str, path: str, timeout: float = 5.0) -> bytes:
        req = urllib.request.Request(
            self.url + path, method=method, data=b"{}" if method == "POST" else None
        )
        if method == "POST":
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read()

    def stats(self) -> dict[str, int]:
        return json.loads(self._request("GET", "/_stats"))

    def reset(self) -> None:
        self._request("POST", "/_reset")

    def wait_for(
        self, events: int, segment: int, timeout: float, poll: float = 0.002
    ) -> tuple[bool, dict[str, int]]:
        """Poll ``/_stats`` until ``events`` PostHog events and ``segment`` Segment
        messages have arrived; ``(False, last stats)`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.stats()
            if got["events"] >= events and got["segment"] >= segment:
                return True, got
            if time.monotonic() >= deadline:
                return False, got
            time.sleep(poll)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def refused_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (connections are refused)."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return "http://127.0.0.1:%d" % port


def scrub_environment() -> None:
    """Keys from the machine must not add legs or hosts to the contenders."""
    for name in ("POSTHOG_API_KEY", "POSTHOG_PROJECT_API_KEY", "POSTHOG_HOST", "SEGMENT_WRITE_KEY"):
        os.environ.pop(name, None)
