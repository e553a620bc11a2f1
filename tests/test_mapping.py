"""Every row of the mapping contract (docs/mapping.md), on the pure mapping."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timezone

import pytest
from shapes import calls

from analytics_posthog._message import build as message
from analytics_posthog.mapping import (
    UUID_NAMESPACE,
    event_uuid,
    posthog_enabled,
    segment_integrations,
    to_posthog,
)

T = datetime(2024, 5, 17, 9, 30, 15, 123000, tzinfo=timezone.utc)


def test_uuid_test_vector():
    assert (
        event_uuid("ajs-f8ca1e4de5024d9430b3928bd8ac6b96") == "2e1e762e-c318-5c5b-a96e-955e840a3cf2"
    )


def test_uuid_is_uuid5_in_the_destinations_namespace():
    rng = random.Random(5)
    alphabet = "abcdef0123456789-_ éü😀\x00"
    for _ in range(5000):
        message_id = "".join(rng.choice(alphabet) for _ in range(rng.randrange(60)))
        assert event_uuid(message_id) == str(uuid.uuid5(UUID_NAMESPACE, message_id))
    # No UTF-8 form: as a browser's TextEncoder writes it, rather than no event.
    assert event_uuid("ajs-\ud800") == str(uuid.uuid5(UUID_NAMESPACE, "ajs-\ufffd"))


def test_track():
    msg = message.track(
        "u1", "Order Completed", {"total": 30}, timestamp=T, anonymous_id="a1", message_id="m1"
    )
    event = to_posthog(msg)
    assert event.event == "Order Completed"
    assert event.distinct_id == "u1"
    assert event.properties["total"] == 30
    assert event.uuid == event_uuid("m1")
    assert event.timestamp == T.replace(microsecond=123000)
    assert event.disable_geoip is True


def test_track_anonymous_uses_anonymous_id():
    event = to_posthog(message.track(anonymous_id="a1", event="Viewed"))
    assert event.distinct_id == "a1"


def test_identify_with_user_id():
    event = to_posthog(message.identify("u1", {"email": "a@x.io"}, anonymous_id="a1"))
    assert (event.event, event.distinct_id) == ("$identify", "u1")
    assert event.properties["$set"] == {"email": "a@x.io"}
    assert event.properties["$anon_distinct_id"] == "a1"


def test_identify_without_anonymous_id_has_no_anon_distinct_id():
    event = to_posthog(message.identify("u1", {"plan": "pro"}))
    assert "$anon_distinct_id" not in event.properties


def test_identify_anonymous_only_is_set():
    event = to_posthog(message.identify(anonymous_id="a1", traits={"name": "Ann"}))
    assert (event.event, event.distinct_id) == ("$set", "a1")
    assert event.properties["$set"] == {"name": "Ann"}
    assert "$anon_distinct_id" not in event.properties


def test_page():
    msg = message.page(
        "u1", "Docs", "Install", {"url": "https://example.com/docs?x=1", "section": "a"}
    )
    event = to_posthog(msg)
    assert (event.event, event.distinct_id) == ("$pageview", "u1")
    assert event.properties["name"] == "Install"
    assert event.properties["category"] == "Docs"
    assert event.properties["section"] == "a"
    assert event.properties["$current_url"] == "https://example.com/docs?x=1"
    assert event.properties["$host"] == "example.com"


def test_page_without_name_or_category():
    event = to_posthog(message.page(anonymous_id="a1"))
    assert event.distinct_id == "a1"
    assert "name" not in event.properties and "category" not in event.properties


def test_screen():
    event = to_posthog(message.screen("u1", "Onboarding", "Welcome", {"step": 2}))
    assert (event.event, event.distinct_id) == ("$screen", "u1")
    assert event.properties["$screen_name"] == "Welcome"
    assert event.properties["category"] == "Onboarding"
    assert event.properties["step"] == 2


def test_group_default_and_custom_group_type():
    msg = message.group("u1", "acme", {"name": "Acme", "seats": 12})
    event = to_posthog(msg)
    assert (event.event, event.distinct_id) == ("$groupidentify", "u1")
    assert event.properties["$group_type"] == "segment_group"
    assert event.properties["$group_key"] == "acme"
    assert event.properties["$group_set"] == {"name": "Acme", "seats": 12}
    assert to_posthog(msg, group_type="company").properties["$group_type"] == "company"


def test_group_anonymous_and_numeric_group_id():
    event = to_posthog(message.group(anonymous_id="a1", group_id=99))
    assert event.distinct_id == "a1"
    assert event.properties["$group_key"] == 99


def test_alias_matches_segment_destination():
    event = to_posthog(message.alias("anon-1", "u1"))
    assert (event.event, event.distinct_id) == ("$create_alias", "u1")
    assert event.properties["alias"] == "anon-1"


def test_timestamp_is_the_same_instant_in_utc():
    from datetime import timedelta

    local = datetime(2024, 5, 17, 11, 30, 0, tzinfo=timezone(timedelta(hours=2)))
    event = to_posthog(message.track("u1", "e", timestamp=local))
    assert event.timestamp == datetime(2024, 5, 17, 9, 30, 0, tzinfo=timezone.utc)
    assert event.timestamp.utcoffset() == timedelta(0)


def test_properties_url_becomes_current_url_on_track():
    event = to_posthog(message.track("u1", "e", {"url": "https://shop.example.com:8443/cart"}))
    assert event.properties["$current_url"] == "https://shop.example.com:8443/cart"
    assert event.properties["$host"] == "shop.example.com:8443"
    assert event.properties["url"] == "https://shop.example.com:8443/cart"


def test_person_and_group_properties_pass_through():
    props = {
        "$set": {"plan": "pro"},
        "$set_once": {"first": "2024"},
        "$groups": {"company": "acme"},
    }
    event = to_posthog(message.track("u1", "e", props))
    assert event.properties["$set"] == {"plan": "pro"}
    assert event.properties["$set_once"] == {"first": "2024"}
    assert event.properties["$groups"] == {"company": "acme"}


FULL_CONTEXT = {
    "ip": "203.0.113.9",
    "userAgent": "Mozilla/5.0 (iPhone)",
    "page": {
        "url": "https://user:pw@example.com/p?q=1",
        "path": "/p",
        "referrer": "https://google.com/",
        "title": "P",
    },
    "os": {"name": "iOS", "version": "17.4"},
    "device": {
        "id": "d1",
        "type": "ios",
        "manufacturer": "Apple",
        "model": "iPhone15,2",
        "name": "Ann's",
    },
    "screen": {"width": 390, "height": 844, "density": 3},
    "app": {"name": "Shop", "version": "4.2", "build": "420", "namespace": "com.example.shop"},
    "locale": "en-GB",
    "timezone": "Europe/London",
    "network": {"carrier": "EE"},
    "campaign": {
        "source": "news",
        "medium": "email",
        "name": "spring",
        "term": "shoes",
        "content": "hero",
    },
    "groupId": "acme",
    "traits": {"email": "a@x.io"},
    "sessionId": "s-1",
}

EXPECTED_FROM_CONTEXT = {
    "$ip": "203.0.113.9",
    "$raw_user_agent": "Mozilla/5.0 (iPhone)",
    "$current_url": "https://user:pw@example.com/p?q=1",
    "$pathname": "/p",
    "$referrer": "https://google.com/",
    "$title": "P",
    "$host": "example.com",
    "$os": "iOS",
    "$os_version": "17.4",
    "$device_id": "d1",
    "$device_type": "ios",
    "$device_manufacturer": "Apple",
    "$device_model": "iPhone15,2",
    "$device_name": "Ann's",
    "$screen_width": 390,
    "$screen_height": 844,
    "$screen_density": 3,
    "$app_name": "Shop",
    "$app_version": "4.2",
    "$app_build": "420",
    "$app_namespace": "com.example.shop",
    "$locale": "en-GB",
    "$timezone": "Europe/London",
    "$network_carrier": "EE",
    "utm_source": "news",
    "utm_medium": "email",
    "utm_campaign": "spring",
    "utm_term": "shoes",
    "utm_content": "hero",
    "$groups": {"segment_group": "acme"},
    "$set": {"email": "a@x.io"},
    "$session_id": "s-1",
}


@pytest.mark.parametrize("name,value", sorted(EXPECTED_FROM_CONTEXT.items()))
def test_context_table_row(name, value):
    event = to_posthog(message.track("u1", "e", context=FULL_CONTEXT))
    assert event.properties[name] == value


def test_context_ip_enables_geoip_only_for_that_event():
    assert (
        to_posthog(message.track("u1", "e", context={"ip": "203.0.113.9"})).disable_geoip is False
    )
    assert to_posthog(message.track("u1", "e")).disable_geoip is True


def test_context_kept_whole_except_campaign():
    event = to_posthog(message.track("u1", "e", context=FULL_CONTEXT))
    for key, value in FULL_CONTEXT.items():
        if key == "campaign":
            assert "segment_campaign" not in event.properties
        else:
            assert event.properties["segment_" + key] == value
    assert event.properties["segment_library"]["name"] == "analytics-posthog"


def test_session_id_snake_case():
    assert (
        to_posthog(message.track("u1", "e", context={"session_id": "s-2"})).properties[
            "$session_id"
        ]
        == "s-2"
    )


def test_group_id_uses_group_type_setting():
    event = to_posthog(message.track("u1", "e", context={"groupId": "acme"}), group_type="company")
    assert event.properties["$groups"] == {"company": "acme"}


@pytest.mark.parametrize("build", [
    lambda ctx: message.track("u1", "e", context=ctx),
    lambda ctx: message.page("u1", context=ctx),
    lambda ctx: message.screen("u1", context=ctx),
])  # fmt: skip
def test_context_traits_become_set_on_track_page_screen(build):
    assert to_posthog(build({"traits": {"plan": "pro"}})).properties["$set"] == {"plan": "pro"}


def test_context_traits_not_set_on_group_and_alias():
    assert (
        "$set" not in to_posthog(message.group("u1", "g", context={"traits": {"a": 1}})).properties
    )
    assert (
        "$set" not in to_posthog(message.alias("p", "u1", context={"traits": {"a": 1}})).properties
    )


def test_explicit_set_wins_over_context_traits():
    msg = message.track(
        "u1",
        "e",
        {"$set": {"plan": "team"}},
        context={"traits": {"plan": "pro", "email": "a@x.io"}},
    )
    assert to_posthog(msg).properties["$set"] == {"plan": "team", "email": "a@x.io"}


def test_call_properties_win_over_context():
    msg = message.track(
        "u1",
        "e",
        {
            "$ip": "198.51.100.1",
            "$current_url": "https://explicit.example/",
            "url": "https://url.example/",
        },
        context={"ip": "203.0.113.9", "page": {"url": "https://context.example/"}},
    )
    props = to_posthog(msg).properties
    assert props["$ip"] == "198.51.100.1"
    assert props["$current_url"] == "https://explicit.example/"
    assert props["$host"] == "explicit.example"


def test_malformed_context_shapes_are_kept_whole_not_fatal():
    event = to_posthog(message.track("u1", "e", context={"page": "not a dict", "os": None}))
    assert "$current_url" not in event.properties
    assert event.properties["segment_page"] == "not a dict"


@pytest.mark.parametrize("integrations,enabled", [
    ({}, True),
    ({"PostHog": False}, False),
    ({"posthog": False}, False),
    ({"POSTHOG": True}, True),
    ({"All": False}, False),
    ({"all": False, "PostHog": True}, True),
    ({"All": False, "posthog": {"some": "option"}}, True),
    ({"All": True, "PostHog": False}, False),
    ({"Mixpanel": False}, True),
])  # fmt: skip
def test_integrations_filter(integrations, enabled):
    assert posthog_enabled(integrations) is enabled
    assert (to_posthog(message.track("u1", "e", integrations=integrations)) is not None) is enabled


def test_segment_leg_integrations():
    """Whenever our PostHog leg delivers, Segment's destination is off; otherwise untouched."""
    assert segment_integrations({}, True) == {"PostHog": False}
    assert segment_integrations({"All": False, "Mixpanel": True}, False) == {
        "All": False,
        "Mixpanel": True,
    }
    for enabling in ({"posthog": True}, {"All": False, "PostHog": True}, {"POSTHOG": {"x": 1}}):
        assert segment_integrations(enabling, True) == {
            **{k: v for k, v in enabling.items() if k.lower() != "posthog"},
            "PostHog": False,
        }
    assert segment_integrations({"PostHog": False}, False) == {"PostHog": False}
    assert segment_integrations({"posthog": True}, False) == {"posthog": True}


@pytest.mark.parametrize(
    "name,posthog_name",
    [("url", "$current_url"), ("utm_name", "utm_campaign"), ("browser", "$browser")],
)
def test_property_aliases_yield_to_the_posthog_name_given_in_the_call(name, posthog_name):
    copied = to_posthog(
        message.track("u1", "e", {name: "https://a.example/"}, context={"campaign": {"name": "c"}})
    )
    assert copied.properties[posthog_name] == copied.properties[name] == "https://a.example/"
    explicit = to_posthog(
        message.track("u1", "e", {name: "https://a.example/", posthog_name: "https://b.example/"})
    )
    assert explicit.properties[posthog_name] == "https://b.example/"
    assert to_posthog(message.track("u1", "e", {name: ""})).properties.get(posthog_name) is None


def test_group_never_geolocated_even_with_an_ip():
    event = to_posthog(message.group("u1", "acme", context={"ip": "203.0.113.9"}))
    assert (event.properties["$geoip_disable"], event.disable_geoip) == (True, True)
    assert (
        "$geoip_disable"
        not in to_posthog(message.track("u1", "e", context={"ip": "203.0.113.9"})).properties
    )


def test_context_keys_that_are_not_strings_are_named_as_json_writes_them():
    context = {1: "one", None: "none", 2.5: "float", "campaign": {1: "x", "name": "spring"}}
    properties = to_posthog(message.track("u1", "e", context=context)).properties
    assert (properties["segment_1"], properties["segment_null"], properties["segment_2.5"]) == (
        "one",
        "none",
        "float",
    )
    assert (properties["utm_1"], properties["utm_campaign"]) == ("x", "spring")


def test_any_message_segments_client_accepts_maps_without_raising():
    """The mapping runs on the dispatcher's thread, where an exception would
    cost the event: seeded random calls of every shape (``shapes``)."""
    for call in calls(random.Random(20261130), 3000):
        assert to_posthog(call(message)).distinct_id
