"""Django hook: an app for ``INSTALLED_APPS`` and a middleware for ``MIDDLEWARE``.

    INSTALLED_APPS = [..., "analytics_posthog.integrations.django.AnalyticsPostHogConfig"]
    MIDDLEWARE = [..., "analytics_posthog.integrations.django.AnalyticsMiddleware"]

Settings come from ``settings.ANALYTICS_POSTHOG`` (a dict of the names in
``analytics_posthog.integrations.KNOWN_SETTINGS``). The app applies the keys
and hosts among them when Django starts (``ready()``), so calls made before
any request (management commands, start-up code, Celery tasks importing the
project) use them too; it re-applies them when a test overrides the setting.
The middleware reads the request settings only: building it changes nothing
else. Put it after ``AuthenticationMiddleware`` when ``CAPTURE_USER_ID`` is
on, so ``request.user`` exists. Works for sync and async stacks without a
thread hop of its own (Django's ``sync_and_async_middleware`` pattern).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import analytics_posthog
from analytics_posthog import integrations
from analytics_posthog._context import request as request_context
from analytics_posthog._context.request import RequestContext
from analytics_posthog.integrations import HookOptions

try:
    from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
    from django.apps import AppConfig, apps
    from django.conf import settings
    from django.core.exceptions import DisallowedHost, ImproperlyConfigured
    from django.core.signals import setting_changed
    from django.http import (
        FileResponse,
        HttpRequest,
        HttpResponseBase,
        StreamingHttpResponse,
    )
except ModuleNotFoundError as error:
    raise integrations.missing_extra("django", error) from None

SETTING = "ANALYTICS_POSTHOG"
APP = "analytics_posthog.integrations.django.AnalyticsPostHogConfig"


class AnalyticsPostHogConfig(AppConfig):
    """Applies ``settings.ANALYTICS_POSTHOG``'s keys and hosts when Django starts."""

    name = "analytics_posthog.integrations.django"
    label = "analytics_posthog"
    verbose_name = "analytics-posthog"

    def ready(self) -> None:
        apply_settings()
        setting_changed.connect(_setting_changed, dispatch_uid=APP)


def apply_settings() -> None:
    """Pass the module settings named in ``settings.ANALYTICS_POSTHOG`` to
    ``analytics_posthog.configure()`` (unknown names raise)."""
    configured = _configured()
    HookOptions.from_settings(configured, "settings." + SETTING)
    analytics_posthog.configure(**integrations.module_settings(configured))


def _setting_changed(setting: str, **_: Any) -> None:
    if setting == SETTING:
        apply_settings()


def _configured() -> Mapping[str, Any]:
    return getattr(settings, SETTING, None) or {}


GetResponse = Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]


class AnalyticsMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        configured = _configured()
        self.options = HookOptions.from_settings(configured, "settings." + SETTING)
        if integrations.module_settings(configured) and not apps.is_installed(
            AnalyticsPostHogConfig.name
        ):
            raise ImproperlyConfigured(
                "settings.%s names keys or hosts, which apply from start-up: add %r to INSTALLED_APPS"
                % (SETTING, APP)
            )
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        context = request_context.safely(
            lambda: self._context(request, request.user if self.options.capture_user_id else None)
        )
        token = request_context.activate(context)
        try:
            response: Any = self.get_response(request)
            integrations.response_done(
                self.options, context, response.status_code, response.get("Content-Type")
            )
            _stream_with(response, context)
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
            user = (
                await auser() if auser is not None else await sync_to_async(lambda: request.user)()
            )
        context = request_context.safely(lambda: self._context(request, user))
        token = request_context.activate(context)
        try:
            response = await self.get_response(request)  # type: ignore[misc]
            integrations.response_done(
                self.options, context, response.status_code, response.get("Content-Type")
            )
            _stream_with(response, context)
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


def _stream_with(response: HttpResponseBase, context: RequestContext) -> None:
    """Keep the request's context for calls made while a streamed body is produced.

    A file response is left alone: servers send its file directly
    (``wsgi.file_wrapper``), and no app code runs while they do.
    """
    if not isinstance(response, StreamingHttpResponse) or isinstance(response, FileResponse):
        return
    if response.is_async:
        response.streaming_content = request_context.activated_async(
            response.streaming_content, context
        )
    else:
        response.streaming_content = request_context.activated(response.streaming_content, context)


def _absolute_url(request: HttpRequest) -> str | None:
    """The URL as Django resolves it (``USE_X_FORWARDED_HOST``, ``SECURE_PROXY_SSL_HEADER``)."""
    try:
        return request.build_absolute_uri()
    except DisallowedHost:
        return None
