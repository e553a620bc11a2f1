"""The browser's visitor, read from the cookies posthog-js and Segment's analytics.js keep.

A team that keeps its browser analytics while moving the backend gets server
events that join the same person and session with no frontend change:

- posthog-js keeps ``ph_<project key>_posthog``: URL-encoded JSON with the
  visitor's ``distinct_id`` and ``$sesid`` (``[last activity ms, session id,
  session start ms]``). The session counts only while posthog-js would still
  use it (active in the last 30 minutes, started less than 24 hours ago).
- analytics.js keeps ``ajs_user_id`` and ``ajs_anonymous_id``: JSON-encoded
  strings, usually URL-encoded too (plain values are accepted as well).

Cookies are whatever the client sent: a value that is too long, malformed or
of the wrong shape is ignored, never an error, and ids are cleaned and capped
like header values. Pure functions, no framework: the hooks hand over the
``Cookie`` header.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, TypeGuard
from urllib.parse import unquote

from analytics_posthog._context.fields import sanitise_id
from analytics_posthog._keys import resolve_keys

#: Only this much of a ``Cookie`` header is read (browsers send at most a few KB).
HEADER_LIMIT = 8192
#: A longer cookie value is not one a browser library wrote.
VALUE_LIMIT = 4096
#: posthog-js's session rules: a new session after this much inactivity, or at this age.
SESSION_IDLE_MS = 30 * 60 * 1000
SESSION_LENGTH_MS = 24 * 3600 * 1000

POSTHOG_PREFIX, POSTHOG_SUFFIX = "ph_", "_posthog"
AJS_USER_ID, AJS_ANONYMOUS_ID = "ajs_user_id", "ajs_anonymous_id"


@dataclass(frozen=True)
class BrowserVisitor:
    """Who the cookies say the visitor is: Segment's ids and posthog-js's session."""

    user_id: str | None = None
    anonymous_id: str | None = None
    session_id: str | None = None


def from_cookies(
    cookie_header: str | None, project_key: str | None, now_ms: float | None = None
) -> BrowserVisitor | None:
    """The visitor from posthog-js's cookie if it names one, else from analytics.js's cookies, else ``None``.

    ``project_key``: the PostHog project key, naming posthog-js's cookie; when
    it is not known, the only ``ph_*_posthog`` cookie there is (none if several).
    """
    if not cookie_header:
        return None
    cookies = parse(cookie_header)
    found = posthog_js(cookies, project_key, time.time() * 1000 if now_ms is None else now_ms)
    return found if found is not None else analytics_js(cookies)


def parse(cookie_header: str) -> dict[str, str]:
    """``name -> raw value`` of a ``Cookie`` header (the first of a repeated name wins)."""
    cookies: dict[str, str] = {}
    for pair in cookie_header[:HEADER_LIMIT].split(";"):
        name, sep, value = pair.partition("=")
        name = name.strip()
        if sep and name and name not in cookies:
            cookies[name] = value.strip()
    return cookies


def posthog_js(
    cookies: dict[str, str], project_key: str | None, now_ms: float
) -> BrowserVisitor | None:
    if project_key:
        raw = cookies.get(posthog_cookie_name(project_key))
    else:
        candidates = [
            value
            for name, value in cookies.items()
            if name.startswith(POSTHOG_PREFIX) and name.endswith(POSTHOG_SUFFIX)
        ]
        raw = candidates[0] if len(candidates) == 1 else None
    data = _json(raw)
    if not isinstance(data, dict):
        return None
    distinct_id = sanitise_id(data.get("distinct_id"))
    if distinct_id is None:
        return None
    return BrowserVisitor(
        anonymous_id=distinct_id, session_id=_live_session(data.get("$sesid"), now_ms)
    )


def posthog_cookie_name(project_key: str) -> str:
    """posthog-js's cookie name for a project (it spells ``+ / =`` out, as in base64 keys)."""
    token = project_key.replace("+", "PL").replace("/", "SL").replace("=", "EQ")
    return POSTHOG_PREFIX + token + POSTHOG_SUFFIX


def analytics_js(cookies: dict[str, str]) -> BrowserVisitor | None:
    user_id, anonymous_id = (
        _ajs_id(cookies.get(AJS_USER_ID)),
        _ajs_id(cookies.get(AJS_ANONYMOUS_ID)),
    )
    if user_id is None and anonymous_id is None:
        return None
    return BrowserVisitor(user_id=user_id, anonymous_id=anonymous_id)


def project_key() -> str | None:
    """The PostHog project key the default client uses (or will use): its settings, then the environment."""
    import analytics_posthog

    client = analytics_posthog.default_client
    if client is not None:
        return client.posthog_api_key
    return resolve_keys(
        analytics_posthog.write_key, analytics_posthog.posthog_api_key, None
    ).posthog_api_key


def _live_session(sesid: Any, now_ms: float) -> str | None:
    if not isinstance(sesid, list) or len(sesid) < 2:
        return None
    last_activity, session_id = sesid[0], sesid[1]
    started = sesid[2] if len(sesid) > 2 else None
    if not _number(last_activity) or now_ms - last_activity > SESSION_IDLE_MS:
        return None
    if _number(started) and now_ms - started > SESSION_LENGTH_MS:
        return None
    return sanitise_id(session_id)


def _ajs_id(raw: str | None) -> str | None:
    if raw is None or len(raw) > VALUE_LIMIT:
        return None
    value: Any = unquote(raw)
    if value.startswith(('"', "[", "{")):
        value = _json(value, url_encoded=False)  # a JSON string; any other JSON is not an id
    return sanitise_id(value)


def _json(raw: str | None, url_encoded: bool = True) -> Any:
    """JSON from a cookie value (URL-decoded first if ``url_encoded``); ``None`` when it is not JSON."""
    if raw is None or len(raw) > VALUE_LIMIT:
        return None
    try:
        return json.loads(unquote(raw) if url_encoded else raw)
    except (ValueError, RecursionError):
        return None


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
