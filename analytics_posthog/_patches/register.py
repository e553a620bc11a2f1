"""The register of every place where we reach inside posthog or Segment.

The libraries' public API cannot keep some of our promises (an event's cost,
the end user's OS, retries counted and outages told at once, exit within a
deadline, posthog's context as it was at the call). Each reach that does is
one named ``Reach`` here, installed only by ``_patches.posthog`` or
``_patches.segment``: it says what it replaces, checks that what it finds is
what we expect, and when the check fails, or the switch is on, it leaves the
library's own behaviour in place and records why. ``analytics-posthog
doctor`` prints the register.

Two kinds:

- ``patch``: replaces a library function, or uses private state. The switch
  ``ANALYTICS_POSTHOG_NO_INTERNALS=1`` (read at import) turns every one off.
- ``borrow``: reads a helper or constant from a library's submodule (Segment's
  own ``require`` and ``clean``, for identical errors and messages). Reading
  changes nothing in the library, so the switch leaves borrowings as they
  are; one the library no longer has is replaced by our equivalent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("analytics_posthog")

#: The one switch: set (to anything but ``""``/``0``) before the process imports analytics_posthog.
SWITCH = "ANALYTICS_POSTHOG_NO_INTERNALS"
OFF: bool = os.environ.get(SWITCH, "") not in ("", "0")

ACTIVE = "active"
FALLBACK = "fallback"
SWITCHED_OFF = "off"
UNUSED = "not used yet"


@dataclass
class Reach:
    name: str
    kind: str  # "patch" or "borrow"
    replaces: str
    #: What the library does instead, and so what degrades, when this one is not active.
    without: str
    state: str = UNUSED
    reason: str = ""

    @property
    def active(self) -> bool:
        return self.state == ACTIVE


REGISTER: dict[str, Reach] = {}


def declare(name: str, kind: str, replaces: str, without: str) -> Reach:
    reach = REGISTER[name] = Reach(name, kind, replaces, without)
    return reach


def attempt(
    reach: Reach,
    check: Callable[[], str | None],
    apply: Callable[[], None] = lambda: None,
    *,
    once: bool = True,
) -> bool:
    """Apply ``reach`` when the switch allows it and ``check`` finds no reason
    against it (``check`` answers the reason, or ``None``); record the outcome.
    A ``once`` reach (a process-wide patch) is applied only the first time;
    the others (one per client) each time."""
    if once and reach.active:
        return True
    if OFF and reach.kind == "patch":
        reach.state, reach.reason = SWITCHED_OFF, "%s is set" % SWITCH
        return False
    try:
        reason = check()
        if reason is None:
            apply()
    except Exception as error:  # a surprise inside a library must never stop ours
        reason = "%s: %s" % (type(error).__name__, error)
    if reason is not None:
        if reach.state != FALLBACK:
            log.info(
                "analytics_posthog: %s not used (%s); the library's own behaviour stands",
                reach.name,
                reason,
            )
        reach.state, reach.reason = FALLBACK, reason
        return False
    reach.state, reach.reason = ACTIVE, ""
    return True


def missing(owner: object, *names: str) -> str | None:
    """A check: the reason when ``owner`` lacks one of ``names`` (``None`` when it has them all)."""
    absent = [name for name in names if not hasattr(owner, name)]
    if absent:
        return "%s has no %s" % (
            getattr(owner, "__name__", type(owner).__name__),
            ", ".join(absent),
        )
    return None


def summary() -> str:
    """The reaches in one line, for ``doctor`` without ``--verbose``."""
    reaches = list(REGISTER.values())
    active = [reach for reach in reaches if reach.state == ACTIVE]
    if len(active) == len(reaches):
        return "Internal patches: all %d active." % len(reaches)
    others = ", ".join(
        "%s (%s)" % (reach.name, reach.state) for reach in reaches if reach not in active
    )
    return "Internal patches: %d of %d active; not active: %s (--verbose says why)." % (
        len(active),
        len(reaches),
        others,
    )


def as_json() -> list[dict[str, str | None]]:
    """Each reach's name, kind, state and reason, for ``doctor --json``."""
    return [
        {
            "name": r.name,
            "kind": r.kind,
            "state": r.state,
            "reason": r.reason,
            "replaces": r.replaces,
        }
        for r in REGISTER.values()
    ]


def report() -> list[str]:
    """One line per reach, for ``doctor --verbose``."""
    lines = [
        "Reaches inside posthog and Segment (%s=1 turns the patches off%s):"
        % (SWITCH, "; it is set" if OFF else "")
    ]
    for reach in REGISTER.values():
        why = (
            " (%s; instead: %s)" % (reach.reason, reach.without)
            if reach.state in (FALLBACK, SWITCHED_OFF)
            else ""
        )
        lines.append(
            "  %-25s %-6s %-12s %s%s" % (reach.name, reach.kind, reach.state, reach.replaces, why)
        )
    return lines
