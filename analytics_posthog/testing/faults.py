"""Fault injection on one leg at a time: error answers, slow answers, dropped
connections, events refused one by one.

Retry and fail-over behaviour can only be tested against an endpoint that
misbehaves on demand, the way real ones do: a 503 with ``Retry-After``, an
answer that takes longer than the client's timeout, a connection closed
without an answer. ``refuse()``, which closes the whole listener, is the
server's own (``server.CaptureServer.refuse``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .endpoints import LEGS

FAIL = "fail"
HANG = "hang"
DROP = "drop"


@dataclass
class Rule:
    """A simulated failure armed on one leg; consumed per request."""

    kind: str
    status: int = 503
    retry_after: float | None = None
    remaining: int | None = None
    until: float | None = None
    delay: float = 0.0
    release: threading.Event | None = None


class FaultInjection:
    """``fail``, ``hang`` and ``drop``, armed per leg (``"posthog"``, ``"segment"``, or ``None`` for both).

    One rule per leg: the latest call on a leg replaces the previous one.
    """

    def __init__(self) -> None:
        self._rules: dict[str, Rule] = {}
        self._rules_lock = threading.Lock()
        self._reject: Callable[[dict[str, Any]], bool] | None = None

    def fail(
        self,
        status: int = 503,
        *,
        leg: str | None = None,
        times: int | None = None,
        seconds: float | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Answer ``status`` with a JSON error body (and ``Retry-After`` if given).

        Applies to the next ``times`` requests on each affected leg (counted per
        leg), or for ``seconds``, whichever ends first, or until ``restore()``.
        Failed requests deliver nothing but are logged in ``requests``.
        """
        status = int(status)
        remaining, until = _window(times, seconds)
        self._arm(
            leg,
            lambda: Rule(
                FAIL, status=status, retry_after=retry_after, remaining=remaining, until=until
            ),
        )

    def hang(self, seconds: float, *, leg: str | None = None, times: int | None = None) -> None:
        """Delay each response on the leg by ``seconds``, then answer normally.

        Lasts until ``restore()`` (or for the next ``times`` requests per leg).
        ``restore()``/``stop()`` release requests that are waiting. Events are
        recorded when the delayed answer is sent, so a client that timed out
        and retried may deliver twice, as against a real slow server.
        """
        delay = float(seconds)
        remaining, _ = _window(times, None)
        self._arm(
            leg, lambda: Rule(HANG, delay=delay, remaining=remaining, release=threading.Event())
        )

    def drop(
        self, *, leg: str | None = None, times: int | None = None, seconds: float | None = None
    ) -> None:
        """Read the request, then close the connection without answering.

        The per-leg stand-in for ``refuse()``: clients see a connection error
        (e.g. ``RemoteDisconnected``). Logged in ``requests`` with status 0.
        """
        remaining, until = _window(times, seconds)
        self._arm(leg, lambda: Rule(DROP, remaining=remaining, until=until))

    def reject_events(self, pick: Callable[[dict[str, Any]], bool] | None) -> None:
        """Capture v1 answers ``drop`` for each event ``pick`` chooses, as
        PostHog does for an event it refuses, and stores the others (a 2xx
        with per-event results). ``None`` stops it."""
        self._reject = pick

    def _arm(self, leg: str | None, make: Callable[[], Rule]) -> None:
        legs = _legs(leg)
        with self._rules_lock:
            for name in legs:
                old = self._rules.get(name)
                if old is not None and old.release is not None:
                    old.release.set()
                self._rules[name] = make()

    def _take_rule(self, leg: str) -> Rule | None:
        """The rule this request on ``leg`` meets, if any (using up one of its ``times``)."""
        with self._rules_lock:
            rule = self._rules.get(leg)
            if rule is None:
                return None
            if rule.until is not None and time.monotonic() >= rule.until:
                del self._rules[leg]
                return None
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining <= 0:
                    del self._rules[leg]
            return rule

    def _release_rules(self) -> None:
        """Disarm every rule and let held (hanging) requests go on."""
        with self._rules_lock:
            for rule in self._rules.values():
                if rule.release is not None:
                    rule.release.set()
            self._rules.clear()


def _legs(leg: str | None) -> tuple[str, ...]:
    if leg is None:
        return LEGS
    if leg not in LEGS:
        raise ValueError("leg must be 'posthog', 'segment' or None, not %r" % (leg,))
    return (leg,)


def _window(times: int | None, seconds: float | None) -> tuple[int | None, float | None]:
    if times is not None and times < 1:
        raise ValueError("times must be >= 1 (or None)")
    until = None if seconds is None else time.monotonic() + float(seconds)
    return times, until
