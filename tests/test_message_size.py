"""The 32 KB check: Segment's exact JSON size unless the marshal bound proves
the message fits, so the same calls raise ``RuntimeError`` as in Segment."""

from __future__ import annotations

import json
import marshal
import random
from datetime import datetime

import pytest
from segment.analytics import Client as SegmentClient
from segment.analytics.consumer import MAX_MSG_SIZE
from segment.analytics.request import DatetimeSerializer

from analytics_posthog import Client
from analytics_posthog._message import build as message

#: Values whose JSON is widest for their marshal size: each should need the
#: most of the bound's factor.
WIDE_VALUES = {
    "false": False,
    "true": True,
    "null": None,
    "empty string": "",
    "control characters": "\x01\x1f\x00",
    "quote and backslash": '"\\',
    "accented": "é",
    "cjk": "漢字",
    "astral": "😀",
    "lone surrogate": "\ud800",
    "big int": 10**200,
    "negative int": -(2**31),
    "float": -1.2345678901234567e-308,
    "nan and inf": [float("nan"), float("inf"), float("-inf")],
    "empty list": [],
    "empty dict": {},
    "nested empties": [[[[]]], {"": {}}],
    "short keys": {"a": 0, "b": False, "c": None},
}


def json_size(value):
    return len(json.dumps(value, cls=DatetimeSerializer).encode())


@pytest.mark.parametrize("kind", WIDE_VALUES)
def test_json_is_never_wider_than_the_bound(kind):
    value = WIDE_VALUES[kind]
    for shape in (
        value,
        [value] * 500,
        {"k%d" % i: value for i in range(500)},
        {"p": [{"x": value}] * 50},
    ):
        assert json_size(shape) <= message.JSON_PER_MARSHAL_BYTE * len(marshal.dumps(shape, 2))


def test_json_is_never_wider_than_the_bound_for_random_trees():
    rng = random.Random(20261122)
    leaves = list(WIDE_VALUES.values()) + ["x" * 40, 7, 3.25, "Ünïcödé text", "\n\t"]

    def tree(depth):
        pick = rng.random()
        if depth == 0 or pick < 0.4:
            return rng.choice(leaves)
        if pick < 0.7:
            return [tree(depth - 1) for _ in range(rng.randrange(6))]
        return {
            rng.choice(["a", "key", "é", "", "😀", "\x02"]) + str(i): tree(depth - 1)
            for i in range(rng.randrange(6))
        }

    for _ in range(2000):
        value = tree(5)
        assert json_size(value) <= message.JSON_PER_MARSHAL_BYTE * len(marshal.dumps(value, 2))


def exact_outcome(monkeypatch, **call):
    """What Segment's own check (always serialising) does with our message."""
    with monkeypatch.context() as patched:
        patched.setattr(message, "certainly_fits", lambda msg: False)
        return outcome(**call)


def outcome(**call):
    try:
        Client(send=False).track(**call)
    except Exception as error:
        return type(error)
    return "ok"


@pytest.mark.parametrize(
    "kind", ["false", "null", "control characters", "astral", "accented", "float", "short keys"]
)
def test_calls_around_the_limit_raise_exactly_when_segment_would(kind, monkeypatch):
    value = WIDE_VALUES[kind]
    per_item = json_size([value, value]) - json_size([value])
    base = json_size(Client(send=False).track(user_id="u1", event="e", properties={"list": []})[1])
    limit_items = (MAX_MSG_SIZE - base) // per_item
    seen = set()
    for items in range(limit_items - 40, limit_items + 40, 3):
        call = dict(user_id="u1", event="e", properties={"list": [value] * items})
        expected = exact_outcome(monkeypatch, **call)
        assert outcome(**call) == expected
        seen.add(expected)
    assert seen == {"ok", RuntimeError}


def test_messages_the_bound_cannot_judge_get_the_exact_check(monkeypatch):
    """A message with a datetime, or a value Segment's clean hands back as is,
    is not plain: it is serialised, as Segment does."""
    checked = []
    original = message._encode
    monkeypatch.setattr(message, "_encode", lambda msg: checked.append(msg) or original(msg))
    Client(send=False).track("u1", "e", {"at": datetime(2024, 1, 1)})
    assert len(checked) == 1
    Client(send=False).track("u1", "e", {"plain": [1, "a", None]})
    assert len(checked) == 1


@pytest.mark.parametrize(
    "properties",
    [
        {(1, 2): "tuple key"},
        {b"k": "bytes key"},
        {"n": complex(1, 2)},
        {"nested": {frozenset(): 1}},
    ],
    ids=["tuple key", "bytes key", "complex value", "nested frozenset key"],
)
def test_unserialisable_messages_fail_like_segment(properties):
    with pytest.raises(Exception) as theirs:
        SegmentClient("write-key", send=False).track("u1", "e", properties)
    with pytest.raises(Exception) as ours:
        Client(send=False).track("u1", "e", properties)
    assert type(ours.value) is type(theirs.value) is TypeError
    assert str(ours.value) == str(theirs.value)
