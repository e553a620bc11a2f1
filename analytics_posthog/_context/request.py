"""What the web request being handled adds to each call made during it.

The Django, Flask and ASGI hooks build a ``RequestContext`` when a request
starts and ``activate`` it; every ``Client`` call made while it is active
(module functions included) gets the request's Segment context (``ip``,
``userAgent``, ``page``, ``locale``, ``sessionId``) under its own, and its ids
when it names nobody. A ``ContextVar`` carries it, so it is per thread and per
asyncio task, and a queued message keeps it because the context is merged into
the message when the call is made.

Framework-free on purpose: the hooks only read their framework's request and
pass plain strings here, so the parsing rules (which IP to trust, in
``client_ip``; how the page is described and headers are sanitised, in
``_context.fields``) are the same for all three.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import (
    Any,
)

from analytics_posthog._context import cookies as identity
from analytics_posthog._context.client_ip import Trust, client_ip
from analytics_posthog._context.fields import (
    ID_LIMIT,
    USER_AGENT_LIMIT,
    first_language,
    sanitise,
    sanitise_field,
    sanitise_page,
)
from analytics_posthog._message.build import TOO_LARGE

#: posthog-js sends these with fetch/XHR requests to hosts listed in its
#: ``__add_tracing_headers`` option, linking backend events to the browser session.
SESSION_ID_HEADER = "X-POSTHOG-SESSION-ID"
DISTINCT_ID_HEADER = "X-POSTHOG-DISTINCT-ID"

#: Context key listing the hook's fields that were cut to their limit
#: (``["page.url", "userAgent"]``); PostHog gets it as ``segment_requestTruncated``.
TRUNCATED_KEY = "requestTruncated"
#: Context key set (``True``) on a call that would have exceeded Segment's size
#: limit only because of the request's context, and was made without it;
#: PostHog gets it as ``segment_requestOmitted``.
OMITTED_KEY = "requestOmitted"

log = logging.getLogger("analytics_posthog")

Header = Callable[[str], str | None]


@dataclass(frozen=True)
class RequestContext:
    """What one request contributes to the calls made while it is handled."""

    #: Segment context keys: ``ip``, ``userAgent``, ``page``, ``locale``, ``sessionId``.
    context: Mapping[str, Any] = field(default_factory=dict)
    #: The authenticated user, only when the app opted in.
    user_id: str | None = None
    #: posthog-js's distinct id for the browser that made the request.
    anonymous_id: str | None = None

    def apply(
        self,
        build: Callable[[Any, Any, Any], Any],
        user_id: Any,
        anonymous_id: Any,
        context: Any,
        ids: bool = True,
    ) -> Any:
        """``build(user_id, anonymous_id, context)`` with the request's context
        merged in, and its ids filled in (``ids``) where the call names nobody.

        What the request adds must never make the call fail: if the message
        is over Segment's size limit with the request's context and the
        call's own context is a dict, it is built again without the request's
        context (its ids stay) and marked with ``OMITTED_KEY``. Only the
        caller's own arguments can still raise, with Segment's error.
        """
        if ids:
            user_id, anonymous_id, merged = self.fill(user_id, anonymous_id, context)
        else:
            merged = self.merge(context)
        try:
            return build(user_id, anonymous_id, merged)
        except RuntimeError as error:
            if merged is context or error.args[:1] != (TOO_LARGE,):
                raise
        try:
            return build(user_id, anonymous_id, {**(context or {}), OMITTED_KEY: True})
        except RuntimeError:
            # Over the limit on its own (or by the marker's few bytes): the
            # caller's call as it is, with Segment's error if it is too large.
            return build(user_id, anonymous_id, context)

    def fill(self, user_id: Any, anonymous_id: Any, context: Any) -> tuple[Any, Any, Any]:
        """The call's ids and context with the request's filled in where the call left them out.

        Ids are only added to a call that names nobody (neither id), so an
        explicit id is never paired with one from a header a client controls.
        """
        if not user_id and not anonymous_id:
            if self.user_id:
                user_id = self.user_id
            elif self.anonymous_id:
                anonymous_id = self.anonymous_id
        return user_id, anonymous_id, self.merge(context)

    def merge(self, context: Any) -> Any:
        """The request's context under the call's: the call's keys win, ``page`` key by key.

        A ``context`` that is not a dict is returned as is, so Segment's own
        validation still rejects it the way it would outside a request.
        """
        if context and not isinstance(context, dict):
            return context
        own = context or {}
        merged = {**self.context, **own}
        page = self.context.get("page")
        if page is not None:
            if "page" not in own:
                merged["page"] = dict(page)
            elif isinstance(own["page"], dict):
                merged["page"] = {**page, **own["page"]}
        return merged


_current: ContextVar[RequestContext | None] = ContextVar("analytics_posthog_request", default=None)

#: The active request's context, or ``None`` (one ``ContextVar`` lookup).
current = _current.get


def activate(request: RequestContext) -> Token:
    """Make ``request`` apply to calls in this thread or task until ``reset``."""
    return _current.set(request)


def reset(token: Token) -> None:
    """End the request's context (in the same thread or task that activated it)."""
    _current.reset(token)


def activated(body: Iterable[Any], request: RequestContext) -> Iterator[Any]:
    """``body`` with ``request`` active while each chunk is made.

    A streamed response body runs after the view returned and the hook's
    activation ended, in whatever context the server iterates it.
    """
    chunks = iter(body)
    try:
        while True:
            token = activate(request)
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            finally:
                _end_chunk(token, request)
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


async def activated_async(body: AsyncIterable[Any], request: RequestContext) -> AsyncIterator[Any]:
    """``activated`` for an asynchronous body."""
    chunks = body.__aiter__()
    try:
        while True:
            token = activate(request)
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            finally:
                _end_chunk(token, request)
            yield chunk
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()


def _end_chunk(token: Token, request: RequestContext) -> None:
    """Undo the activation for one chunk, unless the request ended while the
    chunk was made: Flask before 2.3 runs its teardown (the hook's ``reset``)
    inside the last ``next()`` of a ``stream_with_context`` body, and undoing
    ours after that would bring the ended request back for every later call."""
    if _current.get() is request:
        reset(token)


def safely(read: Callable[[], RequestContext]) -> RequestContext:
    """The request's context from ``read``, or none if reading the request fails.

    Hooks read whatever a client sent (and the app's user callable); nothing
    in that may turn into an error in the app's view.
    """
    global _read_failed
    try:
        return read()
    except Exception:
        # A client that can cause this can cause it on every request: one WARNING, then DEBUG.
        level, _read_failed = (logging.DEBUG if _read_failed else logging.WARNING), True
        log.log(
            level,
            "analytics_posthog: could not read the request; its calls get no request context",
            exc_info=True,
        )
        return RequestContext()


_read_failed = False


def build(
    *,
    peer: str | None,
    header: Header,
    url: str | None,
    path: str,
    query: str,
    trust: Trust = 0,
    user_id: Any = None,
) -> RequestContext:
    """A request's context from what its framework knows about it.

    ``header`` looks a request header up by name (case-insensitively);
    ``url`` is the absolute URL with its query string as the framework
    resolved it (``None`` when it could not).
    """
    truncated: list[str] = []
    context: dict[str, Any] = {}
    ip = client_ip(peer, header("X-Forwarded-For"), header("X-Real-IP"), trust)
    if ip:
        context["ip"] = ip
    user_agent = sanitise_field("userAgent", header("User-Agent"), USER_AGENT_LIMIT, truncated)
    if user_agent:
        context["userAgent"] = user_agent
    context["page"] = sanitise_page(url, path, query, header("Referer"), truncated)
    locale = first_language(header("Accept-Language"))
    if locale:
        context["locale"] = locale
    session_id = sanitise_field("sessionId", header(SESSION_ID_HEADER), ID_LIMIT, truncated)
    anonymous_id = sanitise(header(DISTINCT_ID_HEADER), ID_LIMIT)
    # posthog-js's header names the person its own events go to (after its
    # identify(), the user's id): server events join that person, and the
    # logged-in user comes next. Without either, the browser's cookies say
    # who the visitor is (see ``identity``).
    user_id = (
        None if anonymous_id else sanitise(None if user_id is None else str(user_id), ID_LIMIT)
    )
    cookies = None if anonymous_id else header("Cookie")
    browser = None
    if cookies:
        # The project key names posthog-js's cookie: looked up only when one may be there.
        browser = identity.from_cookies(
            cookies, identity.project_key() if "_posthog" in cookies else None
        )
    if browser is not None:
        anonymous_id, user_id = browser.anonymous_id, user_id or browser.user_id
        session_id = session_id or browser.session_id
    if session_id:
        context["sessionId"] = session_id
    if truncated:
        context[TRUNCATED_KEY] = truncated
    return RequestContext(context=context, user_id=user_id, anonymous_id=anonymous_id)
