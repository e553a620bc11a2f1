"""The rejects file: one JSON object per rejected line or skipped file.

Each record has ``file``, ``line`` (null for a whole file), ``reason`` and,
for a line, ``raw`` (the line as read), so the rejects can be fixed and fed
back. A line that was sent but will not do all it asked (an ``identify``
PostHog will not merge on) is there too, with ``"sent": true``. A run rewrites the file: every run reads the whole input again, so it
finds the same rejects, and appending would count them twice.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from typing import IO, TextIO

#: Rejected lines named on stderr per run (or per --jobs part); all are in the file.
SHOWN = 20


class Rejects:
    def __init__(self, path: str, err: TextIO) -> None:
        self.path = path
        self.err = err
        self.lines = 0
        self.files = 0
        self.notes = 0
        self._file: IO[str] | None = None

    @property
    def written(self) -> bool:
        return self._file is not None

    def line(self, name: str, number: int, raw: bytes, reason: str) -> None:
        self.lines += 1
        if self.lines <= SHOWN:
            self.err.write("%s:%d: rejected: %s\n" % (name, number, reason))
        elif self.lines == SHOWN + 1:
            self.err.write("(further rejected lines are only in %s)\n" % self.path)
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        self._write({"file": name, "line": number, "reason": reason, "raw": text})

    def note(self, name: str, number: int, raw: bytes, reason: str) -> None:
        """A line sent all the same, whose ``reason`` the team should know;
        not a reject (the exit code stays)."""
        self.notes += 1
        if self.notes <= SHOWN:
            self.err.write("%s:%d: %s\n" % (name, number, reason))
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        self._write({"file": name, "line": number, "reason": reason, "raw": text, "sent": True})

    def file(self, name: str, reason: str) -> None:
        self.files += 1
        self.err.write("%s: skipped: %s\n" % (name, reason))
        self._write({"file": name, "line": None, "reason": reason})

    def _write(self, record: dict) -> None:
        if self._file is None:
            self._file = open(self.path, "w", encoding="utf-8")
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")

    def append_parts(self, parts: Sequence[str]) -> None:
        """Take in the rejects files that --jobs workers wrote, in order."""
        for part in parts:
            if os.path.exists(part) and os.path.getsize(part):
                if self._file is None:
                    self._file = open(self.path, "w", encoding="utf-8")
                with open(part, encoding="utf-8") as f:
                    shutil.copyfileobj(f, self._file)

    def close(self, complete: bool) -> None:
        """``complete``: the whole input was read, so a rejects file left by an
        earlier run that this one did not rewrite is out of date."""
        if self._file is not None:
            self._file.close()
        elif complete and os.path.exists(self.path):
            os.remove(self.path)
