"""Tasks enqueued in hooked Django and ASGI requests run as the request's visitor, on
a real in-process Celery worker (memory broker), checked on both legs' wire.
(The prefork worker, its shutdown and Flask: ``test_celery.py``.)"""

from __future__ import annotations

import pytest
import test_hooks_asgi as asgi_tests
import test_hooks_django  # noqa: F401  (configures Django)
from celery import Celery
from celery.contrib.testing.worker import start_worker
from django.http import HttpResponse
from django.test import Client as DjangoClient
from django.test import override_settings
from django.urls import path
from fastapi import FastAPI

import analytics_posthog as analytics
from analytics_posthog.integrations.asgi import AnalyticsMiddleware
from analytics_posthog.integrations.celery import Analytics

pytestmark = pytest.mark.slow

celery = Celery("test_celery_frameworks", broker="memory://")
celery.conf.task_ignore_result = True
Analytics(celery)


@celery.task
def follow_up(name: str) -> None:
    analytics.track(event=name + " Task")


def enqueue(request, name):
    follow_up.delay(name)
    return HttpResponse("queued")


urlpatterns = [path("enqueue/<str:name>", enqueue)]

BROWSER = {"X-POSTHOG-DISTINCT-ID": "anon-celery", "X-POSTHOG-SESSION-ID": "session-celery"}


def asgi_app():
    app = FastAPI()
    app.add_middleware(AnalyticsMiddleware)

    @app.get("/enqueue/{name}")
    def asgi_enqueue(name: str):
        follow_up.delay(name)
        return "queued"

    return app


def test_tasks_from_django_and_asgi_requests_run_as_their_visitor(legs):
    analytics.posthog_api_key, analytics.posthog_host = "phc_test", legs.posthog.url
    analytics.write_key, analytics.host = "seg_key", legs.segment.url
    with start_worker(celery, perform_ping_check=False, loglevel="WARNING"):
        with override_settings(ROOT_URLCONF=__name__, ANALYTICS_POSTHOG=legs.settings):
            assert DjangoClient().get("/enqueue/Django", headers=BROWSER).status_code == 200
        assert (
            asgi_tests.request(
                asgi_app(), "/enqueue/Asgi", {**BROWSER, "X-POSTHOG-DISTINCT-ID": "user-asgi"}
            ).status_code
            == 200
        )
        events = {e["event"]: e for e in legs.posthog.wait_for_events(2)}
        messages = {m["event"]: m for m in legs.segment.wait_for_segment(2)}
    for name, distinct_id in (("Django Task", "anon-celery"), ("Asgi Task", "user-asgi")):
        assert events[name]["distinct_id"] == messages[name]["anonymousId"] == distinct_id
        assert (
            events[name]["properties"]["$session_id"]
            == messages[name]["context"]["sessionId"]
            == "session-celery"
        )
