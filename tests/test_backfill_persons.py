"""A backfill after live calls leaves every person as time would have them.

The archive's traits change over time, its lines are out of time order, and
live calls reach the capture endpoint first, as in a migration that runs
dual-write before the backfill. PostHog's documented rules (``person_rules``)
applied to what arrived, in arrival order, must give the properties they give
to every event in timestamp order.
"""

from __future__ import annotations

import gzip
import json
import os

import pytest
from person_rules import Persons
from test_backfill import rejects_of
from test_replay import run, write

from analytics_posthog import Client
from analytics_posthog import _backfill as backfill
from analytics_posthog.mapping import parse_timestamp, to_posthog


def at(day, **fields):
    base = {"messageId": "h-%d-%s" % (day, fields.get("userId") or fields.get("anonymousId"))}
    return {**base, "timestamp": "2024-03-%02dT10:00:00.000Z" % day, **fields}


def identify(day, user=None, traits=None, anon=None):
    fields = {"type": "identify", "traits": traits or {}}
    if user:
        fields["userId"] = user
    if anon:
        fields["anonymousId"] = anon
    return at(day, **fields)


#: In two files, each out of time order, so only sorting puts them right.
FIRST = [
    identify(20, "u1", {"plan": "pro", "company": "Acme"}),
    at(
        25, type="track", userId="u1", event="Upgraded", properties={"$set_once": {"first": "late"}}
    ),
    at(1, type="page", anonymousId="a1", context={"traits": {"referrer": "ads", "plan": "trial"}}),
    identify(15, "u2", {"plan": "growth"}),
]
SECOND = [
    identify(2, "u1", {"plan": "free", "company": "Old"}, anon="a1"),
    identify(10, "u1", {"plan": "starter", "seats": 3}),
    at(
        3, type="track", userId="u1", event="Signed up", properties={"$set_once": {"first": "free"}}
    ),
    identify(5, "u2", {"plan": "basic", "region": "eu"}),
    identify(4, traits={"color": "red", "size": "m"}, anon="a3"),
    at(6, type="alias", userId="u3", previousId="a3"),
    identify(8, "u3", {"color": "blue"}),
    at(11, type="track", userId="u4", event="Visited"),
    # a1 is u1's by now: PostHog refuses to merge an identified person in
    identify(12, "u4", {"plan": "other"}, anon="a1"),
    # what a dual-write leaves on Segment's copy of a call it delivered itself
    at(28, type="track", userId="u1", event="Live", integrations={"PostHog": False}),
]
HISTORY = FIRST + SECOND


def live_calls(server):
    """Dual-write's calls, delivered before the backfill runs."""
    client = Client(posthog_api_key="phc_live", posthog_host=server.url, sync_mode=True)
    client.identify("u1", {"plan": "team"})
    client.identify("u3", {"size": "l"})
    client.shutdown()
    return server.wait_for_events(2)


def in_time_order(live):
    """Every event as it was made, with its person properties, by timestamp."""
    history = []
    for message in HISTORY:
        event = to_posthog(message)
        if event is not None:
            history.append(
                {
                    "event": event.event,
                    "distinct_id": event.distinct_id,
                    "properties": event.properties,
                    "timestamp": event.timestamp.isoformat(),
                }
            )
    return history, sorted(live + history, key=lambda e: parse_timestamp(e["timestamp"]))


def archive(tmp_path):
    return [write(tmp_path / "a.jsonl", FIRST), write(tmp_path / "b.jsonl", SECOND)]


def assert_as_time_would_have_them(live, arrived):
    history, ordered = in_time_order(live)
    truth, result = Persons(ordered), Persons(arrived)
    ids = {e["distinct_id"] for e in ordered} | {"a1", "a3"}
    assert {i: result.of(i) for i in ids} == {i: truth.of(i) for i in ids}
    assert truth.of("u1") == {
        "referrer": "ads",
        "plan": "team",
        "company": "Acme",
        "seats": 3,
        "first": "free",
    }
    assert truth.of("u3") == {"color": "blue", "size": "l"}
    assert truth.of("u2") == {"plan": "growth", "region": "eu"}
    assert truth.of("u4") == {"plan": "other"} and truth.refused == ["a1"]
    # the check can fail: history sent with its $set after the live calls
    # puts u1 back on an old plan
    naive = Persons(live + sorted(history, key=lambda e: parse_timestamp(e["timestamp"])))
    assert naive.of("u1")["plan"] == "pro" != truth.of("u1")["plan"]


def test_replay_after_live_calls_leaves_persons_as_time_would(capture_server, tmp_path):
    live = live_calls(capture_server)
    paths = archive(tmp_path)
    code, _, err = run(capture_server, paths)
    assert code == 0, err
    arrived = capture_server.wait_for_events(2 + len(HISTORY) - 1 + 4)
    history, persons = arrived[2:-4], arrived[-4:]
    assert not [e for e in history if {"$set", "$set_once"} & set(e["properties"])]
    assert {e["event"] for e in persons} == {"$set"}
    assert all("$set" not in e["properties"] for e in persons)
    assert_as_time_would_have_them(live, arrived)
    assert "persons 4" in err
    assert "1 identify/alias calls PostHog will not merge persons on" in err
    notes = rejects_of(paths[0] + ".rejects.jsonl")
    assert [(os.path.basename(n["file"]), n["line"]) for n in notes] == [("b.jsonl", 9)]
    assert "'a1' already belongs to a person identified as 'u1'" in notes[0]["reason"]
    assert "dual-write began by 2024-03-28T10:00:00+00:00 (%s:10" % paths[1] in err
    assert "--until 2024-03-28T10:00:00+00:00" in err


@pytest.mark.parametrize("jobs", [1, 2])
def test_export_follows_the_same_rule(capture_server, tmp_path, jobs):
    live = live_calls(capture_server)
    out = tmp_path / "out"
    options = backfill.Options(paths=archive(tmp_path), out=str(out), jobs=jobs)
    assert backfill.export(options, open(os.devnull, "w")) == 0
    names = sorted(os.listdir(out))
    assert names[-1] == "persons.jsonl.gz" and names[0] == "2024-03-01.jsonl.gz"
    exported = [json.loads(line) for name in names for line in gzip.open(out / name)]
    assert_as_time_would_have_them(live, live + exported)
