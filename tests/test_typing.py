"""The public API as a user's type checker sees it: Segment's signatures on
the module functions too, and a user's file that passes ``mypy --strict``."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import analytics_posthog
from analytics_posthog import Client

CALLS = ("track", "identify", "group", "alias", "page", "screen", "flush", "shutdown")

#: Code a team writes against the API, module-level and with a Client.
USER_CODE = """
from datetime import datetime, timezone

import analytics_posthog as analytics
from analytics_posthog import Client

analytics.write_key = "wk"
analytics.posthog_api_key = "phc_test"
analytics.send = False
ok, msg = analytics.track("u", "Signed up", {"plan": "pro"}, timestamp=datetime.now(timezone.utc))
analytics.identify("u", {"email": "u@example.com"})
analytics.page("u", "Docs", "Install")
delivered: bool = analytics.flush(timeout=1.0)
client = Client(write_key="wk", posthog_api_key="phc_test", send=False)
accepted: bool = client.group("u", "acme", {"name": "Acme"})[0]
client.shutdown()
"""

#: The same with mistakes mypy must catch: a wrong type and a misspelt name.
MISTAKES = """
import analytics_posthog as analytics

analytics.track("u", event=5)
analytics.track("u", "E", propertees={})
"""


def test_the_module_functions_have_the_clients_signatures():
    for name in CALLS:
        ours = list(inspect.signature(getattr(analytics_posthog, name)).parameters.values())
        client = list(inspect.signature(getattr(Client, name)).parameters.values())[1:]
        assert [(p.name, p.default) for p in ours] == [(p.name, p.default) for p in client], name


def mypy(tmp_path, code: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "user_code.py"
    path.write_text(textwrap.dedent(code))
    # An editable install is found through an import hook mypy does not run:
    # MYPYPATH points it at the package, and --follow-imports=silent reports
    # errors in the user's file only, as mypy does for an installed package.
    env = {**os.environ, "MYPYPATH": str(Path(analytics_posthog.__file__).parent.parent)}
    command = ["--strict", "--follow-imports=silent", "--no-incremental", str(path)]
    return subprocess.run(
        [sys.executable, "-m", "mypy", *command],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )


@pytest.mark.slow
def test_a_users_code_passes_mypy_strict_and_its_mistakes_do_not(tmp_path):
    done = mypy(tmp_path, USER_CODE)
    assert done.returncode == 0, done.stdout + done.stderr
    done = mypy(tmp_path, MISTAKES)
    assert done.returncode == 1, done.stdout
    assert 'Argument "event" to "track" has incompatible type "int"' in done.stdout
    assert 'Unexpected keyword argument "propertees"' in done.stdout
