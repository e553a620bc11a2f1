"""``replay``: the archive read into day files, then sent to PostHog oldest day first.

"Sent" means accepted by PostHog: events are counted, and the checkpoint
moved past them, only once posthog has flushed them without an error.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from typing import TextIO

from analytics_posthog._backfill import checkpoint as checkpoints
from analytics_posthog._backfill.checkpoint import CheckpointError, State
from analytics_posthog._backfill.days import PERSONS, days, read_day
from analytics_posthog._backfill.lines import HISTORICAL_AFTER, TYPE_OF_EVENT
from analytics_posthog._backfill.persons import PERSON_TYPE
from analytics_posthog._backfill.progress import Progress
from analytics_posthog._backfill.rejects import Rejects
from analytics_posthog._backfill.run import (
    EXIT_USAGE,
    Options,
    exit_code,
    fingerprint,
    list_input,
    own_file,
    read_input,
    summary_lines,
)
from analytics_posthog._backfill.scan import ScanStats
from analytics_posthog._backfill.sending import (
    CHECKPOINT_EVERY_EVENTS,
    CHECKPOINT_EVERY_SECONDS,
    PostHogSink,
    Throttle,
)
from analytics_posthog._backfill.sources import (
    CHECKPOINT_SUFFIX,
    REJECTS_SUFFIX,
    STDIN,
    UsageError,
)

#: The spool is only read back once: fast compression is enough.
SPOOL_LEVEL = 1


class Replay:
    def __init__(self, options: Options, out: TextIO, err: TextIO) -> None:
        self.options = options
        self.out = out
        self.err = err
        self.started = time.monotonic()
        self.progress = Progress(err, "replay")
        self.rejects = Rejects(options.rejects or own_file(options, REJECTS_SUFFIX), err)
        self.checkpoint_path = options.checkpoint or own_file(options, CHECKPOINT_SUFFIX)
        self.sent: Counter = Counter()
        #: What earlier runs recorded as sent, for the checkpoint's running total.
        self.earlier: Counter = Counter()
        self.resumed = 0
        self.error: Exception | None = None

    def run(self) -> int:
        try:
            listed = list_input(self.options)
            keep = not self.options.dry_run and STDIN not in self.options.paths
            inputs = fingerprint(listed, self.options)
            state = self._state(inputs) if keep else None
        except (UsageError, CheckpointError) as error:
            self.err.write("replay: %s\n" % error)
            return EXIT_USAGE
        if state is not None and state.complete:
            return self._already_done(state)
        self.earlier = Counter(state.sent if state else {})
        now = (
            datetime.fromisoformat(state.cutoff) + HISTORICAL_AFTER
            if state
            else datetime.now(timezone.utc)
        )
        if state is None and keep:
            state = State(inputs, (now - HISTORICAL_AFTER).isoformat())
        interrupted = False
        stats = ScanStats()
        complete = False
        with tempfile.TemporaryDirectory(prefix="analytics-posthog-replay-") as spool:
            try:
                stats = read_input(
                    self.options, listed, spool, now, SPOOL_LEVEL, self.rejects, self.progress
                )
                self.rejects.close(complete=True)
                if self.options.dry_run:
                    complete = self._print(spool, stats)
                else:
                    complete = self._send(spool, state, sum(stats.events.values()))
            except KeyboardInterrupt:
                interrupted = True
            finally:
                self.rejects.close(complete=False)
                self.progress.end()
        code = exit_code(
            bool(self.rejects.lines or self.rejects.files), interrupted, self.error is not None
        )
        if state is not None:
            self._record(state, stats, complete, code)
        self._summary(stats, state, interrupted)
        return code

    def _state(self, inputs: str) -> State | None:
        if self.options.restart:
            return None
        state = checkpoints.load(self.checkpoint_path)
        if state is not None and state.inputs != inputs:
            raise CheckpointError(
                "checkpoint %s belongs to other input or filters (files added, changed or removed, or "
                "other --types/--since/--until). Run again with --restart to send everything from the start "
                "(safe: PostHog keeps one event per uuid), or give this run its own --checkpoint FILE."
                % self.checkpoint_path
            )
        return state

    def _already_done(self, state: State) -> int:
        rejected = "%d lines and %d files rejected" % (state.rejected_lines, state.rejected_files)
        if state.rejects and (state.rejected_lines or state.rejected_files):
            rejected += " (see %s)" % state.rejects
        self.err.write(
            "replay: nothing to do: checkpoint %s says an earlier run over this input finished: "
            "%d lines read, %d events sent, %s; exit code %d as then. "
            "--restart sends everything again.\n"
            % (self.checkpoint_path, state.lines, state.sent_total, rejected, state.exit_code)
        )
        return state.exit_code

    def _print(self, spool: str, stats: ScanStats) -> bool:
        write = self.out.write
        for day in days(spool):
            for line in read_day(spool, day):
                write(line.decode())
        self.sent.update(stats.events)
        return True

    def _send(self, spool: str, state: State | None, total: int) -> bool:
        """True when every event went out; False when stopped (limit, error)."""
        options = self.options
        sink = PostHogSink(options.api_key or "", options.host or "")
        throttle = Throttle(options.rate)
        started = time.monotonic()
        pending: list[str] = []
        last = time.monotonic()
        day, done = "", 0
        try:
            for day in days(spool):
                skip = 0
                if state is not None and state.day:
                    if day < state.day:
                        self.resumed += sum(1 for _ in read_day(spool, day))
                        continue
                    skip = state.done if day == state.day else 0
                done = 0
                for index, line in enumerate(read_day(spool, day), 1):
                    if index <= skip:
                        self.resumed += 1
                        done = index
                        continue
                    if (
                        options.limit is not None
                        and self.sent_count + len(pending) >= options.limit
                    ):
                        self._commit(sink, pending, state, day, done)
                        return False
                    event = json.loads(line)
                    throttle.wait()
                    if not sink.send(event):
                        self.error = RuntimeError("posthog's queue refused an event")
                        return False
                    pending.append(
                        PERSON_TYPE
                        if day == PERSONS
                        else TYPE_OF_EVENT.get(event["event"], "track")
                    )
                    done = index
                    if (
                        len(pending) >= CHECKPOINT_EVERY_EVENTS
                        or time.monotonic() - last >= CHECKPOINT_EVERY_SECONDS
                    ):
                        if not self._commit(sink, pending, state, day, done):
                            return False
                        last = time.monotonic()
                    sent = self.sent_count + len(pending)
                    self.progress.show(
                        "sent", sent, "events", started, (sent + self.resumed) / max(total, 1)
                    )
                if not self._commit(sink, pending, state, day, done):
                    return False
            return True
        except KeyboardInterrupt:
            # What was handed over is flushed and recorded, so a re-run goes on after it.
            self._commit(sink, pending, state, day, done)
            raise
        finally:
            sink.close()

    @property
    def sent_count(self) -> int:
        return sum(self.sent.values())

    def _commit(
        self, sink: PostHogSink, pending: list[str], state: State | None, day: str, done: int
    ) -> bool:
        """Flush posthog, then count and record what it accepted; False (and
        nothing recorded) when it did not accept a batch."""
        error = sink.flush()
        if error is not None:
            self.error = error
            return False
        self.sent.update(pending)
        pending.clear()
        if state is not None:
            state.day, state.done = day, done
            state.sent = dict(self.earlier + self.sent)
            checkpoints.save(self.checkpoint_path, state)
        return True

    def _record(self, state: State, stats: ScanStats, complete: bool, code: int) -> None:
        if not stats.lines and not complete:
            return
        state.lines = stats.lines
        state.rejected_lines, state.rejected_files = self.rejects.lines, self.rejects.files
        state.rejects = self.rejects.path if self.rejects.written else None
        state.complete = complete and self.error is None
        state.exit_code = code
        state.sent = dict(self.earlier + self.sent)
        checkpoints.save(self.checkpoint_path, state)

    def _summary(self, stats: ScanStats, state: State | None, interrupted: bool) -> None:
        verb = "would send" if self.options.dry_run else "sent"
        lines = summary_lines(
            "replay",
            verb,
            stats,
            self.sent,
            time.monotonic() - self.started,
            self.rejects,
            interrupted,
        )
        if self.resumed:
            lines.append(
                "  resumed: %d events already sent by an earlier run were skipped (checkpoint %s)"
                % (self.resumed, self.checkpoint_path)
            )
        if state is not None and not state.complete and self.error is None and not interrupted:
            lines.append(
                "  stopped at --limit: the same command without --limit goes on from checkpoint %s"
                % self.checkpoint_path
            )
        if self.error is not None:
            lines.append(
                "  STOPPED: PostHog did not accept a batch (%s). Checkpoint %s holds the last accepted "
                "event; fix the cause and run the same command again to go on."
                % (self.error, self.checkpoint_path)
            )
        self.err.write("\n".join(lines) + "\n")
