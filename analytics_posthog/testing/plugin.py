"""The pytest plugin (entry point ``pytest11``): the ``capture_server`` fixture.

Installing analytics-posthog registers it, so any test can ask for
``capture_server`` without a conftest.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import CaptureServer


@pytest.fixture
def capture_server() -> Iterator[CaptureServer]:
    """A started CaptureServer, stopped after the test."""
    with CaptureServer() as server:
        yield server
