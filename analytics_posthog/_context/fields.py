"""What a request's headers and URL may put into an event: cleaned and capped.

Every value here comes from whoever sent the request, who may send control
characters, lone surrogates or megabytes. Each field is cleaned of what no
encoder or log should get and cut to a byte budget of the JSON both legs send,
so a hostile request cannot make the app's own calls fail or grow past
Segment's message limit.
"""

from __future__ import annotations

import json
import re

#: What a request adds ends up in every event of the request. Each field is
#: capped in bytes of the JSON both legs send (``ensure_ascii``: a non-ASCII
#: character costs 6 or 12), so everything the hook adds stays under 10 KB and
#: the caller keeps over 22 KB of Segment's 32 KB message limit.
ID_LIMIT = 200
USER_AGENT_LIMIT = 1024
URL_LIMIT = 2048
LOCALE_LIMIT = 35

#: Control characters, and surrogates: a ``str`` holds them only unpaired,
#: which no encoder accepts.
_UNSENDABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_LANGUAGE = re.compile(r"[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*")


def sanitise_page(
    url: str | None, path: str, query: str, referrer: str | None, truncated: list[str]
) -> dict[str, str]:
    """Segment's ``context.page``, as analytics.js would describe this URL,
    noting each field that was cut (``page.url``, ...) in ``truncated``."""
    described: dict[str, str] = {}
    for key, value in (
        ("url", url),
        ("path", path),
        ("search", "?" + query if query else None),
        ("referrer", referrer),
    ):
        value = sanitise_field("page." + key, value, URL_LIMIT, truncated)
        if value:
            described[key] = value
    return described


def sanitise_field(name: str, value: str | None, limit: int, truncated: list[str]) -> str | None:
    """``sanitise``, noting ``name`` in ``truncated`` when the value was cut."""
    if not value:
        return None
    whole = _strip(value)
    fitted = _fit(whole, limit)
    if fitted != whole:
        truncated.append(name)
    return fitted or None


def sanitise(value: str | None, limit: int) -> str | None:
    """A header value safe to put in an event: no control characters or lone
    surrogates, at most ``limit`` bytes of JSON."""
    return sanitise_field("", value, limit, [])


def sanitise_id(value: object) -> str | None:
    """An id from outside (a header, a cookie, posthog's context, a task's
    headers): text only, within ID_LIMIT; anything else is no id."""
    return sanitise(value, ID_LIMIT) if isinstance(value, str) else None


def _strip(value: str) -> str:
    return _UNSENDABLE.sub("", value).strip()


def _fit(value: str, limit: int) -> str:
    """The longest prefix of ``value`` whose JSON string (as both legs encode
    it, ``ensure_ascii``) is at most ``limit`` bytes, quotes not counted."""
    if len(value) * 12 <= limit or _json_size(value) <= limit:
        return value
    # Every character costs at least one byte: no longer prefix can fit.
    low, high = 0, min(len(value), limit)
    while low < high:
        middle = (low + high + 1) // 2
        if _json_size(value[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return value[:low]


def _json_size(value: str) -> int:
    return len(json.dumps(value)) - 2


def first_language(accept_language: str | None) -> str | None:
    """The first language an ``Accept-Language`` header lists (``*`` is no language)."""
    if not accept_language:
        return None
    first = accept_language.split(",", 1)[0].split(";", 1)[0].strip()
    match = _LANGUAGE.fullmatch(first)
    return first[:LOCALE_LIMIT] if match else None
