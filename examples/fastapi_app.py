"""A FastAPI app whose endpoints call Segment's API; the hook adds each request's context.

    python examples/fastapi_app.py        # offline: one request against a loopback capture endpoint
    POSTHOG_API_KEY=phc_... uvicorn examples.fastapi_app:app   # for real
"""

from __future__ import annotations

import asyncio
import json
import os

from fastapi import FastAPI

import analytics_posthog as analytics
from analytics_posthog.integrations.asgi import AnalyticsMiddleware

app = FastAPI()
app.add_middleware(AnalyticsMiddleware, trusted_proxies=os.environ.get("TRUSTED_PROXIES"))


@app.post("/reports")
async def export_report() -> dict:
    analytics.track(event="Report Exported", properties={"format": "csv"})
    return {"ok": True}


async def offline_demo() -> None:
    import httpx

    from analytics_posthog.testing import CaptureServer

    with CaptureServer() as server:
        analytics.posthog_api_key, analytics.posthog_host, analytics.sync_mode = "phc_demo", server.url, True
        transport = httpx.ASGITransport(app=app, client=("198.51.100.4", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="https://app.example.com") as client:
            await client.post("/reports", headers={"User-Agent": "Mozilla/5.0 (demo)", "X-POSTHOG-DISTINCT-ID": "browser-1", "X-POSTHOG-SESSION-ID": "session-1"})
        event = server.wait_for_events(1)[0]
        print(json.dumps({k: event[k] for k in ("event", "distinct_id")} | {"properties": {k: v for k, v in event["properties"].items() if k.startswith("$") and not k.startswith("$lib")}}, indent=2))


if __name__ == "__main__":
    if os.environ.get("POSTHOG_API_KEY"):
        print("run it with: uvicorn examples.fastapi_app:app")
    else:
        asyncio.run(offline_demo())
