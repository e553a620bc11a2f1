"""Ids PostHog takes for placeholders: the call is still sent as Segment
would send it, and the log names each such id once, with the call."""

from __future__ import annotations

import logging

import pytest

from analytics_posthog import Client
from analytics_posthog.mapping import is_placeholder_id, placeholder_ids

PLACEHOLDERS = [
    "anonymous",
    "Guest",
    "DISTINCT_ID",
    "distinctid",
    "id",
    "not_authenticated",
    "email",
    "undefined",
    "True",
    "false",
    "[object Object]",
    "NaN",
    "None",
    "none",
    "null",
    "0",
    "",
    "   ",
    '"undefined"',
    "'null'",
]
REAL = ["user-1", "nan", "NULL", "00", "[object object]", "0x", "anonymous-42", "identity"]


@pytest.mark.parametrize("value", PLACEHOLDERS)
def test_placeholders_as_posthog_lists_them(value):
    assert is_placeholder_id(value)


@pytest.mark.parametrize("value", REAL)
def test_ids_that_only_look_like_placeholders_are_real(value):
    assert not is_placeholder_id(value)


def test_which_ids_of_each_call_are_checked():
    assert placeholder_ids({"type": "identify", "userId": "None", "anonymousId": "a1"}) == [
        ("userId", "None")
    ]
    assert placeholder_ids({"type": "alias", "userId": "u1", "previousId": "undefined"}) == [
        ("previousId", "undefined")
    ]
    assert placeholder_ids({"type": "track", "userId": "null", "anonymousId": "null"}) == [
        ("userId", "null")
    ]
    assert placeholder_ids({"type": "track", "userId": None, "anonymousId": "a1"}) == []


def test_each_placeholder_is_sent_counted_and_named_once(capture_server, caplog):
    caplog.set_level(logging.WARNING, logger="analytics_posthog")
    client = Client(posthog_api_key="phc_test", posthog_host=capture_server.url)
    for _ in range(3):
        assert client.identify(str(None), {"plan": "pro"}, anonymous_id="anon-1")[0]
        assert client.alias("undefined", "user-1")[0]  # previous_id, user_id
        assert client.track("null", "Clicked")[0]
    client.track("user-1", "Fine")
    client.flush()
    stats = client.stats()["posthog"]
    client.shutdown()
    assert capture_server.event_count == 10
    assert stats["placeholder_ids"] == 9
    warnings = [r.getMessage() for r in caplog.records if "placeholder" in r.getMessage()]
    assert warnings == [
        "analytics_posthog: identify call with userId 'None': PostHog takes it for a "
        "placeholder and will not merge persons on it; sent as Segment would",
        "analytics_posthog: alias call with previousId 'undefined': PostHog takes it for a "
        "placeholder and will not merge persons on it; sent as Segment would",
        "analytics_posthog: track call with userId 'null': PostHog takes it for a "
        "placeholder, so every event with it lands on one person",
    ]
