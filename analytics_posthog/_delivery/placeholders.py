"""Ids PostHog will not merge persons on, said before PostHog drops the merge.

PostHog answers 200 to an ``$identify`` or ``$create_alias`` whose id it
takes for a placeholder (``"None"``, ``"undefined"``, ``""``...) and only
files an ingestion warning; the team finds out from wrong funnels. Segment
sent such calls for years without a word, so they are still sent exactly as
Segment would, and the log names each such id once, with the call.
"""

from __future__ import annotations

import logging
import threading

from analytics_posthog._message.build import Message
from analytics_posthog.mapping import MERGED_IDS, placeholder_ids

log = logging.getLogger("analytics_posthog")

#: Distinct ids warned about per client, after which the count goes on alone.
MOST_WARNINGS = 100


class PlaceholderWatch:
    def __init__(self) -> None:
        self._warned: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()

    def see(self, msg: Message) -> bool:
        """Whether ``msg`` holds such an id; the first time each one is seen
        (up to MOST_WARNINGS), a warning names it and the call."""
        found = placeholder_ids(msg)
        if not found:
            return False
        type_ = msg.get("type", "")
        for field, value in found:
            key = (type_, field, value)
            with self._lock:
                if key in self._warned or len(self._warned) >= MOST_WARNINGS:
                    continue
                self._warned.add(key)
            if type_ in MERGED_IDS:
                log.warning(
                    "analytics_posthog: %s call with %s %r: PostHog takes it for a "
                    "placeholder and will not merge persons on it; sent as Segment would",
                    type_,
                    field,
                    value,
                )
            else:
                log.warning(
                    "analytics_posthog: %s call with userId %r: PostHog takes it for a "
                    "placeholder, so every event with it lands on one person",
                    type_,
                    value,
                )
        return True
