"""Web framework hooks, one module per framework, each imported only when used.

What the three share lives here (framework-free): the hook settings, which
of them are module settings, and what happens when a response is done (the
optional automatic page call and flush), and ``visitor_named()`` for the
app's own views. Reading a hook's settings changes
nothing: the Django app and the Flask extension pass the module settings
among them to ``analytics_posthog.configure()`` as their set-up step.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Union

import analytics_posthog
from analytics_posthog._context import request as request_context
from analytics_posthog._context.client_ip import Trust, parse_trust
from analytics_posthog._context.request import RequestContext

log = logging.getLogger("analytics_posthog")

#: Setting name (Django ``ANALYTICS_POSTHOG`` key, Flask ``ANALYTICS_POSTHOG_<name>``) -> ``configure()`` name.
MODULE_SETTINGS = {
    "API_KEY": "posthog_api_key",
    "HOST": "posthog_host",
    "WRITE_KEY": "write_key",
    "SEGMENT_HOST": "host",
    "GROUP_TYPE": "group_type",
    "SPOOL_DIR": "spool_dir",
    "SPOOL_MAX_BYTES": "spool_max_bytes",
}

#: Paths that never get an automatic page call: static files and health checks
#: are not pages anyone visits.
DEFAULT_PAGE_SKIP: tuple[str | re.Pattern[str], ...] = (
    "/static/",
    "/media/",
    "/favicon.ico",
    "/robots.txt",
    "/health",
    "/ready",
    "/live",
    "/ping",
)

PageSkip = tuple[Union[str, "re.Pattern[str]"], ...]


def missing_extra(extra: str, error: ModuleNotFoundError) -> ModuleNotFoundError:
    """The error a hook raises when its framework is not installed: it names the
    extra to install, as a bare ``No module named 'flask'`` does not."""
    package = (error.name or extra).split(".")[0]
    return ModuleNotFoundError(
        "analytics_posthog.integrations.%s needs %s: pip install 'analytics-posthog[%s]'"
        % (extra, package, extra),
        name=package,
    )


@dataclass(frozen=True)
class HookOptions:
    """How a hook treats requests; everything that sends more than the calls the app makes is off by default."""

    #: See ``client_ip.parse_trust``.
    trusted_proxies: Trust = 0
    #: Take the user id of calls that name nobody from the framework's authenticated
    #: user (``True``), or from this callable (Flask); off: no personal data unasked.
    capture_user_id: bool | Callable[[], Any] = False
    #: One Segment ``page`` call per successful HTML response.
    page_calls: bool = False
    #: Path prefixes (str) or patterns (matched at the start) that get no page call.
    page_skip: PageSkip = DEFAULT_PAGE_SKIP
    #: Deliver what the request queued before the response is returned, for
    #: serverless platforms that freeze the process afterwards.
    flush_per_request: bool = False

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], source: str) -> HookOptions:
        """The hook settings among ``settings`` (upper-case names); the module
        settings among them are left to ``module_settings``.

        Unknown names raise, so a misspelt ``TRUSTED_PROXIES`` does not silently
        leave spoofable headers ignored (or trusted).
        """
        unknown = sorted(set(settings) - KNOWN_SETTINGS)
        if unknown:
            raise ValueError(
                "%s: unknown setting(s) %s; known: %s"
                % (source, ", ".join(unknown), ", ".join(sorted(KNOWN_SETTINGS)))
            )
        return cls(
            trusted_proxies=parse_trust(settings.get("TRUSTED_PROXIES")),
            capture_user_id=settings.get("CAPTURE_USER_ID", False),
            page_calls=bool(settings.get("PAGE_CALLS", False)),
            page_skip=tuple(settings.get("PAGE_SKIP", DEFAULT_PAGE_SKIP)),
            flush_per_request=bool(settings.get("FLUSH_PER_REQUEST", False)),
        )

    def wants_page_call(self, status: int, content_type: str | None, path: str) -> bool:
        if not self.page_calls or not 200 <= status < 300:
            return False
        if not (content_type or "").lower().startswith("text/html"):
            return False
        return not any(
            path.startswith(skip) if isinstance(skip, str) else skip.match(path)
            for skip in self.page_skip
        )


#: Every name a hook's settings may hold.
KNOWN_SETTINGS = frozenset(MODULE_SETTINGS) | {
    "TRUSTED_PROXIES",
    "CAPTURE_USER_ID",
    "PAGE_CALLS",
    "PAGE_SKIP",
    "FLUSH_PER_REQUEST",
}


def module_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The module settings (``posthog_api_key``, ...) named in a hook's
    settings, as ``analytics_posthog.configure()`` takes them."""
    return {
        MODULE_SETTINGS[name]: value for name, value in settings.items() if name in MODULE_SETTINGS
    }


def response_done(
    options: HookOptions, request: RequestContext, status: int, content_type: str | None
) -> None:
    """The automatic page call, made while the request's context is still active.

    A request that names nobody (no authenticated user opted in, no posthog-js
    distinct id) gets no page call: a made-up anonymous id per request would
    count every page view as a new visitor.
    """
    path = request.context.get("page", {}).get("path", "")
    if not options.wants_page_call(status, content_type, path):
        return
    if not (request.user_id or request.anonymous_id):
        log.debug("analytics_posthog: no page call for %s: the request names no user", path)
        return
    try:
        analytics_posthog.page(properties=dict(request.context["page"]))
    except Exception:
        log.exception("analytics_posthog: the automatic page call failed")


def visitor_named() -> bool:
    """Whether the hook named this request's visitor: posthog-js's header or
    cookie, analytics.js's cookies, or the logged-in user. An app that gives
    anonymous visitors an id of its own needs it only when this is ``False``:
    an id passed to a call wins over the hook's, and would split one visitor
    in two."""
    request = request_context.current()
    return request is not None and bool(request.user_id or request.anonymous_id)


def flush() -> None:
    """Deliver what the default client queued; a process that made no call has nothing to flush."""
    if analytics_posthog.default_client is not None:
        analytics_posthog.default_client.flush()


def deliver_at_shutdown() -> None:
    """The server is stopping: deliver what the default client holds.

    Within ``exit_timeout``; what is left then is counted and reported
    through ``stats()``, ``on_error`` and the log now, since the process may
    end by a signal right after, with no exit handler run. The client stays
    usable after it, since servers run in tests start and stop many times.
    """
    client = analytics_posthog.default_client
    delivery = client.delivery if client is not None else None
    if delivery is not None:
        delivery.deliver_now()
