"""Delivery counters per leg, so nothing is lost without being counted."""

from __future__ import annotations

import threading
from collections.abc import Iterable

COUNTERS = ("accepted", "retried", "dropped", "failed", "refused", "placeholder")


class DeliveryStats:
    def __init__(self, legs: Iterable[str]) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, int]] = {leg: dict.fromkeys(COUNTERS, 0) for leg in legs}

    def add(self, leg: str, counter: str, n: int = 1) -> None:
        with self._lock:
            self._counts[leg][counter] += n

    def snapshot(
        self, intake_pending: int, leg_pending: dict[str, int]
    ) -> dict[str, dict[str, int]]:
        """Per leg: ``queued`` (waiting in our queue or the leg's), ``delivered``
        (handed to the leg, no longer queued there and not failed), ``retried``
        (attempts the leg's client repeated after a failed one), ``dropped``
        (never handed over: a full queue, or exit came first) and ``failed``
        (the leg gave up after its retries, or refused the message when it was
        handed over: counted as ``refused`` inside, since it was never
        accepted and must not be taken off ``delivered``); on the PostHog leg,
        ``placeholder_ids``: calls with an id PostHog takes for a placeholder
        (``_delivery.placeholders``)."""
        with self._lock:
            counts = {leg: dict(c) for leg, c in self._counts.items()}
        return {
            leg: {
                "queued": intake_pending + leg_pending[leg],
                "delivered": max(0, c["accepted"] - c["failed"] - leg_pending[leg]),
                "retried": c["retried"],
                "dropped": c["dropped"],
                "failed": c["failed"] + c["refused"],
                **({"placeholder_ids": c["placeholder"]} if leg == "posthog" else {}),
            }
            for leg, c in counts.items()
        }
