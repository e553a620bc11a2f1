"""``install_as_segment()``: make existing Segment imports resolve to analytics_posthog.

The same trick as PyMySQL's ``install_as_MySQLdb()``: after one call at
start-up, code that imports Segment's library by any of its names gets this
package instead, so a large codebase migrates without touching its imports.

Order matters and is what keeps dual-write working: importing
``analytics_posthog`` (which happens before this function can run) imports
the real ``segment.analytics`` first, and our modules bind Segment's
``Client`` and helpers at that moment. Replacing the entries in
``sys.modules`` afterwards changes what *later* imports see, never what our
modules already hold, so the Segment leg keeps talking to Segment with
Segment's own client.
"""

from __future__ import annotations

import logging
import sys
from types import ModuleType

log = logging.getLogger("analytics_posthog")

#: Module names redirected to analytics_posthog (``analytics`` is the name
#: older code used, from PyPI ``analytics-python``). ``.client`` follows the
#: package so ``from segment.analytics.client import Client`` is redirected too
#: instead of silently bypassing PostHog.
PACKAGE_NAMES = ("segment.analytics", "analytics")
CLIENT_NAMES = ("segment.analytics.client", "analytics.client")


def install_as_segment() -> None:
    """After this call, ``import segment.analytics``, ``from segment import
    analytics``, ``from segment.analytics import Client`` and ``import
    analytics`` all give analytics_posthog (the module object itself, so
    settings such as ``segment.analytics.write_key = ...`` configure it).

    Call it once, before anything imports Segment's library: a module that
    already imported ``segment.analytics`` keeps the reference it holds.
    Calling it again does nothing new.
    """
    import analytics_posthog
    import analytics_posthog.client

    real = sys.modules.get("segment.analytics")
    if real is not None and real is not analytics_posthog:
        holders = holding(real)
        if holders:
            log.warning(
                "analytics_posthog: %s imported Segment's library before install_as_segment() "
                "and keep%s Segment's own client: %s calls go to Segment only. Call "
                "install_as_segment() before %s imported (docs/frameworks.md).",
                ", ".join(holders),
                "s" if len(holders) == 1 else "",
                "its" if len(holders) == 1 else "their",
                "it is" if len(holders) == 1 else "they are",
            )
    for name in PACKAGE_NAMES:
        sys.modules[name] = analytics_posthog
    for name in CLIENT_NAMES:
        sys.modules[name] = analytics_posthog.client
    # ``from segment import analytics`` and ``import segment.analytics as x``
    # read the attribute of the ``segment`` package before sys.modules.
    sys.modules["segment"].analytics = analytics_posthog


def holding(real: ModuleType) -> list[str]:
    """The app's modules that hold Segment's module or its ``Client`` by a
    name of their own (``import segment.analytics as analytics`` ran in them
    before the takeover). Segment's and our own modules are not the app's."""
    segment_client = getattr(real, "Client", None)
    held: list[str] = []
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] in ("segment", "analytics", "analytics_posthog"):
            continue
        values = getattr(module, "__dict__", {}).values()
        if any(value is real or (value is segment_client is not None) for value in list(values)):
            held.append(name)
    return sorted(held)
