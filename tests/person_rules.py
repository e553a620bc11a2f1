"""PostHog's documented person rules, applied to events in the order given.

Written from PostHog's identify, alias and person-properties docs, apart
from the library's own code, so a test can compare what PostHog computes
from the order events arrive in with what time order would have given:

- every distinct id has a person from its first event;
- ``$identify`` (with ``$anon_distinct_id``) and ``$create_alias`` (with
  ``alias``) join the other id's person into the event's, the event's
  person's values winning, unless either id is a placeholder or the person
  joined in is already identified; the result is identified;
- then ``$set_once`` sets only keys not yet set, and ``$set`` overwrites.
"""

from __future__ import annotations

from typing import Any

from analytics_posthog.mapping import is_placeholder_id

MERGED = {"$identify": "$anon_distinct_id", "$create_alias": "alias"}


class Persons:
    def __init__(self, events: list[dict[str, Any]] = ()) -> None:
        self.person_of: dict[str, int] = {}
        self.props: dict[int, dict[str, Any]] = {}
        self.identified: set[int] = set()
        self.refused: list[str] = []
        for event in events:
            self.ingest(event)

    def _person(self, distinct_id: str) -> int:
        if distinct_id not in self.person_of:
            self.person_of[distinct_id] = person = len(self.person_of)
            self.props[person] = {}
        return self.person_of[distinct_id]

    def ingest(self, event: dict[str, Any]) -> None:
        properties = event["properties"]
        target_id = event["distinct_id"]
        other_id = properties.get(MERGED.get(event["event"], ""))
        if (
            other_id
            and other_id != target_id
            and not is_placeholder_id(other_id)
            and not is_placeholder_id(target_id)
        ):
            self._merge(target_id, other_id)
        values = self.props[self._person(target_id)]
        for key, value in (properties.get("$set_once") or {}).items():
            values.setdefault(key, value)
        values.update(properties.get("$set") or {})

    def _merge(self, target_id: str, other_id: str) -> None:
        if other_id not in self.person_of:
            self.person_of[other_id] = self._person(target_id)
        elif target_id not in self.person_of:
            self.person_of[target_id] = self.person_of[other_id]
        else:
            target, other = self.person_of[target_id], self.person_of[other_id]
            if other != target:
                if other in self.identified:
                    self.refused.append(other_id)
                    return
                self.props[target] = {**self.props.pop(other), **self.props[target]}
                for distinct_id, person in self.person_of.items():
                    if person == other:
                        self.person_of[distinct_id] = target
        self.identified.add(self.person_of[target_id])

    def of(self, distinct_id: str) -> dict[str, Any]:
        return self.props.get(self.person_of.get(distinct_id, -1), {})
