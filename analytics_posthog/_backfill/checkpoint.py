"""Where a replay stopped, so the same command run again goes on from there.

Replay sends day by day, oldest first, so a position is a day and how many of
that day's events PostHog accepted; every earlier day is done. The position
is only meaningful for the same input and filters, so the checkpoint keeps a
fingerprint of both (and the 48-hour cutoff of the first run, which decides
which recent events were rejected) and refuses to resume anything else.
Written atomically (temporary file + rename): a replay killed at any moment
leaves either the old checkpoint or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any

VERSION = 1


class CheckpointError(Exception):
    """The checkpoint cannot be used; the message says what to do."""


@dataclass
class State:
    inputs: str
    cutoff: str
    day: str = ""
    done: int = 0
    complete: bool = False
    sent: dict[str, int] = field(default_factory=dict)
    #: From the run that read the input: its lines, rejects, and exit code.
    lines: int = 0
    rejected_lines: int = 0
    rejected_files: int = 0
    rejects: str | None = None
    exit_code: int = 0

    @property
    def sent_total(self) -> int:
        return sum(self.sent.values())


def load(path: str) -> State | None:
    """The saved state, ``None`` if there is none yet, ``CheckpointError`` if it is damaged."""
    try:
        with open(path, encoding="utf-8") as f:
            data: Any = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise CheckpointError(_unusable(path, "cannot be read (%s)" % error)) from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise CheckpointError(_unusable(path, "is not a replay checkpoint of this version"))
    data.pop("version")
    try:
        state = State(**data)
    except TypeError:
        raise CheckpointError(_unusable(path, "is missing fields or has unknown ones")) from None
    if not isinstance(state.sent, dict) or not isinstance(state.done, int):
        raise CheckpointError(_unusable(path, "has fields of the wrong type"))
    return state


def _unusable(path: str, what: str) -> str:
    return (
        "checkpoint %s %s. Run again with --restart to send everything from the start "
        "(safe: PostHog keeps one event per uuid), or move the file away." % (path, what)
    )


def save(path: str, state: State) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".replay-checkpoint-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"version": VERSION, **asdict(state)}, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
