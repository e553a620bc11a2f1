"""posthog's context as it was when a call was made, for the delivery that comes later.

posthog's ``capture()`` reads its context (tags, distinct id, session) when
it is called. Ours is called later, on the dispatcher's thread, in a copy of
the caller's contextvars, and that copy still points at the caller's live
scope: a ``posthog.tag()`` made after the call, in the same scope, would land
on the event too. ``pinned`` puts a frozen copy of the scope into the copied
contextvars, so the event gets what was in force at the call, as it would
from posthog's own ``capture()``.

This reaches into posthog's contexts module (its ``ContextVar`` and scope
class): checked once at import, and when they are not what we expect the copy
is left as it is (posthog then reads the live scope at delivery).
"""

from __future__ import annotations

import contextvars
from typing import Any, Optional

from posthog import contexts

_STACK: Optional[contextvars.ContextVar] = getattr(contexts, "_context_stack", None)
_SCOPE: Any = getattr(contexts, "ContextScope", None)
_CURRENT: Any = getattr(contexts, "_get_current_context", None)
_SCOPE_API = ("collect_tags", "get_distinct_id", "get_session_id", "get_device_id", "capture_exceptions", "client")


def _supported() -> bool:
    if not isinstance(_STACK, contextvars.ContextVar) or not callable(_CURRENT) or not isinstance(_SCOPE, type):
        return False
    try:
        probe = _SCOPE(None, True, False, None)
    except Exception:
        return False
    return all(hasattr(probe, name) for name in _SCOPE_API) and isinstance(getattr(probe, "tags", None), dict)


SUPPORTED = _supported()


def _never() -> None:
    return None


#: The caller's posthog scope, if any (``None`` when unsupported): the only
#: cost a call pays outside posthog's contexts is this lookup.
active = _STACK.get if SUPPORTED else _never  # type: ignore[union-attr]


def pinned(context: contextvars.Context) -> contextvars.Context:
    """``context`` (a fresh copy of the caller's, made while ``active()``) with
    posthog's scope frozen as it is now."""
    scope = context.run(_CURRENT)
    if scope is None:
        return context
    frozen = _SCOPE(None, True, scope.capture_exceptions, scope.client)
    frozen.distinct_id = scope.get_distinct_id()
    frozen.session_id = scope.get_session_id()
    frozen.device_id = scope.get_device_id()
    frozen.tags = scope.collect_tags()
    context.run(_STACK.set, frozen)  # type: ignore[union-attr]
    return context
