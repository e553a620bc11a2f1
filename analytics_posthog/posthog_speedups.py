"""posthog-python's per-event work, made cheaper, with identical results.

Each event handed to ``posthog.Client.capture()`` costs three things that
dominate posthog's CPU time (``benchmarks/cost_breakdown.py``):

- ``system_context()``: the server's OS, through ``distro``, looked up again
  for every event (about half of ``capture()`` for a small event). The values
  cannot change while the process runs: computed once.
- ``clean()`` on the whole event: the same ``numbers.Number`` ABC check per
  value as Segment's; given the same exact-type fast path as our Segment
  messages (``fast_clean``).
- ``DatetimeSerializer.encode``, used for the consumer's size check of each
  event and again for the batch body, first copies the whole event in Python
  to replace NaN and infinity with ``null``. Encoding with ``allow_nan=False``
  proves in C that there is none, and gives the same JSON; only an event that
  has one takes posthog's own path.

Each replacement is installed once per process, so every posthog client in
it (an app's own one too) gets it; each is skipped if a posthog release moves
what it replaces. These are, with the retry jitter and watch in ``retries``, the only
places where we reach inside posthog instead of calling its public API.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any, Callable, Dict

import posthog.client as posthog_client
import posthog.request as posthog_request
import posthog.utils as posthog_utils

from analytics_posthog.fast_clean import Clean, with_fast_path
from analytics_posthog.forks import fork_safe_lock

_ORIGINALS: Dict[str, Any] = {
    "system_context": getattr(posthog_client, "system_context", None),
    "clean": getattr(posthog_client, "clean", None),
    "encode": getattr(posthog_request, "DatetimeSerializer", object).__dict__.get("encode"),
}
_lock = fork_safe_lock()


def install() -> None:
    """Put the faster versions in place (idempotent)."""
    with _lock:
        system_context, clean, encode = (_ORIGINALS[name] for name in ("system_context", "clean", "encode"))
        if system_context is not None and posthog_client.system_context is system_context:
            posthog_client.system_context = functools.lru_cache(maxsize=1)(system_context)
        if clean is not None and posthog_client.clean is clean:
            posthog_client.clean = _one_argument(with_fast_path(clean, getattr(posthog_utils, "log", logging.getLogger("posthog"))))
        if encode is not None and posthog_request.DatetimeSerializer.__dict__["encode"] is encode:
            posthog_request.DatetimeSerializer.encode = _finite_first(encode)  # type: ignore[method-assign,assignment]


def restore() -> None:
    """posthog's own functions again (the benchmarks measure posthog as its users run it).

    This also removes the end user's OS from ``system_context()``
    (``posthog_leg.install_context_os``) until the next ``PostHogLeg`` puts it
    back: for benchmarks only, never while a client of ours is in use.
    """
    with _lock:
        for name, original in _ORIGINALS.items():
            if original is None:
                continue
            if name == "encode":
                posthog_request.DatetimeSerializer.encode = original  # type: ignore[method-assign,assignment]
            else:
                setattr(posthog_client, name, original)


def _one_argument(clean: Clean) -> Callable[[Any], Any]:
    """posthog's signature, ``clean(item)``."""

    def fast_clean(item: Any) -> Any:
        return clean(item, [])

    return fast_clean


def _finite_first(encode: Callable[[Any, Any], str]) -> Callable[[Any, Any], str]:
    def finite_first_encode(self: json.JSONEncoder, o: Any) -> str:
        if not self.allow_nan:
            return encode(self, o)
        self.allow_nan = False
        try:
            return json.JSONEncoder.encode(self, o)
        except ValueError:
            pass
        finally:
            self.allow_nan = True
        return encode(self, o)

    return finite_first_encode
