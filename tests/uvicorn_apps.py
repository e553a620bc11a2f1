"""ASGI apps for the uvicorn tests, each wrapped in the ASGI hook; keys and hosts from the environment.

``GET /burst/<n>`` makes n track calls and answers with the worker's pid.
"""

from __future__ import annotations

import os
import time
import types

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import analytics_posthog as analytics
from analytics_posthog.integrations.asgi import AnalyticsMiddleware

analytics.posthog_api_key, analytics.posthog_host = "phc_test", os.environ["TEST_POSTHOG_HOST"]
analytics.write_key, analytics.host = "seg_key", os.environ["TEST_SEGMENT_HOST"]


def burst(n: int) -> bytes:
    """n calls, then hold the worker's event loop a moment, so that a connection
    made meanwhile goes to another worker."""
    pid = os.getpid()
    for i in range(n):
        analytics.track("u1", "Burst", {"pid": pid, "i": i})
    time.sleep(0.2)
    return str(pid).encode()


async def without_lifespan(scope, receive, send):
    """A plain ASGI app that raises for lifespan, as Django's ASGI app does."""
    if scope["type"] != "http":
        raise ValueError("only HTTP, not %s" % scope["type"])
    body = burst(int(scope["path"].rsplit("/", 1)[1]))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def burst_endpoint(request: Request) -> PlainTextResponse:
    return PlainTextResponse(burst(int(request.path_params["n"])))


plain = AnalyticsMiddleware(without_lifespan)
starlette = Starlette(routes=[Route("/burst/{n:int}", burst_endpoint)])
starlette.add_middleware(AnalyticsMiddleware)


def django_app():
    """Django's ASGI app (which raises for lifespan), behind the ASGI hook: ``--factory uvicorn_apps:django_app``."""
    import django
    from django.conf import settings
    from django.core.asgi import get_asgi_application
    from django.http import HttpResponse
    from django.urls import path

    urls = types.ModuleType("urls")
    urls.urlpatterns = [path("burst/<int:n>", lambda request, n: HttpResponse(burst(n)))]  # type: ignore[attr-defined]
    settings.configure(
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=urls,
        SECRET_KEY="test",
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
    )
    django.setup()
    return AnalyticsMiddleware(get_asgi_application())
