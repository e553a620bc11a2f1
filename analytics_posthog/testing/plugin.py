"""The pytest plugin (entry point ``pytest11``): the ``capture_server`` fixture.

Installing analytics-posthog registers it, so any test can ask for
``capture_server`` without a conftest.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .redirect import capture_to
from .server import CaptureServer


@pytest.fixture
def capture_server() -> Iterator[CaptureServer]:
    """A started CaptureServer, stopped after the test; the module-level API
    (``analytics.track()``...) delivers to it meanwhile (``capture_to``)."""
    with CaptureServer() as server, capture_to(server):
        yield server
