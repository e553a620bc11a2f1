"""Celery hook: ``CeleryAnalytics(celery_app)`` in the code that both the web app and the worker import.

A task enqueued while a visitor is known (inside a hooked Django, Flask or
ASGI request, a Celery task that was itself started by one, or a
``posthog.new_context()`` with ``identify_context``) runs with that visitor:
calls in the task that name nobody get the visitor's distinct id (PostHog) or
``userId``/``anonymousId`` (Segment) and ``$session_id``/``sessionId``, on
both legs, exactly as they would in the request.

The visitor travels in the task's message headers under the names
posthog-python's own Celery integration uses (``X-POSTHOG-DISTINCT-ID``,
``X-POSTHOG-SESSION-ID``), so either side may be posthog's
``PosthogCeleryIntegration`` instead: its producer's headers are read here,
and ours are read by its worker. One header of our own,
``X-ANALYTICS-POSTHOG-ID-TYPE: userId``, tells Segment that the distinct id is
a logged-in user's; without it the id is the ``anonymousId`` (what posthog's
producer sends is whatever its context was identified with, often
posthog-js's anonymous id).

Prefork children end with ``os._exit``, which skips exit handlers, so their
queued events would be lost. Warm shutdown (SIGTERM to the main process, and
``max_tasks_per_child`` recycling): each child delivers what it queued as it
exits, within ``exit_timeout``. Cold shutdown (SIGQUIT): the main process
sends each child SIGTERM and waits for it; billiard turns that SIGTERM into
``SystemExit`` so the child still ends through the same exit path, and
delivers the same way (a task still running is cut short, as Celery intends;
what it had queued is delivered). A child that is SIGKILLed (or a worker
killed with ``-9``) loses whatever it still held: count on that only with
``sync_mode``.
"""

from __future__ import annotations

import logging
import signal
from typing import Any

import analytics_posthog
from analytics_posthog import integrations
from analytics_posthog._context import request as request_context
from analytics_posthog._context import visitor
from analytics_posthog._context.fields import sanitise_id
from analytics_posthog._context.request import DISTINCT_ID_HEADER, SESSION_ID_HEADER, RequestContext
from analytics_posthog.client import Client

try:
    from celery import Celery, signals
except ModuleNotFoundError as error:
    raise integrations.missing_extra("celery", error) from None

log = logging.getLogger("analytics_posthog")

#: Ours: present (``userId``) when the distinct id is Segment's ``userId``.
ID_TYPE_HEADER = "X-ANALYTICS-POSTHOG-ID-TYPE"
USER_ID = "userId"
_TOKEN = "_analytics_posthog"


class CeleryAnalytics:
    """``client``: the ``Client`` whose queue a prefork child delivers as it
    exits; the module's default client when not given."""

    def __init__(self, app: Celery | None = None, client: Client | None = None) -> None:
        self.client = client
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Celery) -> None:
        """Celery's signals are global: connected once however many apps are hooked."""
        uid = "analytics_posthog.celery"
        signals.before_task_publish.connect(carry, weak=False, dispatch_uid=uid)
        signals.task_prerun.connect(start_task, weak=False, dispatch_uid=uid)
        signals.task_postrun.connect(end_task, weak=False, dispatch_uid=uid)
        signals.worker_process_shutdown.connect(self._child_exiting, weak=False, dispatch_uid=uid)

    def _client(self) -> Client | None:
        return self.client if self.client is not None else analytics_posthog.default_client

    def _child_exiting(self, **_: Any) -> None:
        """The child is on its way out (billiard calls this just before its last
        message to the pool, then ``os._exit``). A further SIGTERM (the pool
        sends one to every child still alive when the main process exits) is
        ignored from here on: billiard blocks it only in the thread sending
        that last message, so in a child with threads (ours, posthog's) it
        would land mid-message, and the dead child would leave the pool's
        result queue locked, hanging the main process's exit for good."""
        try:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        except ValueError:
            pass  # not the main thread: nothing to protect
        self._deliver_before_exit()

    def _deliver_before_exit(self) -> None:
        """What the child queued, within the client's ``exit_timeout``; the rest is counted and reported."""
        client = self._client()
        delivery = client.delivery if client is not None else None
        if delivery is None:
            return
        try:
            delivery.at_exit()
        except Exception:
            log.exception("analytics_posthog: delivery at the end of a Celery child failed")


def carry(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """``before_task_publish``: the caller's visitor into the task's headers.

    Written both at the top level and in the nested ``headers``, the only
    place Celery's protocol 2 reliably hands back to the worker as
    ``task.request.headers`` (celery#4875), as posthog's integration does.
    """
    if not isinstance(headers, dict):
        return
    current = visitor.current()
    if current is None:
        return
    carried: dict[str, str | None] = {
        DISTINCT_ID_HEADER: current.user_id or current.anonymous_id,
        SESSION_ID_HEADER: current.context.get("sessionId"),
        ID_TYPE_HEADER: USER_ID if current.user_id else None,
    }
    nested = headers.setdefault("headers", {})
    for target in (headers, nested if isinstance(nested, dict) else {}):
        for name, value in carried.items():
            if value:
                target[name] = value
            else:
                target.pop(name, None)


def start_task(task: Any = None, **_: Any) -> None:
    """``task_prerun``: the carried visitor applies to the task's calls."""
    request = getattr(task, "request", None)
    carried = received(request)
    if carried is not None:
        setattr(request, _TOKEN, request_context.activate(carried))


def end_task(task: Any = None, **_: Any) -> None:
    """``task_postrun`` (same thread as ``task_prerun``): the visitor ends with the task."""
    request = getattr(task, "request", None)
    token = getattr(request, _TOKEN, None)
    if token is None:
        return
    setattr(request, _TOKEN, None)
    try:
        request_context.reset(token)
    except ValueError:
        log.debug("analytics_posthog: a task's visitor ended in another context than it started in")


def received(request: Any) -> RequestContext | None:
    """The visitor a task's headers carry (ours or posthog's), or ``None``."""
    if request is None:
        return None
    nested = getattr(request, "headers", None)
    headers: dict[str, Any] = nested if isinstance(nested, dict) else {}

    def header(name: str) -> str | None:
        return sanitise_id(headers.get(name, getattr(request, name, None)))

    distinct_id, session_id = header(DISTINCT_ID_HEADER), header(SESSION_ID_HEADER)
    if not (distinct_id or session_id):
        return None
    is_user = header(ID_TYPE_HEADER) == USER_ID
    return RequestContext(
        context={"sessionId": session_id} if session_id else {},
        user_id=distinct_id if is_user else None,
        anonymous_id=None if is_user else distinct_id,
    )


#: The name this hook had first; code written against it keeps working.
Analytics = CeleryAnalytics
