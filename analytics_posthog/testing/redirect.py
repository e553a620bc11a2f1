"""``capture_to``: the module-level API pointed at a test's server, then put back.

App code calls ``analytics.track()`` as Segment code does; the default
client behind it is built once, from the settings the app set at import,
production hosts included. A test that asks for a ``CaptureServer`` must
get that client's events, and the next test must start clean, so the
default client is shut down and rebuilt around each test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .server import CaptureServer

#: The module state ``capture_to`` sets, and puts back afterwards.
REDIRECTED = ("posthog_api_key", "default_client", "_redirected_to")
#: How long the test's own client gets to deliver when the test ends.
SHUTDOWN_TIMEOUT = 5.0


@contextmanager
def capture_to(server: CaptureServer) -> Iterator[CaptureServer]:
    """Send the module-level API's calls, on every leg the app configured, to
    ``server``, with a default client of their own; afterwards, deliver what
    is left to ``server`` and put the app's settings back.

    The hosts are overridden where the default client is built, so hosts
    the app sets meanwhile (a Flask app factory, Django's settings) do not
    take the calls elsewhere.

    With no PostHog key anywhere (settings or environment), a test key is
    used, so the calls of an app configured for Segment alone still reach
    ``server``'s PostHog endpoint as they would in dual-write.
    """
    import analytics_posthog as analytics  # here, not at import: see the package's docstring

    saved = {name: getattr(analytics, name) for name in REDIRECTED}
    _shut(analytics.default_client)
    analytics.default_client = None
    analytics._redirected_to = server.url
    if not analytics.posthog_api_key and not _posthog_key_in(os.environ):
        analytics.posthog_api_key = "phc_test"
    try:
        yield server
    finally:
        _shut(analytics.default_client)
        for name, value in saved.items():
            setattr(analytics, name, value)
        analytics.default_client = None


def _posthog_key_in(environ: Any) -> bool:
    return any(environ.get(name) for name in ("POSTHOG_API_KEY", "POSTHOG_PROJECT_API_KEY"))


def _shut(client: Any) -> None:
    if client is not None:
        client.shutdown(timeout=SHUTDOWN_TIMEOUT)
