"""posthog-python's per-event work, made cheaper, with identical results.

Each event handed to ``posthog.Client.capture()`` costs three things that
dominate posthog's CPU time (``benchmarks/cost_breakdown.py``):

- ``system_context()``: the server's OS, through ``distro``, looked up again
  for every event (about half of ``capture()`` for a small event). The values
  cannot change while the process runs: computed once.
- ``clean()`` on the whole event: the same ``numbers.Number`` ABC check per
  value as Segment's; given the same exact-type fast path as our Segment
  messages (``_message.clean``).
- ``DatetimeSerializer.encode``, used for the consumer's size check of each
  event and again for the batch body, first copies the whole event in Python
  to replace NaN and infinity with ``null``. Encoding with ``allow_nan=False``
  proves in C that there is none, and gives the same JSON; only an event that
  has one takes posthog's own path.

This module holds the replacements; ``_patches.posthog`` checks what they
replace and puts them in place.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from analytics_posthog._message.clean import Clean
from analytics_posthog._patches.strict_json import encode_finite


def one_argument(clean: Clean) -> Callable[[Any], Any]:
    """posthog's signature, ``clean(item)``."""

    def fast_clean(item: Any) -> Any:
        return clean(item, [])

    return fast_clean


def finite_first(encode: Callable[[Any, Any], str]) -> Callable[[Any, Any], str]:
    """``encode`` that tries C's encoder with NaN refused first."""

    def finite_first_encode(self: json.JSONEncoder, o: Any) -> str:
        if not self.allow_nan:
            return encode(self, o)
        encoded = encode_finite(self, o)
        return encoded if encoded is not None else encode(self, o)

    return finite_first_encode
