"""A Flask app whose views call Segment's API; the hook adds each request's context.

    python examples/flask_app.py          # offline: one request against a loopback capture endpoint
    POSTHOG_API_KEY=phc_... flask --app examples/flask_app run   # for real
"""

from __future__ import annotations

import json
import os

from flask import Flask

import analytics_posthog as analytics
from analytics_posthog.integrations.flask import Analytics

app = Flask(__name__)
app.config["ANALYTICS_POSTHOG_PAGE_CALLS"] = True
Analytics(app)


@app.get("/pricing")
def pricing() -> str:
    analytics.track(event="Pricing Viewed", properties={"plan": "team"})  # no ids: the browser's come from the request
    return "<html><body>Pricing</body></html>"


def offline_demo() -> None:
    from analytics_posthog.testing import CaptureServer

    with CaptureServer() as server:
        analytics.posthog_api_key, analytics.posthog_host, analytics.sync_mode = "phc_demo", server.url, True
        app.test_client().get(
            "/pricing?ref=mail",
            headers={"User-Agent": "Mozilla/5.0 (demo)", "X-POSTHOG-DISTINCT-ID": "browser-1", "X-POSTHOG-SESSION-ID": "session-1"},
        )
        for event in server.wait_for_events(2):
            print(json.dumps({k: event[k] for k in ("event", "distinct_id")} | {"properties": {k: v for k, v in event["properties"].items() if k.startswith("$") and not k.startswith("$lib")}}, indent=2))


if __name__ == "__main__":
    if os.environ.get("POSTHOG_API_KEY"):
        app.run()
    else:
        offline_demo()
