"""messageIds: uuid4 strings, never repeated across threads, refills or forks."""

from __future__ import annotations

import os
import threading
import uuid

from analytics_posthog._message.ids import IDS_PER_READ, new_message_id


def test_ids_are_uuid4_strings_like_segments():
    values = [new_message_id() for _ in range(3 * IDS_PER_READ)]
    for value in values:
        parsed = uuid.UUID(value)
        assert str(parsed) == value
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    # Every bit uuid4 leaves random stays random: the variant digit takes all
    # four of its values, and every other hex digit all sixteen of its own.
    assert {value[19] for value in values} == set("89ab")
    for position in (0, 7, 9, 15, 20, 35):
        assert {value[position] for value in values} == set("0123456789abcdef")


def test_ids_never_repeat_across_refills_and_threads():
    seen = []

    def take():
        seen.extend(new_message_id() for _ in range(5 * IDS_PER_READ))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8 * 5 * IDS_PER_READ
    assert len(set(seen)) == len(seen)


def test_a_forked_child_never_hands_out_its_parents_ids():
    new_message_id()  # the parent's pool is started, with ids left in it
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        with os.fdopen(write_end, "w") as out:
            out.write("\n".join(new_message_id() for _ in range(100)))
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as inp:
        child = set(inp.read().split())
    os.waitpid(pid, 0)
    parent = {new_message_id() for _ in range(100)}
    assert len(child) == 100
    assert not child & parent
