"""An app's own ``posthog.Client`` is left as it was: the requests it sends
are byte for byte the same whether or not our client runs beside it."""

from __future__ import annotations

import http.server
import re
import subprocess
import sys
import threading

import pytest

# Each test starts a Python process of its own.
pytestmark = pytest.mark.slow

#: The app's own client sends one event per request (sync mode), with fixed
#: ids and times, values posthog serialises in its own way (NaN, floats,
#: nesting, ``$set``); with ``beside``, our client runs and sends too, before,
#: between and after, with an end user's OS in its context.
SCRIPT = """
import datetime, sys, uuid
import posthog

mode, app_host, our_host = sys.argv[1:]
if mode == "beside":
    import analytics_posthog
    ours = analytics_posthog.Client(posthog_api_key="phc_ours", posthog_host=our_host)
    ours.track("someone", "Ours", {"x": 1}, context={"os": {"name": "iOS", "version": "17.4"}})
    ours.flush()
app = posthog.Client("phc_app", host=app_host, sync_mode=True)
values = [{"n": 1}, {"f": 1.5, "nan": float("nan"), "inf": float("inf")},
          {"nested": {"a": [1, None, "x"], "when": datetime.date(2026, 1, 2)}}, {"$set": {"plan": "pro"}}]
for i, properties in enumerate(values):
    app.capture("App event", distinct_id="user", properties=properties,
                timestamp=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
                uuid=str(uuid.UUID(int=i)))
    if mode == "beside":
        ours.identify("someone", {"plan": "team"}, context={"os": {"name": "Android"}})
if mode == "beside":
    ours.shutdown()
"""


class Recorder(http.server.ThreadingHTTPServer):
    """A loopback endpoint that keeps each request's raw body, in arrival order."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                recorder.bodies.append(self.rfile.read(length))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"status": 1}')

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.server_address[1]


def app_requests(mode: str, tmp_path, ours_url: str) -> list[bytes]:
    recorder = Recorder()
    try:
        script = tmp_path / "app.py"
        script.write_text(SCRIPT)
        done = subprocess.run(
            [sys.executable, str(script), mode, recorder.url, ours_url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    finally:
        recorder.shutdown()
        recorder.server_close()
    # The one field posthog sets from the clock at sending time.
    return [re.sub(rb'"sent_at": "[^"]*"', b'"sent_at": ""', body) for body in recorder.bodies]


def test_an_apps_own_posthog_client_sends_the_same_bytes_beside_ours(tmp_path, capture_server):
    alone = app_requests("alone", tmp_path, capture_server.url)
    beside = app_requests("beside", tmp_path, capture_server.url)
    assert len(alone) == 4
    assert beside == alone
    assert {e["event"] for e in capture_server.events} == {"Ours", "$identify"}
    ours = next(e for e in capture_server.events if e["event"] == "Ours")
    assert ours["properties"]["$os"] == "iOS"
