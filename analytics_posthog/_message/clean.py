"""A fast path for the value cleaning both libraries do on every event.

Segment's and posthog's ``clean`` test each value against a list of types,
``numbers.Number`` among them: an ABC check that costs more than everything
else a small event needs. Most values are plain JSON types, and for those
both functions return the value unchanged (or rebuild the dict or list around
cleaned values), so this checks the exact type first and hands anything else
(subclasses included) to the library's own ``clean``. The result, and the
warning for a value that cannot be cleaned, are the library's.

A dict or list whose values are all plain is copied in C, its types checked
by ``issuperset(map(type, ...))`` without a Python loop: most dicts in an
event (each product of an order, ``context.page``) are of that kind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

PLAIN = frozenset({str, int, float, bool, type(None)})
_all_plain = PLAIN.issuperset
_all_str = frozenset({str}).issuperset

#: ``clean(item, unusual)``: ``unusual`` collects each key that is not a
#: ``str`` and each value handed to the library's ``clean``; while it stays
#: empty, the result holds only dicts, lists and plain values under ``str``
#: keys.
Clean = Callable[[Any, list[Any]], Any]


def with_fast_path(slow: Callable[[Any], Any], log: logging.Logger) -> Clean:
    """``slow`` (a library's ``clean``) with plain values, dicts and lists handled here."""

    def clean(item: Any, unusual: list[Any]) -> Any:
        kind = type(item)
        if kind in PLAIN:
            return item
        if kind is dict:
            if _all_plain(map(type, item.values())):
                if not _all_str(map(type, item)):
                    unusual.append(item)
                return item.copy()
            data = {}
            for key, value in item.items():
                if type(key) is not str:
                    unusual.append(key)
                if type(value) in PLAIN:
                    data[key] = value
                    continue
                try:
                    data[key] = clean(value, unusual)
                except TypeError:
                    log.warning(
                        'Dictionary values must be serializeable to JSON "%s" value %s of type %s is unsupported.',
                        key,
                        value,
                        type(value),
                    )
            return data
        if kind is list:
            if _all_plain(map(type, item)):
                return item.copy()
            return [clean(value, unusual) for value in item]
        unusual.append(item)
        return slow(item)

    return clean
