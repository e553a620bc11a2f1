"""Django hook: add ``"analytics_posthog.integrations.django.AnalyticsMiddleware"`` to ``MIDDLEWARE``.

Settings come from ``settings.ANALYTICS_POSTHOG`` (a dict of the names in
``analytics_posthog.integrations.HookOptions.from_settings``). Put the
middleware after ``AuthenticationMiddleware`` when ``CAPTURE_USER_ID`` is on,
so ``request.user`` exists. Works for sync and async stacks without a thread
hop of its own (Django's ``sync_and_async_middleware`` pattern).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Optional, Union

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase

from analytics_posthog import integrations, request_context
from analytics_posthog.integrations import HookOptions
from analytics_posthog.request_context import RequestContext

GetResponse = Callable[[HttpRequest], Union[HttpResponseBase, Awaitable[HttpResponseBase]]]


class AnalyticsMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.options = HookOptions.from_settings(getattr(settings, "ANALYTICS_POSTHOG", {}), "settings.ANALYTICS_POSTHOG")
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        user = request.user if self.options.capture_user_id else None
        context = self._context(request, user)
        token = request_context.activate(context)
        try:
            response: Any = self.get_response(request)
            integrations.response_done(self.options, context, response.status_code, response.get("Content-Type"))
        finally:
            request_context.reset(token)
        if self.options.flush_per_request:
            integrations.flush()
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        user = None
        if self.options.capture_user_id:
            # request.user would query the session backend synchronously.
            auser = getattr(request, "auser", None)
            user = await auser() if auser is not None else await sync_to_async(lambda: request.user)()
        context = self._context(request, user)
        token = request_context.activate(context)
        try:
            response = await self.get_response(request)  # type: ignore[misc]
            integrations.response_done(self.options, context, response.status_code, response.get("Content-Type"))
        finally:
            request_context.reset(token)
        if self.options.flush_per_request:
            await sync_to_async(integrations.flush, thread_sensitive=False)()
        return response

    def _context(self, request: HttpRequest, user: Any) -> RequestContext:
        return request_context.build(
            peer=request.META.get("REMOTE_ADDR"),
            header=request.headers.get,
            url=_absolute_url(request),
            path=request.path,
            query=request.META.get("QUERY_STRING", ""),
            trust=self.options.trusted_proxies,
            user_id=user.pk if user is not None and user.is_authenticated else None,
        )


def _absolute_url(request: HttpRequest) -> Optional[str]:
    """The URL as Django resolves it (``USE_X_FORWARDED_HOST``, ``SECURE_PROXY_SSL_HEADER``)."""
    try:
        return request.build_absolute_uri()
    except DisallowedHost:
        return None
