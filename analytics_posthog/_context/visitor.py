"""Who a call that names nobody is about: the web request's visitor, or posthog's context.

A call inside a hooked web request (or a Celery task started from one) takes
the request's ids and session (``_context.request``). Outside one, an app that
already uses posthog's own contexts (``posthog.new_context()``,
``posthog.identify_context()``, ``posthog.set_context_session()``) gets that
distinct id and session on both legs, as posthog's own ``capture()`` would.

posthog's distinct id becomes Segment's ``anonymousId``, not ``userId``: it
may be posthog-js's anonymous id (posthog's own web middlewares identify the
context with the ``X-POSTHOG-DISTINCT-ID`` header), and PostHog sees the same
distinct id either way. posthog's context tags are posthog's alone: its client
adds them to the PostHog events when it captures them, and the Segment leg
stays as Segment would have sent it.
"""

from __future__ import annotations

from analytics_posthog._context import request as request_context
from analytics_posthog._context.fields import sanitise_id
from analytics_posthog._context.request import RequestContext
from analytics_posthog._patches.posthog import context_distinct_id, context_session_id


def current() -> RequestContext | None:
    """The request's context, else one built from posthog's context, else ``None``."""
    request = request_context.current()
    if request is not None:
        return request
    return from_posthog_context()


def from_posthog_context() -> RequestContext | None:
    """posthog's context identity and session as a request context; ``None`` when it sets neither."""
    distinct_id = sanitise_id(context_distinct_id())
    session_id = sanitise_id(context_session_id())
    if not (distinct_id or session_id):
        return None
    return RequestContext(
        context={"sessionId": session_id} if session_id else {}, anonymous_id=distinct_id
    )
