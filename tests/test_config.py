"""Which legs a client gets, from arguments, module settings and the environment."""

from __future__ import annotations

import logging

import pytest

import analytics_posthog
from analytics_posthog import Client
from analytics_posthog import client as client_module
from analytics_posthog._keys import DEFAULT_POSTHOG_HOST, resolve_keys

KEY_VARIABLES = ("POSTHOG_API_KEY", "POSTHOG_PROJECT_API_KEY", "POSTHOG_HOST", "SEGMENT_WRITE_KEY")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def leg_names(client):
    return [leg.name for leg in client.delivery.legs]


def test_posthog_key_from_argument_and_default_host():
    keys = resolve_keys(None, "phc_arg", None, {})
    assert (keys.posthog_api_key, keys.posthog_host, keys.segment_write_key) == (
        "phc_arg",
        DEFAULT_POSTHOG_HOST,
        None,
    )


@pytest.mark.parametrize("variable", ["POSTHOG_API_KEY", "POSTHOG_PROJECT_API_KEY"])
def test_posthog_key_from_environment(variable):
    assert resolve_keys(None, None, None, {variable: "phc_env"}).posthog_api_key == "phc_env"


def test_posthog_api_key_variable_wins_over_project_variable():
    environ = {"POSTHOG_API_KEY": "phc_a", "POSTHOG_PROJECT_API_KEY": "phc_b"}
    assert resolve_keys(None, None, None, environ).posthog_api_key == "phc_a"


def test_arguments_win_over_environment():
    environ = {
        "POSTHOG_API_KEY": "phc_env",
        "POSTHOG_HOST": "https://env.example",
        "SEGMENT_WRITE_KEY": "wk_env",
    }
    keys = resolve_keys("wk_arg", "phc_arg", "https://arg.example", environ)
    assert (keys.posthog_api_key, keys.posthog_host, keys.segment_write_key) == (
        "phc_arg",
        "https://arg.example",
        "wk_arg",
    )


def test_environment_fills_what_arguments_leave_out():
    environ = {
        "POSTHOG_API_KEY": "phc_env",
        "POSTHOG_HOST": "https://eu.i.posthog.com",
        "SEGMENT_WRITE_KEY": "wk_env",
    }
    keys = resolve_keys(None, None, None, environ)
    assert (keys.posthog_api_key, keys.posthog_host, keys.segment_write_key) == (
        "phc_env",
        "https://eu.i.posthog.com",
        "wk_env",
    )


def test_phc_write_key_is_a_posthog_key():
    keys = resolve_keys("phc_project", None, None, {})
    assert (keys.posthog_api_key, keys.segment_write_key) == ("phc_project", None)


def test_phc_write_key_from_environment_is_a_posthog_key():
    keys = resolve_keys(None, None, None, {"SEGMENT_WRITE_KEY": "phc_project"})
    assert (keys.posthog_api_key, keys.segment_write_key) == ("phc_project", None)


def test_no_key_raises_naming_both_settings_and_variables():
    with pytest.raises(AssertionError) as error:
        Client()
    for word in ("posthog_api_key", "write_key", "POSTHOG_API_KEY", "SEGMENT_WRITE_KEY"):
        assert word in str(error.value)


def test_module_first_call_without_key_raises_and_retries_later(monkeypatch, capture_server):
    # capture_server gives the module a test key when the app set none: take it away.
    monkeypatch.setattr(analytics_posthog, "posthog_api_key", None)
    monkeypatch.setattr(analytics_posthog, "default_client", None)
    with pytest.raises(AssertionError, match="POSTHOG_API_KEY"):
        analytics_posthog.track("u1", "e")
    assert analytics_posthog.default_client is None
    monkeypatch.setattr(analytics_posthog, "posthog_api_key", "phc_module")
    monkeypatch.setattr(analytics_posthog, "posthog_host", capture_server.url)
    monkeypatch.setattr(analytics_posthog, "sync_mode", True)
    ok, msg = analytics_posthog.track("u1", "Module call")
    assert ok is True
    assert capture_server.wait_for_events(1)[0]["event"] == "Module call"
    assert capture_server.requests[0].key == "phc_module"
    analytics_posthog.default_client.shutdown()


def test_send_false_needs_no_key():
    ok, msg = Client(send=False).track("u1", "e")
    assert ok is True and msg["event"] == "e"


def test_environment_configures_client(monkeypatch):
    monkeypatch.setenv("POSTHOG_PROJECT_API_KEY", "phc_env")
    monkeypatch.setenv("POSTHOG_HOST", "http://127.0.0.1:9")
    client = Client(sync_mode=True)
    assert leg_names(client) == ["posthog"]
    assert client.delivery.legs[0].client.api_key == "phc_env"
    assert client.delivery.legs[0].client.host == "http://127.0.0.1:9"


def test_both_keys_give_both_legs():
    client = Client("wk", posthog_api_key="phc_x", sync_mode=True)
    assert leg_names(client) == ["posthog", "segment"]
    assert client.delivery.legs[1].client.write_key == "wk"


def test_only_segment_warns_once(caplog):
    caplog.set_level(logging.WARNING, logger="analytics_posthog")
    client = Client("wk", send=True, sync_mode=True, host="http://127.0.0.1:9")
    assert leg_names(client) == ["segment"]
    warnings = [
        r for r in caplog.records if "PostHog" in r.getMessage() and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1
    assert "posthog_api_key" in warnings[0].getMessage()


def test_only_segment_sends_to_segment_alone(capture_server):
    client = Client("wk", host=capture_server.url, sync_mode=True)
    client.track("u1", "Only Segment")
    client.identify("u1", {"a": 1})
    assert [m["type"] for m in capture_server.wait_for_segment(2)] == ["track", "identify"]
    assert capture_server.events == []


def test_shared_posthog_client(capture_server):
    import posthog

    def app_hook(msg):
        msg["properties"]["app_hook_saw"] = msg["properties"].get("$os")
        return msg

    shared = posthog.Client(
        "phc_shared", host=capture_server.url, sync_mode=True, before_send=app_hook
    )
    client = Client(posthog_client=shared)
    assert client.delivery.legs[0].client is shared
    assert shared.before_send is app_hook
    client.track("u1", "Through shared client", context={"os": {"name": "iOS", "version": "17"}})
    shared.capture("Direct", distinct_id="u1", properties={"mine": True})
    events = {e["event"]: e for e in capture_server.wait_for_events(2)}
    assert events["Through shared client"]["properties"]["$os"] == "iOS"
    # The app's own hook runs on our events too, after the end user's OS is in place.
    assert events["Through shared client"]["properties"]["app_hook_saw"] == "iOS"
    assert events["Direct"]["properties"]["app_hook_saw"] == events["Direct"]["properties"]["$os"]
    assert events["Direct"]["properties"]["mine"] is True
    assert events["Direct"]["properties"]["$os"] != "iOS"
    assert "$analytics_posthog_context_os" not in events["Direct"]["properties"]
    assert all(r.key == "phc_shared" for r in capture_server.requests)


def test_shutdown_leaves_the_apps_own_posthog_client_working(capture_server):
    import posthog

    shared = posthog.Client("phc_shared", host=capture_server.url)
    client = Client(posthog_client=shared)
    client.track("u1", "Ours")
    client.shutdown()
    assert [e["event"] for e in capture_server.wait_for_events(1)] == ["Ours"]
    assert shared.capture("The app's own", distinct_id="u1") is not None
    shared.flush()
    assert [e["event"] for e in capture_server.wait_for_events(2)] == ["Ours", "The app's own"]
    shared.shutdown()


@pytest.mark.parametrize(
    "arguments, name",
    [
        ({"posthog_host": "us.i.posthog.com"}, "posthog_host"),
        ({"posthog_host": "ftp://example.com"}, "posthog_host"),
        ({"write_key": "wk", "host": "api.segment.io"}, "host"),
    ],
)
def test_a_host_that_is_not_an_http_url_is_refused_at_configuration(arguments, name):
    with pytest.raises(AssertionError, match="%s must be an http\\(s\\) URL" % name):
        Client(posthog_api_key="phc_test", **arguments)


@pytest.mark.parametrize(
    "key, says",
    [("phx_personal123", "a personal API key (it starts with phx_)"), ("abc123", "not a project")],
)
def test_a_key_that_is_not_a_project_key_is_named_never_shown(key, says, caplog, monkeypatch):
    monkeypatch.setattr(client_module, "_WARNED", set())
    with caplog.at_level(logging.WARNING, logger="analytics_posthog"):
        Client(posthog_api_key=key, send=False)
        Client(posthog_api_key=key, posthog_host="http://127.0.0.1:9").shutdown()
    warnings = [r.getMessage() for r in caplog.records if "PostHog key given" in r.getMessage()]
    assert len(warnings) == 1 and says in warnings[0] and "phc_" in warnings[0], warnings
    assert key not in warnings[0]


def test_a_project_key_gets_no_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="analytics_posthog"):
        Client(posthog_api_key="phc_project", posthog_host="http://127.0.0.1:9").shutdown()
    assert not [r for r in caplog.records if "PostHog key given" in r.getMessage()]
