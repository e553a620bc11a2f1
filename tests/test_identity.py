"""The browser's visitor from posthog-js's and analytics.js's cookies; hostile values are ignored."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from analytics_posthog._context import cookies as identity
from analytics_posthog._context.cookies import BrowserVisitor, from_cookies

KEY = "phc_abc123"
NOW = 1_750_000_000_000  # ms


def posthog_cookie(value, key=KEY):
    """As posthog-js writes it: URL-encoded JSON."""
    return "ph_%s_posthog=%s" % (key, quote(json.dumps(value), safe=""))


def session(last_activity=NOW - 60_000, started=NOW - 600_000, session_id="0190-sess"):
    return [last_activity, session_id, started]


def test_posthog_js_cookie_gives_distinct_id_and_live_session():
    cookies = "theme=dark; " + posthog_cookie(
        {"distinct_id": "0190-anon", "$sesid": session(), "$device_id": "d"}
    )
    assert from_cookies(cookies, KEY, NOW) == BrowserVisitor(
        anonymous_id="0190-anon", session_id="0190-sess"
    )


@pytest.mark.parametrize(
    "sesid",
    [
        session(last_activity=NOW - 31 * 60_000),  # idle past posthog-js's 30 minutes
        session(started=NOW - 25 * 3600_000),  # older than 24 hours
        ["x", "0190-sess"],
        [NOW],
        "0190-sess",
        [True, "0190-sess"],
    ],
)
def test_a_session_posthog_js_would_not_use_is_left_out(sesid):
    cookies = posthog_cookie({"distinct_id": "0190-anon", "$sesid": sesid})
    assert from_cookies(cookies, KEY, NOW) == BrowserVisitor(anonymous_id="0190-anon")


def test_another_projects_cookie_is_not_ours_and_an_unknown_key_takes_the_only_one():
    other = posthog_cookie({"distinct_id": "other-project"}, key="phc_other")
    assert from_cookies(other, KEY, NOW) is None
    assert from_cookies(other, None, NOW) == BrowserVisitor(anonymous_id="other-project")
    both = other + "; " + posthog_cookie({"distinct_id": "ours"})
    assert from_cookies(both, None, NOW) is None  # ambiguous
    assert from_cookies(both, KEY, NOW).anonymous_id == "ours"


def test_cookie_name_spells_out_base64_characters_as_posthog_js_does():
    assert identity.posthog_cookie_name("ab+c/d=") == "ph_abPLcSLdEQ_posthog"


@pytest.mark.parametrize(
    "cookies, expected",
    [
        (
            "ajs_user_id=%22u-42%22; ajs_anonymous_id=%22a-7%22",
            BrowserVisitor(user_id="u-42", anonymous_id="a-7"),
        ),
        ('ajs_anonymous_id="a-7"', BrowserVisitor(anonymous_id="a-7")),  # JSON, not URL-encoded
        ("ajs_anonymous_id=a-7", BrowserVisitor(anonymous_id="a-7")),  # plain
        (
            "ajs_user_id=null; ajs_anonymous_id=%22a-7%22",
            BrowserVisitor(user_id="null", anonymous_id="a-7"),
        ),
    ],
)
def test_analytics_js_cookies(cookies, expected):
    assert from_cookies(cookies, KEY, NOW) == expected


def test_posthog_js_cookie_wins_over_analytics_js_cookies():
    cookies = "ajs_user_id=%22u-42%22; " + posthog_cookie({"distinct_id": "ph-anon"})
    assert from_cookies(cookies, KEY, NOW) == BrowserVisitor(anonymous_id="ph-anon")


@pytest.mark.parametrize(
    "cookies",
    [
        "",
        "ph_%s_posthog=%%7Bnot json" % KEY,
        posthog_cookie(["distinct_id", "x"]),
        posthog_cookie({"distinct_id": 42}),
        posthog_cookie({"distinct_id": {"nested": "x"}}),
        posthog_cookie({"distinct_id": "\x00\x01\x7f"}),
        posthog_cookie({"distinct_id": "x" * 5000}),  # over the value cap
        "ph_%s_posthog=%s" % (KEY, "[" * 3000 + "]" * 3000),  # deep nesting
        "ajs_anonymous_id=%22unterminated",
        "ajs_anonymous_id=%22" + "a" * 5000 + "%22",
        "ajs_user_id=%5B1%2C2%5D",  # a JSON list
        ";;;=; =x; ajs_user_id",
        "\x00" * 10000,
    ],
)
def test_malformed_or_hostile_values_are_ignored(cookies):
    assert from_cookies(cookies, KEY, NOW) is None


def test_ids_are_cleaned_and_capped():
    visitor = from_cookies(posthog_cookie({"distinct_id": "anon\x07-" + "y" * 500}), KEY, NOW)
    assert visitor.anonymous_id == "anon-" + "y" * 195


def test_only_the_start_of_a_huge_header_is_read():
    padding = "; ".join("c%d=%s" % (n, "v" * 50) for n in range(400))
    assert from_cookies(padding + "; ajs_anonymous_id=late", KEY, NOW) is None
    assert from_cookies("ajs_anonymous_id=early; " + padding, KEY, NOW) == BrowserVisitor(
        anonymous_id="early"
    )
