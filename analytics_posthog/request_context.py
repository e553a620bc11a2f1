"""What the web request being handled adds to each call made during it.

The Django, Flask and ASGI hooks build a ``RequestContext`` when a request
starts and ``activate`` it; every ``Client`` call made while it is active
(module functions included) gets the request's Segment context (``ip``,
``userAgent``, ``page``, ``locale``, ``sessionId``) under its own, and its ids
when it names nobody. A ``ContextVar`` carries it, so it is per thread and per
asyncio task, and a queued message keeps it because the context is merged into
the message when the call is made.

Framework-free on purpose: the hooks only read their framework's request and
pass plain strings here, so the parsing rules (which IP to trust, how the page
is described, how headers are sanitised) are the same for all three.
"""

from __future__ import annotations

import ipaddress
import re
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple, Union

from analytics_posthog import identity

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

#: How the app is reached: ``0`` (directly, the default: forwarding headers are
#: ignored, since anyone can send them), a number of proxy hops in front of it,
#: or the proxies' addresses/networks.
Trust = Union[int, Tuple[IPNetwork, ...]]

#: posthog-js sends these with fetch/XHR requests to hosts listed in its
#: ``__add_tracing_headers`` option, linking backend events to the browser session.
SESSION_ID_HEADER = "X-POSTHOG-SESSION-ID"
DISTINCT_ID_HEADER = "X-POSTHOG-DISTINCT-ID"

#: Header values end up in every event of the request; the caps keep a hostile
#: or broken client from pushing a call over Segment's 32 KB message limit
#: (which would raise in the app's view).
ID_LIMIT = 200
USER_AGENT_LIMIT = 1024
URL_LIMIT = 2048
LOCALE_LIMIT = 35

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LANGUAGE = re.compile(r"[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*")

Header = Callable[[str], Optional[str]]


@dataclass(frozen=True)
class RequestContext:
    """What one request contributes to the calls made while it is handled."""

    #: Segment context keys: ``ip``, ``userAgent``, ``page``, ``locale``, ``sessionId``.
    context: Mapping[str, Any] = field(default_factory=dict)
    #: The authenticated user, only when the app opted in.
    user_id: Optional[str] = None
    #: posthog-js's distinct id for the browser that made the request.
    anonymous_id: Optional[str] = None

    def fill(self, user_id: Any, anonymous_id: Any, context: Any) -> Tuple[Any, Any, Any]:
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


_current: ContextVar[Optional[RequestContext]] = ContextVar("analytics_posthog_request", default=None)

#: The active request's context, or ``None``: the only cost a call pays outside a request.
current = _current.get


def activate(request: RequestContext) -> Token:
    """Make ``request`` apply to calls in this thread or task until ``reset``."""
    return _current.set(request)


def reset(token: Token) -> None:
    """End the request's context (in the same thread or task that activated it)."""
    _current.reset(token)


def build(
    *,
    peer: Optional[str],
    header: Header,
    url: Optional[str],
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
    context: Dict[str, Any] = {}
    ip = client_ip(peer, header("X-Forwarded-For"), header("X-Real-IP"), trust)
    if ip:
        context["ip"] = ip
    user_agent = sanitise(header("User-Agent"), USER_AGENT_LIMIT)
    if user_agent:
        context["userAgent"] = user_agent
    context["page"] = page(url, path, query, header("Referer"))
    locale = first_language(header("Accept-Language"))
    if locale:
        context["locale"] = locale
    session_id = sanitise(header(SESSION_ID_HEADER), ID_LIMIT)
    anonymous_id = sanitise(header(DISTINCT_ID_HEADER), ID_LIMIT)
    user_id = sanitise(None if user_id is None else str(user_id), ID_LIMIT)
    # Without a header, the browser's cookies say who the visitor is (see ``identity``).
    cookies = None if anonymous_id else header("Cookie")
    browser = identity.from_cookies(cookies, identity.project_key()) if cookies else None
    if browser is not None:
        anonymous_id, user_id = browser.anonymous_id, user_id or browser.user_id
        session_id = session_id or browser.session_id
    if session_id:
        context["sessionId"] = session_id
    return RequestContext(context=context, user_id=user_id, anonymous_id=anonymous_id)


def page(url: Optional[str], path: str, query: str, referrer: Optional[str]) -> Dict[str, str]:
    """Segment's ``context.page``, as analytics.js would describe this URL."""
    described: Dict[str, str] = {}
    for key, value, limit in (
        ("url", url, URL_LIMIT),
        ("path", path, URL_LIMIT),
        ("search", "?" + query if query else None, URL_LIMIT),
        ("referrer", referrer, URL_LIMIT),
    ):
        value = sanitise(value, limit)
        if value:
            described[key] = value
    return described


def sanitise(value: Optional[str], limit: int) -> Optional[str]:
    """A header value safe to put in an event: no control characters, at most ``limit`` long."""
    if not value:
        return None
    return _CONTROL.sub("", value).strip()[:limit] or None


def first_language(accept_language: Optional[str]) -> Optional[str]:
    """The first language an ``Accept-Language`` header lists (``*`` is no language)."""
    if not accept_language:
        return None
    first = accept_language.split(",", 1)[0].split(";", 1)[0].strip()
    match = _LANGUAGE.fullmatch(first)
    return first[:LOCALE_LIMIT] if match else None


def parse_trust(value: Union[None, bool, int, str, Iterable[str]]) -> Trust:
    """The ``trusted_proxies`` setting: a hop count, or addresses/networks (a list or a comma-separated string)."""
    if value is None or value is False:
        return 0
    if isinstance(value, bool) or (isinstance(value, int) and value < 0):
        raise ValueError("trusted_proxies must be a number of proxy hops (0 or more) or proxy addresses/networks, not %r" % (value,))
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        value = value.strip()
        if value.isdigit():
            return int(value)
        value = value.split(",")
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in value if part.strip())


def client_ip(peer: Optional[str], forwarded_for: Optional[str], real_ip: Optional[str], trust: Trust) -> Optional[str]:
    """The end user's address.

    The peer is the user unless the app said it sits behind proxies. With a
    hop count ``n``, the ``n``-th ``X-Forwarded-For`` entry from the right is
    the one the outermost trusted proxy saw. With proxy networks, the chain is
    walked from the peer leftwards while the hop is a trusted proxy, and the
    first untrusted address is the user (entries further left are whatever the
    client claimed). ``X-Real-IP`` stands in for a missing ``X-Forwarded-For``.
    """
    peer_ip = _ip(peer)
    if not trust or peer_ip is None:
        return peer_ip
    header = forwarded_for if forwarded_for and forwarded_for.strip() else real_ip
    chain = [entry.strip() for entry in header.split(",")] if header else []
    if isinstance(trust, int):
        return (_ip(chain[-trust]) if len(chain) >= trust else None) or peer_ip
    client = peer_ip
    for entry in reversed(chain):
        if not _trusted(client, trust):
            break
        hop = _ip(entry)
        if hop is None:
            break
        client = hop
    return client


def _trusted(address: str, networks: Tuple[IPNetwork, ...]) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in network for network in networks)


def _ip(value: Optional[str]) -> Optional[str]:
    """``value`` as a normalised IP address (ports and IPv6 brackets removed), or ``None``."""
    if not value:
        return None
    value = value.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None
