"""Every reach inside posthog-python, in one place (see ``_patches.register`` for the rules).

Patches (off with ``ANALYTICS_POSTHOG_NO_INTERNALS=1``), installed once per
process by the first ``PostHogLeg``, so every posthog client in the process
(an app's own one too) gets them:

- ``system_context_once``, ``clean_fast_path``, ``finite_first_encode``:
  posthog's per-event work made cheaper, with identical results
  (``_patches.posthog_speedups``).
- ``context_os``: while we capture, ``system_context()`` names the end user's
  OS (from ``context.os``), never the server's; other callers get posthog's answer.
- ``posthog_retry_jitter``, ``posthog_attempt_watch``: posthog's retries
  jittered and counted, failed attempts told to ``outages`` (``retries``).
- ``posthog_exit_handoff``: an owned client's exit handler unregistered, so
  our exit does its work within our deadline.
- ``context_pinning``: posthog's context scope frozen at the call, for the
  delivery that comes later on the dispatcher's thread.
- ``posthog_proxies``: the ``proxies`` setting for our clients' event
  requests (posthog has no such option); other clients' requests unchanged.
- ``posthog_outcome_watch``: installed only when an app hands us its own
  client (our events' fate in its batches counted and told to our
  ``on_error``) or a spool is set (records settled as their batch ends);
  every batch goes through unchanged.

Borrowings: posthog's context identity and session getters, its event size
limit (replay), and the type of the stand-in queue posthog uses where it
cannot queue (``cannot_queue``).
"""

from __future__ import annotations

import atexit
import contextvars
import functools
import inspect
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

import posthog
import posthog.client as posthog_client
import posthog.consumer as posthog_consumer
import posthog.contexts as posthog_contexts
import posthog.request as posthog_request
import posthog.utils as posthog_utils
import requests

from analytics_posthog._delivery import forks, retries
from analytics_posthog._delivery.forks import fork_safe_lock
from analytics_posthog._message.clean import with_fast_path
from analytics_posthog._patches.posthog_speedups import finite_first, one_argument
from analytics_posthog._patches.register import UNUSED, attempt, declare, missing

try:
    from posthog._disabled_lane_queue import _DisabledLaneQueue
except ImportError:  # a posthog that always queues, or fails otherwise
    _DisabledLaneQueue = None

try:
    import posthog.capture_v1 as posthog_capture_v1
except (
    ImportError
):  # a posthog without the capture v1 lane: its consumer's _backoff is the only one
    posthog_capture_v1 = None  # type: ignore[assignment]

log = logging.getLogger("analytics_posthog")

SYSTEM_CONTEXT = declare(
    "system_context_once",
    "patch",
    "posthog.client.system_context (cached)",
    "the server's OS looked up for every event",
)
CLEAN = declare(
    "clean_fast_path", "patch", "posthog.client.clean", "posthog's clean for every value (slower)"
)
ENCODE = declare(
    "finite_first_encode",
    "patch",
    "posthog.request.DatetimeSerializer.encode",
    "posthog's NaN walk over every event (slower)",
)
CONTEXT_OS = declare(
    "context_os",
    "patch",
    "posthog.client.system_context (wrapped)",
    "PostHog events carry the server's OS where the call gave no context.os",
)
JITTER = declare(
    "posthog_retry_jitter",
    "patch",
    "posthog consumer/capture_v1 _backoff",
    "no jitter; posthog's retries are not counted in stats()",
)
WATCH = declare(
    "posthog_attempt_watch",
    "patch",
    "posthog consumer.batch_post, capture_v1._post_v1",
    "no warning of an outage until posthog gives up (on_error)",
)
EXIT = declare(
    "posthog_exit_handoff",
    "patch",
    "posthog Client._atexit (unregistered)",
    "posthog's exit handler gives our client a further second at exit and drops what is left uncounted; "
    "a shut-down client stays in memory until exit",
)
PINNING = declare(
    "context_pinning",
    "patch",
    "posthog.contexts _context_stack, ContextScope, _get_current_context",
    "a posthog.tag() made after a call, in the same scope, may reach its event",
)
PROXIES = declare(
    "posthog_proxies",
    "patch",
    "posthog request/capture_v1 _get_session (for our proxied clients' sends only)",
    "posthog has no proxies option: a Client given proxies is refused (ValueError)",
)
IDENTITY = declare(
    "context_identity",
    "borrow",
    "posthog.contexts get_context_distinct_id, get_context_session_id",
    "posthog's context identity and session are not used for calls that name nobody",
)
SESSION = declare(
    "posthog_session_close",
    "borrow",
    "posthog.request._session (closed at exit)",
    "posthog's pooled connections are closed by the interpreter's teardown "
    "(under gevent, with a traceback each)",
)
SYNC_FAILURE = declare(
    "posthog_sync_failure",
    "patch",
    "posthog.client batch_post, _send_v1_batch (seen during our sync captures only)",
    "in sync mode, on_error gets a DeliveryError for the PostHog leg instead of posthog's "
    "exception, and posthog logs a traceback for each failed call",
)
LANE = declare(
    "posthog_queue_check",
    "borrow",
    "posthog._disabled_lane_queue._DisabledLaneQueue",
    "where posthog cannot queue (eventlet), our events are dropped and reported as a full queue",
)
OUTCOMES = declare(
    "posthog_outcome_watch",
    "patch",
    "posthog.consumer.Consumer.request (observed, for an app's own client or a spool)",
    "an app's client's failures of our events go uncounted; spooled records settle later",
)
EVENT_LIMIT = declare(
    "posthog_event_limit", "borrow", "posthog.consumer.MAX_MSG_SIZE", "900 KiB assumed"
)

#: posthog's ``capture()`` adds the server's OS (``system_context()``) over
#: every event's properties. On our events these describe the end user's
#: device, so the server's must never appear: only ``context.os`` may set them.
SERVER_OS_PROPERTIES = ("$os", "$os_version", "$os_distro")
#: The end user's OS properties for the event we are capturing (empty when
#: its context has none); ``None`` outside our captures, where
#: ``system_context()`` answers as posthog's own.
capture_os: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "analytics_posthog_context_os", default=None
)

_ORIGINALS: dict[str, Any] = {
    "system_context": getattr(posthog_client, "system_context", None),
    "clean": getattr(posthog_client, "clean", None),
    "encode": getattr(posthog_request, "DatetimeSerializer", object).__dict__.get("encode"),
    "atexit": getattr(posthog.Client, "_atexit", None),
    "post_v1": getattr(posthog_capture_v1, "_post_v1", None),
    "request": getattr(posthog_consumer, "Consumer", object).__dict__.get("request"),
}
_lock = fork_safe_lock()


def install() -> None:
    """Put every patch in place that its check allows (idempotent)."""
    with _lock:
        attempt(
            SYSTEM_CONTEXT,
            _check_own("system_context", getattr(posthog_utils, "system_context", None)),
            _cache_system_context,
        )
        attempt(CLEAN, _check_own("clean", getattr(posthog_utils, "clean", None)), _fast_clean)
        attempt(ENCODE, _check_encode, _finite_first_encode)
        attempt(CONTEXT_OS, _check_context_os, _answer_context_os)
        attempt(JITTER, _check_backoff, _jitter_backoff)
        attempt(WATCH, _check_watch, _watch_attempts)
        attempt(PROXIES, _check_proxies, _route_sessions)
        attempt(SYNC_FAILURE, _check_sync_sends, _catch_sync_failures)


def restore_speedups() -> None:
    """posthog's own functions again (the benchmarks measure posthog as its users run it).

    This also removes the end user's OS from ``system_context()`` until the
    next ``install()`` puts it back: for benchmarks only, never while a client
    of ours is in use.
    """
    with _lock:
        for reach, name in (
            (SYSTEM_CONTEXT, "system_context"),
            (CLEAN, "clean"),
            (ENCODE, "encode"),
        ):
            if reach.active:
                if name == "encode":
                    posthog_request.DatetimeSerializer.encode = _ORIGINALS[name]  # type: ignore[method-assign]
                else:
                    setattr(posthog_client, name, _ORIGINALS[name])
                reach.state = UNUSED
        if CONTEXT_OS.active:
            CONTEXT_OS.state = UNUSED


def _check_own(name: str, expected: Any) -> Callable[[], str | None]:
    def check() -> str | None:
        if _ORIGINALS[name] is None or expected is None:
            return "posthog.client.%s or posthog.utils.%s is missing" % (name, name)
        if (
            getattr(posthog_client, name, None) is not _ORIGINALS[name]
            or _ORIGINALS[name] is not expected
        ):
            return "posthog.client.%s is not posthog.utils.%s (replaced by someone else?)" % (
                name,
                name,
            )
        return None

    return check


def _cache_system_context() -> None:
    posthog_client.system_context = functools.lru_cache(maxsize=1)(_ORIGINALS["system_context"])


def _fast_clean() -> None:
    clean = _ORIGINALS["clean"]
    posthog_client.clean = one_argument(
        with_fast_path(clean, getattr(posthog_utils, "log", logging.getLogger("posthog")))
    )


def _check_encode() -> str | None:
    encode = _ORIGINALS["encode"]
    if posthog_request.DatetimeSerializer.__dict__.get("encode") is not encode or encode is None:
        return "posthog.request.DatetimeSerializer has no encode of its own, or it was replaced"
    if list(inspect.signature(encode).parameters) != ["self", "o"]:
        return "DatetimeSerializer.encode%s is not encode(self, o)" % inspect.signature(encode)
    return None


def _finite_first_encode() -> None:
    posthog_request.DatetimeSerializer.encode = finite_first(_ORIGINALS["encode"])  # type: ignore[method-assign,assignment]


def _check_context_os() -> str | None:
    current = getattr(posthog_client, "system_context", None)
    own = getattr(posthog_utils, "system_context", None)
    if own is None or (current is not own and getattr(current, "__wrapped__", None) is not own):
        return "posthog.client.system_context is not posthog.utils.system_context (replaced by someone else?)"
    return None


def _answer_context_os() -> None:
    """A ``before_send`` hook could strip the OS too, but posthog cleans the
    whole event again after it."""
    current = posthog_client.system_context
    if getattr(current, "answers_context_os", False):
        return

    def system_context() -> dict[str, Any]:
        own = current()
        context_os = capture_os.get()
        if context_os is None:
            return own
        return {**{k: v for k, v in own.items() if k not in SERVER_OS_PROPERTIES}, **context_os}

    system_context.answers_context_os = True  # type: ignore[attr-defined]
    system_context.__wrapped__ = current  # type: ignore[attr-defined]
    posthog_client.system_context = system_context


def _backoff_modules() -> list:
    return [
        module
        for module in (posthog_consumer, posthog_capture_v1)
        if module is not None and hasattr(module, "_backoff")
    ]


def _check_backoff() -> str | None:
    modules = _backoff_modules()
    if not modules:
        return "posthog's consumer has no _backoff"
    for module in modules:
        if len(inspect.signature(module._backoff).parameters) != 2:
            return "%s._backoff%s is not _backoff(attempt_index, retry_after)" % (
                module.__name__,
                inspect.signature(module._backoff),
            )
    return None


def _jitter_backoff() -> None:
    cap = getattr(posthog_capture_v1, "_MAX_BACKOFF_SECONDS", retries.POSTHOG_MAX_WAIT)
    for module in _backoff_modules():
        if not hasattr(module._backoff, "analytics_posthog"):
            module._backoff = retries.jittered(module._backoff, cap)


def _check_watch() -> str | None:
    if getattr(posthog_consumer, "batch_post", None) is not getattr(
        posthog_request, "batch_post", False
    ):
        return "posthog.consumer.batch_post is not posthog.request.batch_post"
    return None


def _watch_attempts() -> None:
    for module, name, original in (
        (posthog_consumer, "batch_post", getattr(posthog_request, "batch_post", None)),
        (posthog_capture_v1, "_post_v1", getattr(posthog_capture_v1, "_post_v1", None)),
    ):
        if getattr(module, name, None) is original and original is not None:
            setattr(module, name, retries.watched_post(original))


# -- outcomes of batches in an app's own client ----------------------------------

#: Told each batch a posthog consumer finished: ``(consumer, batch, error or None)``.
_outcome_observer: Callable[[Any, list[Any], Exception | None], None] | None = None
#: The batch this consumer thread is sending, while the outcome watch is on.
_sending = threading.local()


def watch_outcomes(observer: Callable[[Any, list[Any], Exception | None], None]) -> bool:
    """Have ``observer`` told the end of each batch posthog's consumers send
    (what posthog's ``on_error`` would hear, and the successes too); whether
    it will be. Installed only when needed: for an app's own client, whose
    ``on_error`` is the app's, and for a spool, which settles what was sent."""
    global _outcome_observer
    with _lock:
        if attempt(OUTCOMES, _check_request, _watch_requests):
            _outcome_observer = observer
            return True
    return False


def sending() -> list[Any] | None:
    """The batch the current posthog consumer thread is sending, if watched."""
    batch: list[Any] | None = getattr(_sending, "batch", None)
    return batch


def _check_request() -> str | None:
    original: Callable[..., Any] | None = _ORIGINALS["request"]
    if original is None or posthog_consumer.Consumer.__dict__.get("request") is not original:
        return "posthog.consumer.Consumer.request is missing or was replaced"
    if list(inspect.signature(original).parameters) != ["self", "batch"]:  # type: ignore[arg-type]
        return "posthog.consumer.Consumer.request takes other arguments"
    return None


def _watch_requests() -> None:
    original = _ORIGINALS["request"]

    @functools.wraps(original)
    def request(consumer: Any, batch: list[Any]) -> None:
        _sending.batch = batch
        try:
            original(consumer, batch)
        except Exception as error:
            _observed(consumer, batch, error)
            raise
        else:
            _observed(consumer, batch, None)
        finally:
            _sending.batch = None

    request.analytics_posthog = True  # type: ignore[attr-defined]
    posthog_consumer.Consumer.request = request  # type: ignore[method-assign]


def _observed(consumer: Any, batch: list[Any], error: Exception | None) -> None:
    """Runs on posthog's consumer thread: observing must never change its outcome."""
    observer = _outcome_observer
    if observer is None:
        return
    try:
        observer(consumer, batch, error)
    except Exception:
        log.exception("analytics_posthog: observing a posthog batch failed")


# -- proxies for our clients ----------------------------------------------------

#: Our posthog clients that send through proxies -> the proxies.
_proxies: weakref.WeakKeyDictionary[posthog.Client, dict[str, str]] = weakref.WeakKeyDictionary()
#: Each one's session (replaced in a forked child, whose parent's sockets are the parent's).
_sessions: weakref.WeakKeyDictionary[posthog.Client, requests.Session] = weakref.WeakKeyDictionary()
#: The client our leg is capturing through, on the caller's thread (sync mode sends there).
capturing_for: contextvars.ContextVar[posthog.Client | None] = contextvars.ContextVar(
    "analytics_posthog_capturing_for", default=None
)


class ProxiedSession(requests.Session):
    """A session whose every request goes through ``proxies``, passed per
    request as Segment's client passes them, so they win over the
    environment's ``HTTP(S)_PROXY`` on both legs alike."""

    def __init__(self, proxies: dict[str, str]) -> None:
        super().__init__()
        self.route = dict(proxies)
        # posthog's own adapters (its connection retries and socket options).
        built = posthog_request._build_session(getattr(posthog_request, "_socket_options", None))
        for prefix, adapter in built.adapters.items():
            self.mount(prefix, adapter)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("proxies"):
            # A copy: requests adds the environment's proxies to the dict it is given.
            kwargs["proxies"] = dict(self.route)
        return super().request(method, url, *args, **kwargs)


def _check_proxies() -> str | None:
    if not callable(getattr(posthog_request, "_get_session", None)) or not callable(
        getattr(posthog_request, "_build_session", None)
    ):
        return "posthog.request has no _get_session or _build_session"
    if "session" not in inspect.signature(posthog_request.post).parameters:
        return "posthog.request.post takes no session"
    if posthog_capture_v1 is not None and (
        getattr(posthog_capture_v1, "_get_session", None) is not posthog_request._get_session
        or _ORIGINALS["post_v1"] is None
        or "session" not in inspect.signature(_ORIGINALS["post_v1"]).parameters
    ):
        return "posthog.capture_v1 does not post through posthog.request._get_session"
    if not isinstance(getattr(posthog.Client, "consumers", None), property):
        return "posthog.Client has no consumers"
    return None


def _route_sessions() -> None:
    """posthog's ``post`` and capture v1's ``_post_v1`` send through
    ``_get_session()`` when no session is passed (posthog passes none for
    events): it answers our proxied client's session on that client's
    consumer threads and inside our sync-mode captures, posthog's own
    session everywhere else (an app's own clients, feature flags)."""
    original = posthog_request._get_session

    def _get_session() -> requests.Session:
        if _proxies:
            client = capturing_for.get()
            if client is None:
                thread = threading.current_thread()
                client = next((c for c in list(_proxies) if thread in (c.consumers or ())), None)
            session = _sessions.get(client) if client is not None else None
            if session is not None:
                return session
        return original()

    posthog_request._get_session = _get_session
    if posthog_capture_v1 is not None:
        posthog_capture_v1._get_session = _get_session


def can_proxy() -> bool:
    """Whether our posthog clients' events can be sent through proxies here."""
    install()
    return PROXIES.active


def send_through_proxies(client: posthog.Client, proxies: dict[str, str]) -> None:
    """Send ``client``'s events (a client we built: ``can_proxy()`` said yes) through ``proxies``."""
    _proxies[client] = dict(proxies)
    _sessions[client] = ProxiedSession(proxies)


def _new_sessions_in_child() -> None:
    for client, proxies in list(_proxies.items()):
        _sessions[client] = ProxiedSession(proxies)


forks.at_fork(_new_sessions_in_child)


# -- sync mode: posthog's exception, not its traceback -------------------------

#: While one of our sync-mode captures runs: where posthog's exception goes.
#: posthog's ``capture()`` logs it with a traceback and returns ``None``.
sync_failure: contextvars.ContextVar[list[Exception] | None] = contextvars.ContextVar(
    "analytics_posthog_sync_failure", default=None
)
_SYNC_SENDS = ("batch_post", "_send_v1_batch")


def _check_sync_sends() -> str | None:
    send = getattr(posthog_client, "batch_post", None)
    if send is not getattr(posthog_request, "batch_post", None) and not getattr(
        send, "analytics_posthog", False
    ):
        return "posthog.client.batch_post is not posthog.request.batch_post"
    return None


def _catch_sync_failures() -> None:
    for name in _SYNC_SENDS:
        original = getattr(posthog_client, name, None)
        if callable(original) and not getattr(original, "analytics_posthog", False):
            setattr(posthog_client, name, _caught(original))
    logging.getLogger("posthog").addFilter(_quiet_in_our_sync_captures)


def _caught(send: Callable[..., Any]) -> Callable[..., Any]:
    """``send``, its exception also kept for our sync capture (re-raised as before)."""

    @functools.wraps(send)
    def caught(*args: Any, **kwargs: Any) -> Any:
        try:
            return send(*args, **kwargs)
        except Exception as error:
            failures = sync_failure.get()
            if failures is not None:
                failures.append(error)
            raise

    caught.analytics_posthog = True  # type: ignore[attr-defined]
    return caught


def _quiet_in_our_sync_captures(record: logging.LogRecord) -> bool:
    """posthog's log lines are ours to replace while our sync capture fails
    (we log one line and tell ``on_error`` the exception); everyone else's stand."""
    return sync_failure.get() is None


def close_sessions(client: posthog.Client) -> None:
    """At exit: close posthog's pooled connections, and those of ``client``'s
    proxies, while the runtime still runs (see ``segment.close_session``)."""
    proxied = _sessions.get(client)
    if proxied is not None:
        proxied.close()
    if attempt(SESSION, _check_session, once=False):
        posthog_request._session.close()


def _check_session() -> str | None:
    if not isinstance(getattr(posthog_request, "_session", None), requests.Session):
        return "posthog.request._session is not a requests Session"
    return None


def cannot_queue(client: posthog.Client) -> bool:
    """Whether posthog gave ``client`` no queue: its runtime's queue class
    lacks what posthog's lane needs (eventlet's), so posthog drops every
    event it is not sending synchronously."""
    disabled = _DisabledLaneQueue
    if not attempt(
        LANE, lambda: None if disabled is not None else "posthog has no _DisabledLaneQueue"
    ):
        return False
    assert disabled is not None
    return isinstance(getattr(client, "queue", None), disabled)


def hand_over_exit(client: posthog.Client) -> None:
    """Our exit handler, not posthog's, ends an owned client (``PostHogLeg``)."""
    if attempt(EXIT, lambda: _check_exit(client), once=False):
        atexit.unregister(client._atexit)


def _check_exit(client: posthog.Client) -> str | None:
    if (
        _ORIGINALS["atexit"] is None
        or getattr(type(client), "_atexit", None) is not _ORIGINALS["atexit"]
    ):
        return "posthog.Client._atexit is missing or was replaced"
    return None


def probe() -> None:
    """Install, and check the per-client reaches on a client that sends nothing
    (``doctor``), so the register says what a ``Client`` here would use."""
    install()
    client = posthog.Client("phc_probe", send=False)
    attempt(EXIT, lambda: _check_exit(client), once=False)
    attempt(SESSION, _check_session, once=False)
    with _lock:
        attempt(OUTCOMES, _check_request, _watch_requests)
    cannot_queue(client)


# -- posthog's context --------------------------------------------------------

_STACK: Any = getattr(posthog_contexts, "_context_stack", None)
_SCOPE: Any = getattr(posthog_contexts, "ContextScope", None)
_CURRENT: Any = getattr(posthog_contexts, "_get_current_context", None)
_SCOPE_API = (
    "collect_tags",
    "get_distinct_id",
    "get_session_id",
    "get_device_id",
    "capture_exceptions",
    "client",
)


def _check_pinning() -> str | None:
    if (
        not isinstance(_STACK, contextvars.ContextVar)
        or not callable(_CURRENT)
        or not isinstance(_SCOPE, type)
    ):
        return "posthog.contexts has no _context_stack, _get_current_context or ContextScope"
    if (getattr(_CURRENT, "__module__", None), getattr(_CURRENT, "__qualname__", None)) != (
        "posthog.contexts",
        "_get_current_context",
    ):
        return "posthog.contexts._get_current_context is not posthog's own"
    probe = _SCOPE(None, True, False, None)
    absent = [name for name in _SCOPE_API if not hasattr(probe, name)]
    if absent or not isinstance(getattr(probe, "tags", None), dict):
        return "ContextScope lacks %s" % ", ".join(absent or ["a tags dict"])
    return None


def _never() -> None:
    return None


#: The caller's posthog scope, if any (``None`` when pinning is not in use):
#: the only cost a call pays outside posthog's contexts is this lookup.
active_scope: Callable[[], Any] = _STACK.get if attempt(PINNING, _check_pinning) else _never


def pinned(context: contextvars.Context) -> contextvars.Context:
    """``context`` (a fresh copy of the caller's, made while ``active_scope()``)
    with posthog's scope frozen as it is now."""
    scope = context.run(_CURRENT)
    if scope is None:
        return context
    frozen = _SCOPE(None, True, scope.capture_exceptions, scope.client)
    frozen.distinct_id = scope.get_distinct_id()
    frozen.session_id = scope.get_session_id()
    frozen.device_id = scope.get_device_id()
    frozen.tags = scope.collect_tags()
    context.run(_STACK.set, frozen)
    return context


def _no_context_value() -> str | None:
    return None


_has_identity = attempt(
    IDENTITY, lambda: missing(posthog_contexts, "get_context_distinct_id", "get_context_session_id")
)
#: posthog's context identity and session (``None`` outside one).
context_distinct_id: Callable[[], str | None] = (
    posthog_contexts.get_context_distinct_id if _has_identity else _no_context_value
)
context_session_id: Callable[[], str | None] = (
    posthog_contexts.get_context_session_id if _has_identity else _no_context_value
)

#: posthog drops (with only a log line) an event whose JSON is over this.
MAX_EVENT_BYTES: int = (
    posthog_consumer.MAX_MSG_SIZE
    if attempt(EVENT_LIMIT, lambda: missing(posthog_consumer, "MAX_MSG_SIZE"))
    else 900 * 1024
)
