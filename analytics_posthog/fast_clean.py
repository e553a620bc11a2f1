"""A fast path for the value cleaning both libraries do on every event.

Segment's and posthog's ``clean`` test each value against a list of types,
``numbers.Number`` among them: an ABC check that costs more than everything
else a small event needs. Most values are plain JSON types, and for those
both functions return the value unchanged (or rebuild the dict or list around
cleaned values), so this checks the exact type first and hands anything else
(subclasses included) to the library's own ``clean``. The result, and the
warning for a value that cannot be cleaned, are the library's.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

PLAIN = frozenset({str, int, float, bool, type(None)})


def with_fast_path(slow: Callable[[Any], Any], log: logging.Logger) -> Callable[[Any], Any]:
    """``slow`` (a library's ``clean``) with plain values, dicts and lists handled here."""

    def clean(item: Any) -> Any:
        kind = type(item)
        if kind in PLAIN:
            return item
        if kind is dict:
            data = {}
            for key, value in item.items():
                if type(value) in PLAIN:
                    data[key] = value
                    continue
                try:
                    data[key] = clean(value)
                except TypeError:
                    log.warning(
                        'Dictionary values must be serializeable to JSON "%s" value %s of type %s is unsupported.',
                        key,
                        value,
                        type(value),
                    )
            return data
        if kind is list:
            return [clean(value) for value in item]
        return slow(item)

    return clean
