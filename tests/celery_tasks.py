"""The Celery app of the Celery tests: imported by the test (the producer, in
a Flask request) and by the prefork worker it starts (``-A celery_tasks``).

The broker is kombu's filesystem transport in ``CELERY_TEST_BROKER``: no
server. In the worker (``CELERY_TEST_WORKER`` set) the PostHog leg holds
every event until it is flushed (a posthog client with a one-minute flush
interval), so what arrives there was delivered by the children's shutdown,
not by chance. (Segment's client cannot be told to send early: it keeps its
0.5 s upload interval.)
"""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery

import analytics_posthog as analytics
from analytics_posthog.integrations.celery import Analytics

broker = os.environ.get("CELERY_TEST_BROKER", "")
app = Celery("celery_tasks", broker="filesystem://")
app.conf.update(
    broker_transport_options={
        "data_folder_in": broker,
        "data_folder_out": broker,
        "control_folder": broker,
        "polling_interval": 0.05,
    },
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=1,
)
Analytics(app)

if os.environ.get("CELERY_TEST_WORKER"):
    import posthog

    held = posthog.Client(
        "phc_test", host=os.environ["CELERY_TEST_POSTHOG"], flush_interval=60, flush_at=10_000
    )
    analytics.default_client = analytics.Client(
        "seg_key",
        host=os.environ["CELERY_TEST_SEGMENT"],
        posthog_client=held,
        spool_dir=os.environ.get("CELERY_TEST_SPOOL"),
    )
    # posthog's own integration on the worker reads the headers ours wrote:
    # the posthog client's own captures in a task get the visitor too. (Not
    # given our posthog client: its shutdown would flush it, and the test
    # would no longer show that ours does.)
    from posthog.integrations.celery import PosthogCeleryIntegration

    PosthogCeleryIntegration(
        capture_exceptions=False, capture_task_lifecycle_events=False
    ).instrument()


@app.task
def work(n: int) -> None:
    """Calls that name nobody, and one that names its user; then a mark that the task ran."""
    analytics.track(event="Task Ran", properties={"n": n})
    analytics.identify(traits={"last_task": n})
    analytics.track("explicit-user", "Explicit", properties={"n": n})
    analytics.get_posthog_client().capture("Posthog Own", properties={"n": n})
    Path(broker, "ran-%d" % n).touch()


@app.task
def hang() -> None:
    """Queues one event, marks that it started (with its pid), then runs until the worker is stopped."""
    analytics.track("hang-user", "Hung", properties={"n": -1})
    Path(broker, "ran-hang").write_text(str(os.getpid()))
    import time

    time.sleep(60)
