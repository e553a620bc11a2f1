"""Setting a hook up: its names, and the extra it asks for when its framework is missing."""

import subprocess
import sys

import pytest

from analytics_posthog.integrations import celery as celery_hook
from analytics_posthog.integrations import flask as flask_hook

MISSING = """
import sys
sys.modules[{module!r}] = None  # makes `import {module}` fail as if not installed
try:
    import analytics_posthog.integrations.{hook}
except ModuleNotFoundError as error:
    print(error)
    print(error.name)
"""


@pytest.mark.parametrize(
    "hook, module",
    [("flask", "flask"), ("celery", "celery"), ("django", "django"), ("django", "asgiref")],
)
def test_a_missing_framework_names_the_extra_to_install(hook, module):
    result = subprocess.run(
        [sys.executable, "-c", MISSING.format(hook=hook, module=module)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    message, name = result.stdout.strip().splitlines()
    assert f"pip install 'analytics-posthog[{hook}]'" in message
    assert name == module


def test_the_hooks_have_their_own_names_and_keep_the_old_one():
    assert flask_hook.FlaskAnalytics is flask_hook.Analytics
    assert celery_hook.CeleryAnalytics is celery_hook.Analytics
    assert flask_hook.FlaskAnalytics is not celery_hook.CeleryAnalytics
