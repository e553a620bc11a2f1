"""Flask hook: ``FlaskAnalytics(app)`` or ``FlaskAnalytics().init_app(app)``.

Settings come from ``app.config`` keys ``ANALYTICS_POSTHOG_<NAME>`` (the
names in ``analytics_posthog.integrations.KNOWN_SETTINGS``); ``init_app``
is the set-up step, so it also passes the module settings (keys, hosts) named
there to ``analytics_posthog.configure()``.
``ANALYTICS_POSTHOG_CAPTURE_USER_ID`` is ``True`` for flask_login's
``current_user`` or a callable returning the user id (or ``None``).
"""

from __future__ import annotations

from typing import Any

import analytics_posthog
from analytics_posthog import integrations
from analytics_posthog._context import request as request_context
from analytics_posthog.integrations import HookOptions

try:
    from flask import Flask, Response, current_app, g, request
except ModuleNotFoundError as error:
    raise integrations.missing_extra("flask", error) from None

PREFIX = "ANALYTICS_POSTHOG_"
EXTENSION = "analytics_posthog"


class FlaskAnalytics:
    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        settings = {
            key[len(PREFIX) :]: value for key, value in app.config.items() if key.startswith(PREFIX)
        }
        options = app.extensions[EXTENSION] = HookOptions.from_settings(
            settings, "app.config " + PREFIX + "*"
        )
        if options.capture_user_id is True:
            _require_flask_login()
        analytics_posthog.configure(**integrations.module_settings(settings))
        app.before_request(_start)
        app.after_request(_response)
        app.teardown_request(_end)


def _options() -> HookOptions:
    return current_app.extensions[EXTENSION]


def _start() -> None:
    options = _options()
    context = request_context.safely(
        lambda: request_context.build(
            peer=request.remote_addr,
            header=request.headers.get,
            url=request.url,
            path=request.script_root + request.path,
            query=request.query_string.decode("latin-1"),
            trust=options.trusted_proxies,
            user_id=_user_id(options),
        )
    )
    g._analytics_posthog = (context, request_context.activate(context))


def _response(response: Response) -> Response:
    started = g.get("_analytics_posthog")
    if started is not None:
        integrations.response_done(
            _options(), started[0], response.status_code, response.content_type
        )
        if response.is_streamed and not response.direct_passthrough:
            response.response = request_context.activated(response.response, started[0])
    return response


def _end(error: BaseException | None) -> None:
    started = g.pop("_analytics_posthog", None)
    if started is None:
        return
    request_context.reset(started[1])
    if _options().flush_per_request:
        integrations.flush()


def _require_flask_login() -> None:
    """``CAPTURE_USER_ID = True`` reads flask-login's ``current_user``: say so
    at set-up, not with a failure on every request."""
    try:
        import flask_login  # noqa: F401
    except ImportError:
        raise ModuleNotFoundError(
            "%sCAPTURE_USER_ID = True takes the user from flask-login, which is not "
            "installed: pip install flask-login, or set it to a function that returns "
            "the user id" % PREFIX,
            name="flask_login",
        ) from None


def _user_id(options: HookOptions) -> Any:
    capture = options.capture_user_id
    if callable(capture):
        return capture()
    if not capture:
        return None
    from flask_login import (
        current_user,  # the documented source when no callable is given
    )

    return current_user.get_id() if current_user.is_authenticated else None


#: The name this hook had first; code written against it keeps working.
Analytics = FlaskAnalytics
