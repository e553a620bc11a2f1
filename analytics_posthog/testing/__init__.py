"""Loopback PostHog and Segment endpoints, for testing code that sends analytics.

``CaptureServer`` speaks enough of both ingestion APIs for the real clients to
deliver to it, records what arrives, and can misbehave on demand. One module
per job:

- ``endpoints``: the fake ingestion endpoints (paths, bodies, answers);
- ``faults``: fault injection (``fail``, ``hang``, ``drop``);
- ``server``: ``CaptureServer`` (serving, recording, waiting, ``refuse``);
- ``handler``: one HTTP request, from reading it to answering it;
- ``control``: the HTTP control API, for a server in another process;
- ``cli``: ``python -m analytics_posthog.testing``, that other process;
- ``redirect``: ``capture_to``, the module-level API pointed at a server;
- ``plugin``: the pytest fixture ``capture_server``.

Standard library only, and it imports neither ``posthog`` nor ``segment``
(``capture_to`` imports ``analytics_posthog`` when it runs), so it can test
code that patches or configures them; nor ``pytest``, outside of ``plugin``. How to use it: docs/testing.md.
"""

from __future__ import annotations

from .cli import main
from .endpoints import LEG_POSTHOG, LEG_SEGMENT, CapturedRequest
from .redirect import capture_to
from .server import CaptureServer

__all__ = ["CaptureServer", "CapturedRequest", "LEG_POSTHOG", "LEG_SEGMENT", "capture_to", "main"]
