"""A Flask app that hands work to Celery: the task's calls name the visitor who caused them.

The browser runs posthog-js (no tracing headers): its cookie names the
visitor and session; the request's call and the task's call both join them.

    python examples/celery_app.py      # offline: a request, its task on an in-process worker, both events printed
    # for real (any broker; the keys from the environment):
    CELERY_BROKER_URL=redis://... POSTHOG_API_KEY=phc_... celery -A examples.celery_app:celery worker
    CELERY_BROKER_URL=redis://... POSTHOG_API_KEY=phc_... flask --app examples/celery_app run
"""

from __future__ import annotations

import json
import os
import time
from urllib.parse import quote

from celery import Celery
from flask import Flask

import analytics_posthog as analytics
from analytics_posthog.integrations.celery import CeleryAnalytics
from analytics_posthog.integrations.flask import FlaskAnalytics

app = Flask(__name__)
FlaskAnalytics(app)
celery = Celery("celery_app", broker=os.environ.get("CELERY_BROKER_URL", "memory://"))
CeleryAnalytics(celery)


@celery.task
def send_receipt(order_id: str) -> None:
    # Names nobody: the visitor and session of the request that enqueued it.
    analytics.track(event="Receipt Sent", properties={"order_id": order_id})


@app.post("/orders/<order_id>")
def order(order_id: str) -> str:
    analytics.track(event="Order Completed", properties={"order_id": order_id})
    send_receipt.delay(order_id)
    return "ordered"


def posthog_js_cookie(project_key: str, distinct_id: str, session_id: str) -> str:
    """What posthog-js keeps in the browser (cookie persistence)."""
    now = time.time() * 1000
    value = {"distinct_id": distinct_id, "$sesid": [now, session_id, now]}
    return "ph_%s_posthog=%s" % (project_key, quote(json.dumps(value), safe=""))


def offline_demo() -> None:
    from celery.contrib.testing.worker import start_worker

    from analytics_posthog.testing import CaptureServer

    with (
        CaptureServer() as server,
        start_worker(celery, perform_ping_check=False, loglevel="WARNING"),
    ):
        analytics.posthog_api_key, analytics.posthog_host, analytics.sync_mode = (
            "phc_demo",
            server.url,
            True,
        )
        browser = {
            "User-Agent": "Mozilla/5.0 (demo)",
            "Cookie": posthog_js_cookie("phc_demo", "browser-1", "session-1"),
        }
        app.test_client(use_cookies=False).post("/orders/o-17", headers=browser)
        for event in server.wait_for_events(2):
            properties = event["properties"]
            print(
                json.dumps(
                    {
                        "event": event["event"],
                        "distinct_id": event["distinct_id"],
                        "$session_id": properties.get("$session_id"),
                    }
                )
            )


if __name__ == "__main__":
    offline_demo()
