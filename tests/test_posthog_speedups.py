"""The faster versions of posthog's per-event functions give exactly posthog's results."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import json
import logging
import math
import uuid

import posthog.client
import posthog.request
import posthog.utils
import pytest

from analytics_posthog._patches import posthog as posthog_internals


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Model:
    """Duck-types a pydantic v2 model, which posthog's clean turns into a dict."""

    def model_dump(self):
        return {"name": "m", "price": decimal.Decimal("1.5")}


class Opaque:
    def __str__(self):
        return "opaque"


class NotEvenAString:
    def __str__(self):
        raise TypeError("no text")


class Text(str):
    pass


WHEN = datetime.datetime(2026, 11, 22, 9, 30, 0, 123000, tzinfo=datetime.timezone.utc)
VALUES = [
    "text",
    7,
    1.5,
    True,
    None,
    {"a": 1, "b": [1, 2, {"c": None}], "d": {"e": "f"}},
    [1, "two", 3.0, [4, [5]]],
    (1, 2),
    {1, 2},
    frozenset({"x"}),
    collections.deque([1, 2]),
    decimal.Decimal("2.50"),
    uuid.UUID("2e1e762e-c318-5c5b-a96e-955e840a3cf2"),
    WHEN,
    WHEN.date(),
    Point(1, 2.5),
    Model(),
    Opaque(),
    Text("subclass"),
    {
        "nested": {
            "decimal": decimal.Decimal("3"),
            "tuple": (1, (2, 3)),
            "when": WHEN,
            "point": Point(0, 0.5),
        }
    },
    {"bad": NotEvenAString(), "good": 1},
    {"deep": [{"x": [decimal.Decimal("1")]}]},
]


@pytest.fixture
def installed():
    posthog_internals.install()
    yield
    posthog_internals.install()


def outcome(fn, value):
    """repr keeps types apart (Decimal vs float, tuple vs list), json-equality would not."""
    try:
        return "ok", repr(fn(value))
    except Exception as error:
        return "raised", type(error).__name__


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_clean_gives_posthogs_result(installed, value, caplog):
    fast = posthog.client.clean
    assert fast is not posthog.utils.clean
    with caplog.at_level(logging.WARNING, logger="posthog"):
        ours = outcome(fast, value)
        our_log = [r.getMessage() for r in caplog.records]
        caplog.clear()
        theirs = outcome(posthog.utils.clean, value)
        their_log = [r.getMessage() for r in caplog.records]
    assert ours == theirs
    assert our_log == their_log


NAN_AND_FRIENDS = [
    {"a": 1.5, "b": "x", "when": WHEN, "id": uuid.UUID(int=5)},
    {"a": math.nan},
    {"list": [1.0, math.inf, {"deep": -math.inf}]},
    {"tuple": (1, math.nan)},
    [math.nan, 2],
    math.inf,
    "plain",
    {"batch": [{"properties": {"price": 9.99, "qty": 2}}] * 3},
]


@pytest.mark.parametrize("value", NAN_AND_FRIENDS, ids=repr)
@pytest.mark.parametrize("allow_nan", [True, False])
def test_serializer_gives_posthogs_json(value, allow_nan):
    """Same JSON, or the same error (releases that cannot encode a UUID raise TypeError)."""

    def dumps(v):
        return json.dumps(v, cls=posthog.request.DatetimeSerializer, allow_nan=allow_nan)

    posthog_internals.restore_speedups()
    try:
        theirs = outcome(dumps, value)
    finally:
        posthog_internals.install()
    ours = outcome(dumps, value)
    assert ours == theirs
    assert "NaN" not in ours[1] and "Infinity" not in ours[1]


def test_install_and_restore_swap_the_functions_back_and_forth():
    posthog_internals.restore_speedups()
    assert posthog.client.clean is posthog.utils.clean
    assert posthog.client.system_context is posthog.utils.system_context
    plain_encode = posthog.request.DatetimeSerializer.encode
    posthog_internals.install()
    posthog_internals.install()
    assert posthog.client.clean is not posthog.utils.clean
    assert hasattr(posthog.client.system_context.__wrapped__, "cache_info"), (
        "the OS looked up once, under the end user's OS answer"
    )
    assert posthog.request.DatetimeSerializer.encode is not plain_encode
