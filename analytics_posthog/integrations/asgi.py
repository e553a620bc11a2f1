"""ASGI hook for Starlette, FastAPI and plain ASGI apps.

``app.add_middleware(AnalyticsMiddleware, trusted_proxies=1)`` (Starlette,
FastAPI) or ``AnalyticsMiddleware(app)`` around any ASGI app. Pure ASGI, not
``BaseHTTPMiddleware``: the endpoint runs in the task that activated the
request context, so the context reaches it. Needs no framework import.

There is no framework config to read here, so keys come from the module
settings or environment variables and the hook settings are keyword arguments.
With ``capture_user_id=True`` the user is ``scope["user"]`` as Starlette's
``AuthenticationMiddleware`` sets it, so that middleware must run first (be
outside this one).

The middleware also takes part in the ASGI lifespan, to deliver what is
queued when the server shuts down, whether or not the app speaks lifespan
(see ``analytics_posthog.integrations.lifespan``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from analytics_posthog import integrations
from analytics_posthog._context import request as request_context
from analytics_posthog._context.client_ip import parse_trust
from analytics_posthog.integrations import DEFAULT_PAGE_SKIP, HookOptions, PageSkip
from analytics_posthog.integrations.lifespan import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    lifespan,
)

_DEFAULT_PORTS = {"http": 80, "https": 443}


class AnalyticsMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted_proxies: None | int | str | Iterable[str] = None,
        capture_user_id: bool = False,
        page_calls: bool = False,
        page_skip: PageSkip = DEFAULT_PAGE_SKIP,
        flush_per_request: bool = False,
    ) -> None:
        self.app = app
        self.options = HookOptions(
            trusted_proxies=parse_trust(trusted_proxies),
            capture_user_id=capture_user_id,
            page_calls=page_calls,
            page_skip=tuple(page_skip),
            flush_per_request=flush_per_request,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(self.app, scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        context = request_context.safely(lambda: self._context(scope))
        response: dict[str, Any] = {}

        async def send_and_watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                response["content_type"] = next(
                    (
                        value.decode("latin-1")
                        for name, value in message.get("headers", ())
                        if name.lower() == b"content-type"
                    ),
                    None,
                )
            await send(message)

        token = request_context.activate(context)
        try:
            await self.app(scope, receive, send_and_watch)
            if "status" in response:
                integrations.response_done(
                    self.options, context, response["status"], response["content_type"]
                )
        finally:
            request_context.reset(token)
        if self.options.flush_per_request:
            await asyncio.to_thread(integrations.flush)

    def _context(self, scope: Scope) -> request_context.RequestContext:
        headers = _headers(scope)
        # scope["path"] is decoded (and, as servers now send it, includes
        # root_path); what cannot be UTF-8 (lone surrogates) is left out.
        path = quote(scope.get("path", ""), safe="/:@!$&'()*+,;=~", errors="ignore")
        query = scope.get("query_string", b"").decode("latin-1")
        client = scope.get("client")
        return request_context.build(
            peer=client[0] if client else None,
            header=lambda name: headers.get(name.lower()),
            url=_url(scope, headers.get("host"), path, query),
            path=path,
            query=query,
            trust=self.options.trusted_proxies,
            user_id=_user_id(scope) if self.options.capture_user_id else None,
        )


def _headers(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name; repeated headers joined as HTTP allows (``X-Forwarded-For`` chains)."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = headers[name] + ", " + value if name in headers else value
    return headers


def _url(scope: Scope, host: str | None, path: str, query: str) -> str | None:
    scheme = scope.get("scheme", "http")
    if not host:
        server = scope.get("server")
        if not server:
            return None
        name, port = server
        name = "[%s]" % name if ":" in name else name
        host = (
            name if port == _DEFAULT_PORTS.get(scheme) or port is None else "%s:%s" % (name, port)
        )
    return "%s://%s%s%s" % (scheme, host, path, "?" + query if query else "")


def _user_id(scope: Scope) -> Any:
    """Starlette's ``identity``; a user class that does not define it (starlette
    before 1.7, or an app's own ``BaseUser``) raises, so its ``display_name`` stands in."""
    user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    try:
        return user.identity
    except (NotImplementedError, AttributeError):
        return getattr(user, "display_name", None)
