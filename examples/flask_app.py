"""A Flask app whose views call Segment's API; the hook adds each request's context.

    python examples/flask_app.py          # offline: four requests against a loopback capture endpoint
    POSTHOG_API_KEY=phc_... flask --app examples/flask_app run   # for real

Every call needs someone to name. A browser running posthog-js sends its
distinct id (``X-POSTHOG-DISTINCT-ID``, or its cookie) and the hook fills it in; any other
visitor gets an anonymous id of its own, kept in a cookie so its events join up.
"""

from __future__ import annotations

import json
import os
import uuid
from urllib.parse import quote

from flask import Flask, Response, after_this_request, request

import analytics_posthog as analytics
from analytics_posthog.integrations import visitor_named
from analytics_posthog.integrations.flask import FlaskAnalytics

VISITOR_COOKIE = "visitor_id"

app = Flask(__name__)
app.config["ANALYTICS_POSTHOG_PAGE_CALLS"] = True
FlaskAnalytics(app)


def anonymous_id() -> str | None:
    """``None`` when the hook named the visitor (posthog-js, analytics.js, the
    logged-in user: it fills the id in), else the visitor's cookie id."""
    if visitor_named():
        return None
    visitor = _valid(request.cookies.get(VISITOR_COOKIE))
    if visitor is None:
        visitor = str(uuid.uuid4())

        @after_this_request
        def remember(response: Response) -> Response:
            response.set_cookie(
                VISITOR_COOKIE, visitor, max_age=365 * 24 * 3600, httponly=True, samesite="Lax"
            )
            return response

    return visitor


def _valid(cookie: str | None) -> str | None:
    """Only ids this app made: a cookie is whatever the client sends."""
    try:
        return str(uuid.UUID(cookie)) if cookie else None
    except ValueError:
        return None


@app.get("/pricing")
def pricing() -> str:
    analytics.track(
        anonymous_id=anonymous_id(), event="Pricing Viewed", properties={"plan": "team"}
    )
    return "<html><body>Pricing</body></html>"


def offline_demo() -> None:
    from analytics_posthog.testing import CaptureServer

    with CaptureServer() as server:
        analytics.posthog_api_key, analytics.posthog_host, analytics.sync_mode = (
            "phc_demo",
            server.url,
            True,
        )
        client = app.test_client()
        posthog_js = {
            "User-Agent": "Mozilla/5.0 (demo)",
            "X-POSTHOG-DISTINCT-ID": "browser-1",
            "X-POSTHOG-SESSION-ID": "session-1",
        }
        for headers in (
            posthog_js,
            {},
            {},
        ):  # a posthog-js browser, then a visitor with nothing, twice (with its cookie)
            print("GET /pricing ->", client.get("/pricing?ref=mail", headers=headers).status_code)
        # A browser whose only identity is posthog-js's cookie: the hook names it.
        posthog_cookie = {
            "Cookie": "ph_phc_demo_posthog=" + quote(json.dumps({"distinct_id": "browser-2"}))
        }
        print(
            "GET /pricing ->",
            app.test_client(use_cookies=False).get("/pricing", headers=posthog_cookie).status_code,
        )
        for event in server.wait_for_events(6):
            print(
                json.dumps(
                    {k: event[k] for k in ("event", "distinct_id")}
                    | {
                        "properties": {
                            k: v
                            for k, v in event["properties"].items()
                            if k.startswith("$") and not k.startswith("$lib")
                        }
                    }
                )
            )


if __name__ == "__main__":
    if os.environ.get("POSTHOG_API_KEY"):
        app.run()
    else:
        offline_demo()
