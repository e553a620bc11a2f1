"""What a run shows while it works: a line redrawn in place on a terminal,
a plain line every ``PLAIN_EVERY_SECONDS`` otherwise (logs of a batch job)."""

from __future__ import annotations

import time
from typing import TextIO

PLAIN_EVERY_SECONDS = 10.0
TTY_EVERY_SECONDS = 0.2


class Progress:
    def __init__(self, err: TextIO, command: str) -> None:
        self.err = err
        self.command = command
        self.tty = err.isatty()
        self.last = 0.0
        self.drawn = False

    def show(
        self,
        phase: str,
        done: int,
        unit: str,
        started: float,
        fraction: float | None,
        force: bool = False,
    ) -> None:
        """``done`` units in ``phase`` since ``started``; ``fraction`` of the
        phase finished, when known, gives a percentage and an ETA."""
        now = time.monotonic()
        if not force and now - self.last < (TTY_EVERY_SECONDS if self.tty else PLAIN_EVERY_SECONDS):
            return
        self.last = now
        elapsed = max(now - started, 1e-9)
        text = "%s: %s %d %s, %.0f %s/s" % (self.command, phase, done, unit, done / elapsed, unit)
        if fraction:
            fraction = min(fraction, 1.0)
            text += ", %d%%, ETA %ds" % (fraction * 100, elapsed / fraction - elapsed)
        if self.tty:
            self.err.write("\r\x1b[K" + text)
            self.drawn = True
        else:
            self.err.write(text + "\n")
        self.err.flush()

    def end(self) -> None:
        """Leave the redrawn line before the summary follows."""
        if self.drawn:
            self.err.write("\n")
            self.drawn = False
