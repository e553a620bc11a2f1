"""One definition of the settings, one way to set them: ``Client(...)``, the
module settings, ``configure()`` and the hooks all agree, and reading a
hook's settings writes nothing."""

from __future__ import annotations

import ast
import inspect
import logging
import os
import subprocess
import sys
from dataclasses import fields

import pytest
from flask import Flask

import analytics_posthog as analytics
from analytics_posthog import Client, integrations
from analytics_posthog._delivery.legs import Leg
from analytics_posthog._delivery.posthog_leg import PostHogLeg
from analytics_posthog._delivery.segment_leg import SegmentLeg
from analytics_posthog.integrations import HookOptions
from analytics_posthog.integrations.asgi import AnalyticsMiddleware as AsgiMiddleware
from analytics_posthog.integrations.flask import Analytics
from analytics_posthog.settings import DEFAULTS, NAMES, Settings

PACKAGE = os.path.dirname(analytics.__file__)


def module_settings():
    return {name: getattr(analytics, name) for name in NAMES}


def test_client_parameters_are_the_settings_in_order_with_their_defaults():
    parameters = list(inspect.signature(Client.__init__).parameters.values())[1:]
    assert [(p.name, p.default) for p in parameters] == [
        (f.name, f.default) for f in fields(Settings)
    ]


def test_module_settings_start_as_the_settings_defaults():
    script = (
        "import analytics_posthog as a\n"
        "from analytics_posthog.settings import DEFAULTS\n"
        "print(sorted(n for n, v in DEFAULTS.items() if getattr(a, n) != v))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert out.strip() == "[]"
    assert set(DEFAULTS) == set(NAMES) and len(NAMES) == 29


def test_unknown_name_raises_and_sets_nothing(legs):
    before = module_settings()
    with pytest.raises(TypeError, match="posthog_apikey"):
        analytics.configure(posthog_api_key="phc_good", posthog_apikey="phc_typo")
    assert module_settings() == before


def test_invalid_value_raises_segments_error_and_sets_nothing(legs):
    before = module_settings()
    with pytest.raises(ValueError) as ours:
        analytics.configure(max_rate_limit_duration=-1)
    with pytest.raises(ValueError) as clients:
        Client(send=False, max_rate_limit_duration=-1)
    assert str(ours.value) == str(clients.value)
    assert module_settings() == before


def test_the_default_client_is_built_from_every_module_setting(legs):
    analytics.configure(
        posthog_api_key="phc_configured", posthog_host=legs.posthog.url, write_key="seg_configured", host=legs.segment.url,
        upload_size=7, max_queue_size=123, timeout=4, proxies={"https": "http://127.0.0.1:9"}, exit_timeout=2.5,
    )  # fmt: skip
    ok, _ = analytics.track("u1", "Configured")
    client = analytics.default_client
    assert ok is True and client.settings == Settings(**module_settings())
    posthog_client, segment_client = (leg.client for leg in client.delivery.legs)
    assert (
        posthog_client.api_key,
        posthog_client.host,
        posthog_client.queue.maxsize,
        posthog_client.timeout,
    ) == ("phc_configured", legs.posthog.url, 123, 4)
    assert (segment_client.write_key, segment_client.host, segment_client.proxies) == (
        "seg_configured",
        legs.segment.url,
        {"https": "http://127.0.0.1:9"},
    )
    assert client.exit_timeout == client.delivery.exit_timeout == 2.5
    assert legs.posthog.wait_for_events(1)[0]["event"] == "Configured"
    assert {r.key for r in legs.posthog.requests} == {"phc_configured"}


def test_configure_after_the_default_client_exists_warns_and_applies_to_the_next(legs, caplog):
    analytics.configure(posthog_api_key="phc_first", posthog_host=legs.posthog.url)
    analytics.track("u1", "First")
    caplog.set_level(logging.WARNING, logger="analytics_posthog")
    analytics.configure(posthog_api_key="phc_second")
    assert any(
        "posthog_api_key changed after the default client was created" in r.getMessage()
        for r in caplog.records
    )
    assert analytics.default_client.posthog_api_key == "phc_first"
    analytics.default_client.shutdown()
    analytics.default_client = None
    analytics.track("u1", "Second")
    assert analytics.default_client.posthog_api_key == "phc_second"


def test_reading_hook_settings_writes_no_module_setting(legs):
    before = module_settings()
    hook_settings = {
        "API_KEY": "phc_parsed",
        "HOST": "http://127.0.0.1:9",
        "WRITE_KEY": "seg_parsed",
        "TRUSTED_PROXIES": 1,
    }
    options = HookOptions.from_settings(hook_settings, "test")
    assert options.trusted_proxies == 1
    assert integrations.module_settings(hook_settings) == {
        "posthog_api_key": "phc_parsed",
        "posthog_host": "http://127.0.0.1:9",
        "write_key": "seg_parsed",
    }
    AsgiMiddleware(lambda scope, receive, send: None, trusted_proxies=1)
    assert module_settings() == before


def test_flask_init_app_sets_through_configure_what_module_settings_and_client_see(legs):
    app = Flask(__name__)
    app.config.update(
        {
            "ANALYTICS_POSTHOG_API_KEY": "phc_flask",
            "ANALYTICS_POSTHOG_HOST": legs.posthog.url,
            "ANALYTICS_POSTHOG_GROUP_TYPE": "company",
        }
    )
    expected = {
        **module_settings(),
        "posthog_api_key": "phc_flask",
        "posthog_host": legs.posthog.url,
        "group_type": "company",
    }
    Analytics(app)
    assert module_settings() == expected
    analytics.track("u1", "From Flask")
    assert analytics.default_client.settings == Settings(**expected)
    assert {r.key for r in legs.posthog.requests} == {"phc_flask"}


def test_flask_unknown_setting_writes_nothing(legs):
    before = module_settings()
    app = Flask(__name__)
    app.config.update(
        {"ANALYTICS_POSTHOG_API_KEY": "phc_flask", "ANALYTICS_POSTHOG_TRUSTED_PROXY": 1}
    )
    with pytest.raises(ValueError, match="TRUSTED_PROXY"):
        Analytics(app)
    assert module_settings() == before


def imported_modules(name):
    """The ``analytics_posthog`` modules that module ``name`` imports, by its source."""
    with open(os.path.join(PACKAGE, *name.split(".")[1:]) + ".py") as source:
        tree = ast.parse(source.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(node.module + "." + alias.name for alias in node.names)
    return {
        module
        for module in found
        if module.startswith("analytics_posthog.")
        and os.path.exists(os.path.join(PACKAGE, *module.split(".")[1:]) + ".py")
    }


def test_delivery_never_imports_the_client_not_even_through_another_module():
    seen, todo = set(), ["analytics_posthog._delivery.delivery"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(imported_modules(name))
    assert (
        "analytics_posthog._delivery.dispatcher" in seen
        and "analytics_posthog._delivery.posthog_leg" in seen
    )
    assert "analytics_posthog.client" not in seen


def test_both_legs_have_every_member_of_the_leg_protocol():
    members = set(Leg.__annotations__) | {name for name in vars(Leg) if not name.startswith("_")}
    assert {
        "name",
        "send",
        "pending",
        "flush",
        "join",
        "abandon",
        "runs_on",
        "retried",
        "has_room",
        "host",
    } <= members
    for leg in (PostHogLeg, SegmentLeg):
        init = inspect.getsource(leg.__init__)
        missing = {m for m in members if not hasattr(leg, m) and "self.%s =" % m not in init}
        assert not missing, (leg.__name__, missing)


def test_on_error_assigned_after_construction_hears_the_next_failure():
    client = Client(
        posthog_api_key="phc_x",
        posthog_host="http://127.0.0.1:9",
        sync_mode=True,
        max_retries=0,
        timeout=1,
    )
    heard = []
    client.on_error = lambda error, batch: heard.append(batch)
    ok, msg = client.track("u1", "Refused")
    assert ok is False and client.on_error is not None
    assert heard and heard[0][0]["event"] == "Refused"
    client.shutdown()


def test_the_spool_is_set_from_flask_and_django_settings(legs, tmp_path):
    app = Flask(__name__)
    app.config.update(
        {
            "ANALYTICS_POSTHOG_API_KEY": "phc_flask",
            "ANALYTICS_POSTHOG_HOST": legs.posthog.url,
            "ANALYTICS_POSTHOG_SPOOL_DIR": str(tmp_path / "flask"),
            "ANALYTICS_POSTHOG_SPOOL_MAX_BYTES": 10_000_000,
        }
    )
    Analytics(app)
    assert (analytics.spool_dir, analytics.spool_max_bytes) == (str(tmp_path / "flask"), 10_000_000)
    analytics.track("u1", "Spooled from Flask")
    assert os.listdir(tmp_path / "flask")
