"""Seeded random call arguments of every shape a caller can pass and Segment's
client accepts: nested dicts and lists, NaN and infinities, ints past 64 bits,
lone surrogates (in values and message ids), bytes, tuples and sets, keys
that are not strings, and the context and property names the mapping gives
a meaning to."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from analytics_posthog.mapping import CONTEXT_PROPERTIES, PROPERTY_ALIASES

#: Every name the mapping reads, so that a row added to its tables is tried too.
MAPPED_NAMES = sorted(
    {path[0] for path, _ in CONTEXT_PROPERTIES}
    | {name for name, _ in PROPERTY_ALIASES}
    | {
        "campaign",
        "groupId",
        "traits",
        "library",
        "$set",
        "$set_once",
        "$unset",
        "$groups",
        "$ip",
        "$current_url",
        "distinct_id",
        "timestamp",
        "uuid",
    }
)
LEAVES: list[Any] = [
    "x",
    "",
    0,
    -1,
    1.5,
    float("nan"),
    float("inf"),
    True,
    False,
    None,
    "http://example.com/a?b=c",
    "\ud800",
    10**30,
    b"bytes",
    ("t", 1),
    frozenset({2}),
]
KEYS: list[Any] = [*MAPPED_NAMES, 1, 2.5, True, None, ""]


def value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 3 and roll < 0.35:
        return {rng.choice(KEYS): value(rng, depth + 1) for _ in range(rng.randrange(4))}
    if depth < 3 and roll < 0.45:
        return [value(rng, depth + 1) for _ in range(rng.randrange(3))]
    return rng.choice(LEAVES)


def mapping(rng: random.Random, most: int) -> dict[Any, Any]:
    return {rng.choice(KEYS): value(rng) for _ in range(rng.randrange(most))}


def calls(rng: random.Random, n: int) -> list[Callable[[Any], Any]]:
    """``n`` calls, each to be applied to a client (or to ``message``)."""
    made: list[Callable[[Any], Any]] = []
    for i in range(n):
        context, fields, user = mapping(rng, 6), mapping(rng, 4), "u%d" % i
        mid = rng.choice([None, None, "m-%d" % i, "\ud800m-%d" % i, i])
        made.append(
            rng.choice(
                [
                    lambda c, u=user, f=fields, x=context, m=mid: c.track(
                        u, "e", properties=f, context=x, message_id=m
                    ),
                    lambda c, u=user, f=fields, x=context, m=mid: c.identify(
                        u, traits=f, context=x, anonymous_id="a1", message_id=m
                    ),
                    lambda c, u=user, f=fields, x=context, m=mid: c.page(
                        u, name="n", properties=f, context=x, message_id=m
                    ),
                    lambda c, u=user, f=fields, x=context, m=mid: c.screen(
                        u, properties=f, context=x, message_id=m
                    ),
                    lambda c, u=user, f=fields, x=context, m=mid: c.group(
                        u, "g1", traits=f, context=x, message_id=m
                    ),
                    lambda c, u=user, x=context, m=mid: c.alias("p1", u, context=x, message_id=m),
                ]
            )
        )
    return made
