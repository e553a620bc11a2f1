"""Call by call, our Client returns what segment-analytics-python returns and
fails the way it fails. Both run with send=False, so only the message
building is compared (delivery is covered elsewhere)."""

from __future__ import annotations

import enum
import inspect
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import segment.analytics as segment_module
from freezegun import freeze_time
from segment.analytics import Client as SegmentClient

import analytics_posthog
from analytics_posthog import Client

T = datetime(2024, 5, 17, 9, 30, 15, 123456, tzinfo=timezone.utc)


class Plan(enum.Enum):
    PRO = "pro"


GOOD_CALLS = [
    (
        "track",
        (),
        dict(
            user_id="u1",
            event="Signed Up",
            properties={"plan": "pro"},
            timestamp=T,
            message_id="m-1",
        ),
    ),
    ("track", ("u1", "Clicked", {"n": 1}), {}),
    ("track", (), dict(anonymous_id="anon-1", event="Viewed")),
    ("track", (), dict(user_id=42, event="Numeric id", anonymous_id=7)),
    ("track", (), dict(user_id=3.5, event="Float id")),
    (
        "track",
        (),
        dict(
            user_id="u1",
            event="Rich",
            properties={
                "price": Decimal("9.99"),
                "tags": {"a"},
                "tuple": (1, 2),
                "plan": Plan.PRO,
                "day": date(2024, 1, 2),
                "at": T,
                "nested": {"list": [Decimal("1.5"), None, True]},
                "bytes": b"raw",
            },
            context={"ip": "203.0.113.9", "page": {"url": "https://example.com/x"}},
            integrations={"All": False, "Mixpanel": True},
        ),
    ),
    (
        "track",
        (),
        dict(user_id="u1", event="Unserialisable value", properties={"ok": 1, "bad": object()}),
    ),
    (
        "track",
        (),
        dict(
            user_id="u1",
            event="Local timestamp",
            timestamp=T.astimezone(timezone(timedelta(hours=2))),
        ),
    ),
    (
        "track",
        (),
        dict(user_id="u1", event="Old naive timestamp", timestamp=datetime(2020, 1, 1, 12, 0, 0)),
    ),
    ("track", (), dict(user_id="u1", event="Numeric message id", message_id=12345)),
    (
        "track",
        (),
        dict(user_id="u1", event="Own library", context={"library": object(), "ip": "203.0.113.9"}),
    ),
    ("identify", ("u1", {"email": "a@example.com"}), {}),
    ("identify", (), dict(anonymous_id="anon-1", traits={"name": "Ann"})),
    (
        "identify",
        (),
        dict(user_id="u1", anonymous_id="anon-1", traits={}, context={"traits": {"x": 1}}),
    ),
    ("group", ("u1", "acme", {"name": "Acme"}), {}),
    ("group", (), dict(anonymous_id="anon-1", group_id=99)),
    ("alias", ("anon-1", "u1"), {}),
    ("alias", (), dict(previous_id=1, user_id=2, message_id="a-1")),
    ("page", ("u1", "Docs", "Install", {"url": "https://example.com/docs"}), {}),
    ("page", (), dict(anonymous_id="anon-1")),
    ("page", (), dict(user_id="u1", name="", category="")),
    ("screen", ("u1", "Onboarding", "Welcome", {"step": 1}), {}),
    ("screen", (), dict(anonymous_id="anon-1", name="Home")),
]

BAD_CALLS = [
    ("track", dict(event="No user")),
    ("track", dict(user_id="", event="Empty user")),
    ("track", dict(user_id=["u1"], event="List user")),
    ("track", dict(user_id="u1")),
    ("track", dict(user_id="u1", event=7)),
    ("track", dict(user_id="u1", event="e", properties=["not", "a", "dict"])),
    ("track", dict(user_id="u1", event="e", context="not a dict")),
    ("track", dict(user_id="u1", event="e", integrations=["PostHog"])),
    ("track", dict(user_id="u1", event="e", timestamp="2024-01-01T00:00:00Z")),
    ("track", dict(user_id="u1", event="e", timestamp=1700000000)),
    ("track", dict(user_id="u1", event="e", properties={"blob": "x" * 40000})),
    ("identify", dict(traits={"a": 1})),
    ("identify", dict(user_id="u1", traits="not a dict")),
    ("group", dict(user_id="u1")),
    ("group", dict(user_id="u1", group_id={"id": 1})),
    ("group", dict(user_id="u1", group_id="g", traits=[1])),
    ("alias", dict(user_id="u1")),
    ("alias", dict(previous_id="p")),
    ("page", dict(user_id="u1", name=5)),
    ("page", dict(user_id="u1", category=5)),
    ("page", dict(user_id="u1", properties="x")),
    ("screen", dict(user_id="u1", name=["Home"])),
    ("screen", dict()),
]


@pytest.fixture
def ours():
    return Client(send=False)


@pytest.fixture
def theirs():
    return SegmentClient("write-key", send=False)


def without_library(msg):
    msg = dict(msg)
    msg["context"] = {k: v for k, v in msg["context"].items() if k != "library"}
    return msg


@freeze_time("2024-06-01 12:00:00.456789")
@pytest.mark.parametrize(
    "method,args,kwargs", GOOD_CALLS, ids=[f"{c[0]}-{i}" for i, c in enumerate(GOOD_CALLS)]
)
def test_return_value_matches_segment(ours, theirs, method, args, kwargs):
    ok_ours, msg_ours = getattr(ours, method)(*args, **kwargs)
    ok_theirs, msg_theirs = getattr(theirs, method)(*args, **kwargs)
    assert ok_ours is ok_theirs is True
    if "message_id" not in kwargs:
        assert isinstance(msg_ours["messageId"], str) and len(msg_ours["messageId"]) == 36
        msg_ours["messageId"] = msg_theirs["messageId"]
    assert without_library(msg_ours) == without_library(msg_theirs)
    assert list(msg_ours) == list(msg_theirs)
    assert list(msg_ours["context"]) == list(msg_theirs["context"])
    assert msg_ours["context"]["library"] == {
        "name": "analytics-posthog",
        "version": analytics_posthog.__version__,
    }


@pytest.mark.parametrize(
    "method,kwargs", BAD_CALLS, ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD_CALLS)]
)
def test_bad_input_fails_like_segment(ours, theirs, method, kwargs):
    with pytest.raises(Exception) as theirs_error:
        getattr(theirs, method)(**kwargs)
    with pytest.raises(Exception) as ours_error:
        getattr(ours, method)(**kwargs)
    assert type(ours_error.value) is type(theirs_error.value)
    assert type(ours_error.value) in (AssertionError, RuntimeError)
    if isinstance(theirs_error.value, AssertionError):
        assert str(ours_error.value) == str(theirs_error.value)


def test_caller_context_is_not_modified(ours):
    context = {"ip": "203.0.113.9"}
    ours.track("u1", "e", context=context)
    assert context == {"ip": "203.0.113.9"}


#: Parameters we add after Segment's: a deadline for a shutdown hook.
ADDED_PARAMETERS = {"flush": [("timeout", None)], "shutdown": [("timeout", None)]}


def test_signatures_match_segment():
    for name in (
        "track",
        "identify",
        "group",
        "alias",
        "page",
        "screen",
        "flush",
        "join",
        "shutdown",
    ):
        ours = [
            (p.name, p.default)
            for p in inspect.signature(getattr(Client, name)).parameters.values()
        ]
        theirs = [
            (p.name, p.default)
            for p in inspect.signature(getattr(SegmentClient, name)).parameters.values()
        ]
        # Segment's parameters first, with its defaults; ours only after them.
        assert ours[: len(theirs)] == theirs, name
        assert ours[len(theirs) :] == ADDED_PARAMETERS.get(name, []), name


def test_constructor_keeps_segment_parameters_first():
    ours = list(inspect.signature(Client.__init__).parameters.values())
    theirs = list(inspect.signature(SegmentClient.__init__).parameters.values())
    assert [(p.name, p.default) for p in ours[: len(theirs)]] == [
        (p.name, p.default) for p in theirs
    ]
    assert [p.name for p in ours[len(theirs) :]] == [
        "posthog_api_key",
        "posthog_host",
        "group_type",
        "posthog_client",
        "exit_timeout",
        "spool_dir",
        "spool_max_bytes",
    ]


def test_constructor_validation_matches_segment():
    for kwargs in (dict(max_total_backoff_duration=-1), dict(max_rate_limit_duration=None)):
        with pytest.raises(ValueError) as theirs_error:
            SegmentClient("wk", **kwargs)
        with pytest.raises(ValueError) as ours_error:
            Client("wk", send=False, **kwargs)
        assert str(ours_error.value) == str(theirs_error.value)
    with pytest.raises(AssertionError) as theirs_error:
        SegmentClient(123)
    with pytest.raises(AssertionError) as ours_error:
        Client(123)
    assert str(ours_error.value) == str(theirs_error.value)


def test_module_api_matches_segment():
    settings = [
        "write_key", "host", "on_error", "debug", "log_handler", "send", "sync_mode", "max_queue_size",
        "gzip", "timeout", "max_retries", "oauth_client_id", "oauth_client_key", "oauth_key_id",
        "oauth_auth_server", "oauth_scope",
    ]  # fmt: skip
    for name in settings:
        assert getattr(analytics_posthog, name) == getattr(segment_module, name), name
    for name in (
        "track",
        "identify",
        "group",
        "alias",
        "page",
        "screen",
        "flush",
        "join",
        "shutdown",
    ):
        assert callable(getattr(analytics_posthog, name))
    assert analytics_posthog.default_client is None or isinstance(
        analytics_posthog.default_client, Client
    )
    assert isinstance(analytics_posthog.__version__, str)
