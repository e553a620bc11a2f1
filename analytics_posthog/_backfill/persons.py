"""Person properties as time would have them, whatever order PostHog gets them in.

PostHog applies ``$set`` in the order events arrive, not by their
timestamps, and a backfill arrives after (or alongside) the live calls of a
dual-write: historical events that still carried their ``$set`` would put
every person back to the traits they had months ago. So the scan takes
``$set`` and ``$set_once`` out of every historical event and writes one
record per event here; this pass plays the records in time order through
PostHog's documented person rules, in SQLite on disk (the archive's people
need not fit in memory), and ends with one ``$set`` event per person that
carries the result as ``$set_once``. Every live value is newer than the
history, and ``$set_once`` never overwrites one, so live values stand and
the rest is what the history, in time order, left.

The rules played: every distinct id has a person from its first event; a
merge (``$identify`` with ``$anon_distinct_id``, ``$create_alias`` with
``alias``) joins the merged id's person into the target's, the target's
values winning, and marks it identified; PostHog refuses a merge on a
placeholder id, and one whose merged-in person is already identified (both
named in the rejects file); ``$set_once`` then ``$set`` apply to the event's
person.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from operator import itemgetter
from typing import Any

from analytics_posthog._backfill.days import PERSONS, DayWriter, days, merge, read_day
from analytics_posthog.mapping import event_uuid, is_placeholder_id

#: Where the scan writes its records, beside the day files.
RECORDS = ".persons-records"
#: Records are read once, soon after: fast compression is enough.
RECORDS_LEVEL = 1
#: Ids remembered as having a person, at most (about 100 bytes each).
KNOWN_IDS = 200_000
#: Counted with the event types in the summary.
PERSON_TYPE = "persons"

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class RecordWriter:
    """The scan's person records, bucketed by day like the events."""

    def __init__(self, directory: str) -> None:
        path = os.path.join(directory, RECORDS)
        os.makedirs(path, exist_ok=True)
        self._days = DayWriter(path, RECORDS_LEVEL)

    def add(self, day: str, record: list[Any], name: str, number: int, line: bytes) -> None:
        """A merge also keeps where it came from, for naming a refusal."""
        if len(record) > 2 and record[2] is not None:
            record = [*record, name, number, line.decode("utf-8", "replace").rstrip("\r\n")]
        self._days.add(day, _COMPACT.encode(record).encode())

    def close(self) -> None:
        self._days.close()


def merge_records(parts: Sequence[str], directory: str) -> None:
    """Join the records of ``--jobs`` parts, in part order."""
    target = os.path.join(directory, RECORDS)
    os.makedirs(target, exist_ok=True)
    merge([os.path.join(part, RECORDS) for part in parts], target)


class People:
    """PostHog's person rules over SQLite: ``ids`` gives each distinct id its
    person, ``people`` says whether one is identified and which id to address
    it by, ``props`` holds its properties (as JSON)."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.executescript(
            """
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            PRAGMA cache_size = -65536;
            CREATE TABLE ids (id TEXT PRIMARY KEY, person INTEGER NOT NULL) WITHOUT ROWID;
            CREATE INDEX ids_person ON ids (person);
            CREATE TABLE people (
                person INTEGER PRIMARY KEY,
                identified INTEGER NOT NULL,
                name TEXT NOT NULL,
                since INTEGER NOT NULL,
                updated INTEGER
            );
            CREATE TABLE props (
                person INTEGER NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                PRIMARY KEY (person, key)
            ) WITHOUT ROWID;
            BEGIN;
            """
        )
        self._next = 1
        self._known: set[str] = set()

    def _lookup(self, distinct_id: str) -> int | None:
        row = self.db.execute("SELECT person FROM ids WHERE id = ?", (distinct_id,)).fetchone()
        return None if row is None else row[0]

    def _person(self, distinct_id: str, moment: int) -> int:
        person = self._lookup(distinct_id)
        if person is None:
            person = self._next
            self._next += 1
            self.db.execute("INSERT INTO ids VALUES (?, ?)", (distinct_id, person))
            self.db.execute(
                "INSERT INTO people VALUES (?, 0, ?, ?, NULL)", (person, distinct_id, moment)
            )
        return person

    def seen(self, moment: int, distinct_id: str) -> None:
        # Most events come from ids already known: a bounded set of them
        # (an id never stops having a person) spares a query each.
        if distinct_id in self._known:
            return
        self._person(distinct_id, moment)
        if len(self._known) >= KNOWN_IDS:
            self._known.clear()
        self._known.add(distinct_id)

    def apply(
        self,
        moment: int,
        distinct_id: str,
        merged: str | None,
        set_: dict[str, Any] | None,
        set_once: dict[str, Any] | None,
    ) -> str | None:
        """Play one record; why PostHog refuses its merge, if it does (a
        merge on a placeholder id is skipped here, and named by the scan)."""
        refused = None
        merges = (
            merged is not None
            and merged != distinct_id
            and not (is_placeholder_id(distinct_id) or is_placeholder_id(merged))
        )
        if merges:
            refused = self._merge(moment, distinct_id, merged)
        person = self._person(distinct_id, moment)
        if merges and refused is None:
            self.db.execute(
                "UPDATE people SET identified = 1, name = ? WHERE person = ?",
                (distinct_id, person),
            )
        if set_once or set_:
            execute = self.db.executemany
            if set_once:
                execute(
                    "INSERT OR IGNORE INTO props VALUES (?, ?, ?)",
                    [(person, key, _COMPACT.encode(value)) for key, value in set_once.items()],
                )
            if set_:
                execute(
                    "INSERT OR REPLACE INTO props VALUES (?, ?, ?)",
                    [(person, key, _COMPACT.encode(value)) for key, value in set_.items()],
                )
            self.db.execute("UPDATE people SET updated = ? WHERE person = ?", (moment, person))
        return refused

    def _merge(self, moment: int, target_id: str, merged_id: str) -> str | None:
        target, source = self._lookup(target_id), self._lookup(merged_id)
        if source is None:
            person = target if target is not None else self._person(target_id, moment)
            self.db.execute("INSERT INTO ids VALUES (?, ?)", (merged_id, person))
        elif target is None:
            self.db.execute("INSERT INTO ids VALUES (?, ?)", (target_id, source))
        elif source != target:
            row = self.db.execute(
                "SELECT identified, name FROM people WHERE person = ?", (source,)
            ).fetchone()
            if row[0]:
                return (
                    "PostHog will not merge persons on it (the event itself goes through): "
                    "%r already belongs to a person identified as %r earlier in the archive"
                    % (merged_id, row[1])
                )
            execute = self.db.execute
            execute(
                "INSERT OR IGNORE INTO props SELECT ?, key, value FROM props WHERE person = ?",
                (target, source),
            )
            execute("DELETE FROM props WHERE person = ?", (source,))
            execute("UPDATE ids SET person = ? WHERE person = ?", (target, source))
            execute(
                "UPDATE people SET updated = max(coalesce(updated, 0), coalesce("
                "(SELECT updated FROM people WHERE person = ?), 0)) WHERE person = ?",
                (source, target),
            )
            execute("DELETE FROM people WHERE person = ?", (source,))
        return None

    def results(self) -> Any:
        """``(name, last update in microseconds, {key: value})`` per person with properties."""
        rows = self.db.execute(
            "SELECT people.person, name, coalesce(updated, since), key, value FROM props "
            "JOIN people USING (person) ORDER BY people.person, key"
        )
        current, name, updated, values = None, "", 0, {}
        for person, row_name, row_updated, key, value in rows:
            if person != current:
                if current is not None:
                    yield name, updated, values
                current, name, updated, values = person, row_name, row_updated, {}
            values[key] = json.loads(value)
        if current is not None:
            yield name, updated, values

    def close(self) -> None:
        self.db.close()


@dataclass
class Settled:
    persons: int = 0
    refused: int = 0
    records: int = 0
    seconds: float = 0.0
    #: The records and the database at their largest, for sizing a big run.
    disk_bytes: int = 0


def settle(directory: str, level: int, lib: dict[str, str], rejects: Any) -> Settled:
    """Play the scan's records in time order and write the persons' events
    into the ``PERSONS`` day file; the records go."""
    started = time.monotonic()
    records = os.path.join(directory, RECORDS)
    path = os.path.join(directory, ".persons.sqlite")
    people = People(path)
    settled = Settled()
    try:
        for day in days(records):
            # A day's records fit in memory; sorting them (stably: equal times
            # keep input order) puts the whole archive in time order.
            played = sorted(
                (json.loads(line) for line in read_day(records, day)), key=itemgetter(0)
            )
            settled.records += len(played)
            for record in played:
                if len(record) == 2:
                    people.seen(*record)
                    continue
                reason = people.apply(*record[:5])
                if reason is not None:
                    settled.refused += 1
                    name, number, raw = record[5:8]
                    rejects.note(name, number, raw.encode(), reason)
        writer = DayWriter(directory, level)
        for name, updated, values in people.results():
            writer.add(PERSONS, _COMPACT.encode(person_event(name, updated, values, lib)).encode())
            settled.persons += 1
        writer.close()
        settled.seconds = time.monotonic() - started
        settled.disk_bytes = os.path.getsize(path) + sum(
            os.path.getsize(os.path.join(records, name)) for name in os.listdir(records)
        )
        return settled
    finally:
        people.close()
        os.remove(path)
        shutil.rmtree(records, ignore_errors=True)


def person_event(name: str, updated: int, values: dict[str, Any], lib: dict[str, str]) -> dict:
    """The event that gives a person what the history left it: ``$set_once``,
    so any value a live call set stands; its uuid comes from what it carries,
    so a re-run over the same archive is one event to PostHog."""
    digest = hashlib.sha256(_COMPACT.encode([name, values]).encode()).hexdigest()
    moment = _EPOCH + timedelta(microseconds=updated)
    return {
        "event": "$set",
        "distinct_id": name,
        "properties": {"$set_once": values, **lib, "$geoip_disable": True},
        "timestamp": moment.isoformat(),
        "uuid": event_uuid("analytics-posthog-persons:" + digest),
    }
