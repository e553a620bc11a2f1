"""``analytics-posthog replay``: backfill PostHog with Segment's history.

Reads Segment messages in Segment's wire format (one camelCase JSON object
per line, plain or gzipped, e.g. Segment's S3/GCS archive exports) and sends
each through the library's own mapping and PostHog leg, so a backfilled event
is identical to one the library sends live: same event name, properties,
timestamp and uuid. The posthog client runs in historical-migration mode.

Re-runs are safe because every event's uuid comes from its ``messageId``;
for the same reason, shards (files) can be replayed on many machines at once
with no coordination. A message without a ``messageId`` is rejected rather
than given a uuid derived from its line: a reformatted line would then
become a different event, and a live copy of it could never match.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Sequence, TextIO, Tuple, TypeVar, cast

import posthog

from analytics_posthog.mapping import DEFAULT_GROUP_TYPE, PostHogEvent, posthog_enabled, to_posthog
from analytics_posthog.message import Message
from analytics_posthog.posthog_leg import PostHogLeg

TYPES = ("track", "identify", "page", "screen", "group", "alias")
#: Fields a type cannot be mapped without (beyond a userId or anonymousId).
REQUIRED = {"track": ("event",), "group": ("groupId",), "alias": ("userId", "previousId")}
STDIN = "-"
GZIP_MAGIC = b"\x1f\x8b"
REJECTS_SUFFIX = ".rejects.jsonl"
CHECKPOINT_SUFFIX = ".replay-checkpoint.json"
STDIN_CHECKPOINT = "replay-checkpoint.json"
STDIN_REJECTS = "stdin" + REJECTS_SUFFIX

#: A checkpoint is written after this many events were handed to PostHog, or
#: this many seconds, whichever comes first: each one costs a full flush.
CHECKPOINT_EVERY_EVENTS = 2000
CHECKPOINT_EVERY_SECONDS = 5.0
PROGRESS_EVERY_SECONDS = 10.0
#: Events per request: bigger batches are fewer round trips; posthog still
#: caps a request at 5 MB.
BATCH_SIZE = 500

EXIT_OK = 0
EXIT_REJECTS = 1
EXIT_USAGE = 2
EXIT_DELIVERY = 3
EXIT_INTERRUPTED = 130

#: posthog adds the replaying machine's runtime and OS to every event; on a
#: historical event they describe the wrong machine, so they are removed
#: unless the message's own context gave the OS (kept as ``segment_os``).
MACHINE_PROPERTIES = ("$python_runtime", "$python_version", "$os_distro")
MACHINE_OS_PROPERTIES = ("$os", "$os_version")

_FRACTION = re.compile(r"(\.\d+)")
T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    paths: Sequence[str]
    api_key: Optional[str] = None
    host: Optional[str] = None
    group_type: str = DEFAULT_GROUP_TYPE
    dry_run: bool = False
    since: Optional[datetime] = None
    until: Optional[datetime] = None
    types: Sequence[str] = TYPES
    rate: Optional[float] = None
    checkpoint: Optional[str] = None
    limit: Optional[int] = None


class Rejected(Exception):
    """A line that cannot be replayed; the message says why, in plain words."""


@dataclass(frozen=True)
class Source:
    """One file to read (or stdin), and where its rejects go."""

    path: str
    rejects: str

    @property
    def is_stdin(self) -> bool:
        return self.path == STDIN

    @property
    def key(self) -> str:
        """The checkpoint's name for this file: stable whatever the cwd."""
        return os.path.abspath(self.path)


@dataclass
class Stats:
    lines: int = 0
    sent: Counter = field(default_factory=Counter)
    rejected: int = 0
    filtered: int = 0
    excluded: int = 0
    resumed: int = 0
    bytes_done: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def sent_total(self) -> int:
        return sum(self.sent.values())


# -- arguments -------------------------------------------------------------


def parse_moment(value: str) -> datetime:
    """An ISO date or datetime for --since/--until; no zone means UTC."""
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), timezone.utc)
        return parse_timestamp(value)
    except ValueError:
        raise ValueError("not an ISO date or datetime: %r (e.g. 2024-05-17 or 2024-05-17T09:30:00Z)" % value) from None


def parse_types(value: str) -> Tuple[str, ...]:
    types = tuple(t.strip().lower() for t in value.split(",") if t.strip())
    unknown = [t for t in types if t not in TYPES]
    if unknown or not types:
        raise ValueError("unknown type %s: choose from %s" % (", ".join(unknown) or "(none)", ",".join(TYPES)))
    return types


def parse_timestamp(value: Any) -> datetime:
    """Segment's timestamps as an aware UTC datetime.

    Python 3.10's ``fromisoformat`` takes neither the ``Z`` suffix nor other
    than 3 or 6 fraction digits, both common in Segment exports; a timestamp
    with no zone is UTC, as Segment stores them.
    """
    if not isinstance(value, str):
        raise ValueError("not a string")
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    text = _FRACTION.sub(lambda m: (m.group(1) + "000000")[:7], text, count=1)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


# -- inputs ----------------------------------------------------------------


def sources(paths: Sequence[str]) -> Iterator[Source]:
    """Files in argument order; a directory is walked recursively in name
    order (Segment's archives are nested date folders, so that is time order),
    skipping hidden files and this tool's own rejects and checkpoint files."""
    for path in paths:
        if path == STDIN:
            yield Source(STDIN, STDIN_REJECTS)
        elif os.path.isdir(path):
            rejects = path.rstrip("/\\") + REJECTS_SUFFIX
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.startswith(".") or name.endswith(REJECTS_SUFFIX) or name.endswith(CHECKPOINT_SUFFIX):
                        continue
                    yield Source(os.path.join(root, name), rejects)
        else:
            yield Source(path, path + REJECTS_SUFFIX)


def total_bytes(paths: Sequence[str]) -> Optional[int]:
    """Bytes on disk to read (compressed size for gzip), for the ETA; unknown with stdin."""
    if STDIN in paths:
        return None
    return sum(os.path.getsize(s.path) for s in sources(paths))


def read_lines(source: Source) -> Iterator[Tuple[int, bytes, int]]:
    """(line number, line, bytes of the file read so far); gzip is detected by
    its magic bytes, so ``.json`` files that are really gzip work too."""
    raw: IO[bytes] = sys.stdin.buffer if source.is_stdin else open(source.path, "rb")
    try:
        buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[arg-type,type-var]
        stream = cast(IO[bytes], gzip.GzipFile(fileobj=buffered) if buffered.peek(2)[:2] == GZIP_MAGIC else buffered)
        position = (lambda: buffered.tell()) if not source.is_stdin else (lambda: 0)
        for number, line in enumerate(stream, 1):
            yield number, line, position()
    finally:
        if not source.is_stdin:
            raw.close()


# -- one line --------------------------------------------------------------


def parse_line(line: bytes) -> Message:
    """A line as a replayable Segment message, or ``Rejected`` saying why.

    The timestamp is rewritten in the form the mapping reads, same instant.
    """
    try:
        msg = json.loads(line)
    except ValueError as error:
        raise Rejected("invalid JSON: %s" % error) from None
    if not isinstance(msg, dict):
        raise Rejected("not a JSON object")
    type_ = msg.get("type")
    if type_ not in TYPES:
        raise Rejected("unknown type %r (expected one of %s)" % (type_, ", ".join(TYPES)) if type_ else "no type")
    if not msg.get("messageId"):
        raise Rejected("no messageId (the event uuid is derived from it)")
    msg["messageId"] = str(msg["messageId"])
    if not msg.get("timestamp"):
        raise Rejected("no timestamp")
    try:
        msg["timestamp"] = parse_timestamp(msg["timestamp"]).isoformat()
    except ValueError:
        raise Rejected("bad timestamp %r" % (msg["timestamp"],)) from None
    if not (msg.get("userId") or msg.get("anonymousId")):
        raise Rejected("no userId or anonymousId")
    for name in REQUIRED.get(type_, ()):
        if msg.get(name) in (None, ""):
            raise Rejected("%s without %s" % (type_, name))
    return msg


def mapped(map_: Callable[[], T]) -> T:
    """Run the mapping (directly, or inside the leg's ``send``) with its
    failures as ``Rejected``: a field the type needs is missing or malformed."""
    try:
        return map_()
    except KeyError as error:
        raise Rejected("missing %s" % error) from None
    except (TypeError, ValueError, AttributeError) as error:
        raise Rejected("cannot map: %s" % error) from None


def event_json(event: PostHogEvent) -> str:
    data = dataclasses.asdict(event)
    data["timestamp"] = event.timestamp.isoformat()
    return json.dumps(data, ensure_ascii=False, sort_keys=True, default=str)


# -- checkpoint ------------------------------------------------------------


class Checkpoint:
    """Per file, the last line fully handed to PostHog and flushed.

    Written atomically (temporary file + rename) so a replay killed at any
    moment leaves either the old checkpoint or the new one.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.files: Dict[str, Dict[str, Any]] = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                self.files = json.load(f).get("files", {})

    def line(self, key: str) -> int:
        return int(self.files.get(key, {}).get("line", 0))

    def complete(self, key: str) -> bool:
        return bool(self.files.get(key, {}).get("complete"))

    def save(self, positions: Dict[str, Tuple[int, bool]]) -> None:
        for key, (line, complete) in positions.items():
            self.files[key] = {"line": line, "complete": complete}
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".replay-checkpoint-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"files": self.files}, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise


def default_checkpoint(paths: Sequence[str]) -> str:
    first = paths[0]
    if first == STDIN:
        return STDIN_CHECKPOINT
    return first.rstrip("/\\") + CHECKPOINT_SUFFIX


# -- delivery --------------------------------------------------------------


class PostHogSink:
    """Hands messages to posthog (historical mode) through the library's leg."""

    def __init__(self, api_key: str, host: str, group_type: str) -> None:
        self.errors: List[Exception] = []
        self.client = posthog.Client(
            api_key,
            host=host,
            historical_migration=True,
            flush_at=BATCH_SIZE,
            max_queue_size=CHECKPOINT_EVERY_EVENTS * 4,
            gzip=True,
            on_error=lambda error, batch: self.errors.append(error),
            before_send=_drop_machine_properties,
        )
        self.leg = PostHogLeg(self.client, group_type)

    def send(self, msg: Message) -> bool:
        return self.leg.send(msg)

    def flush(self) -> Optional[Exception]:
        """Wait until posthog delivered (or gave up on) everything handed to it;
        the first error since the last flush, if any."""
        self.client.flush(timeout_seconds=None)
        error = self.errors[0] if self.errors else None
        self.errors.clear()
        return error

    def close(self) -> None:
        self.client.shutdown()


def _drop_machine_properties(msg: Dict[str, Any]) -> Dict[str, Any]:
    properties = msg.get("properties") or {}
    for name in MACHINE_PROPERTIES:
        properties.pop(name, None)
    if "segment_os" not in properties:
        for name in MACHINE_OS_PROPERTIES:
            properties.pop(name, None)
    return msg


# -- progress --------------------------------------------------------------


class Progress:
    """A bar with events/s and ETA on a terminal; a plain line every
    PROGRESS_EVERY_SECONDS otherwise (logs of a long batch job)."""

    def __init__(self, err: TextIO, total: Optional[int]) -> None:
        self.err = err
        self.total = total
        self.tty = err.isatty()
        self.last = time.monotonic()

    def update(self, stats: Stats, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < (0.2 if self.tty else PROGRESS_EVERY_SECONDS):
            return
        self.last = now
        elapsed = max(now - stats.started, 1e-9)
        rate = stats.sent_total / elapsed
        fraction = min(stats.bytes_done / self.total, 1.0) if self.total else None
        eta = "%ds" % (elapsed / fraction - elapsed) if fraction else "?"
        counts = "%d lines, %d events, %d rejected, %.0f events/s" % (stats.lines, stats.sent_total, stats.rejected, rate)
        if self.tty:
            bar = ""
            if fraction is not None:
                filled = int(fraction * 30)
                bar = "[%s%s] %3d%% " % ("#" * filled, "." * (30 - filled), fraction * 100)
            self.err.write("\r%s%s, ETA %s " % (bar, counts, eta))
        else:
            done = " (%d%%, ETA %s)" % (fraction * 100, eta) if fraction is not None else ""
            self.err.write("replay: %s%s\n" % (counts, done))
        self.err.flush()

    def done(self, stats: Stats) -> None:
        """Finish the bar; plain output needs nothing, the summary follows."""
        if self.tty:
            self.update(stats, force=True)
            self.err.write("\n")


# -- the run ---------------------------------------------------------------


class Replay:
    def __init__(self, options: Options, out: TextIO, err: TextIO) -> None:
        self.options = options
        self.out = out
        self.err = err
        self.stats = Stats()
        self.sink = (
            None if options.dry_run else PostHogSink(options.api_key or "", options.host or "", options.group_type)
        )
        self.checkpoint = None if options.dry_run else Checkpoint(options.checkpoint or default_checkpoint(options.paths))
        #: Files read since the last checkpoint: line reached, whether finished.
        self.pending: Dict[str, Tuple[int, bool]] = {}
        self.since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        self.rejects: Dict[str, IO[str]] = {}
        self.delivery_error: Optional[Exception] = None

    def run(self) -> int:
        progress = Progress(self.err, total_bytes(self.options.paths))
        interrupted = False
        try:
            try:
                for source in sources(self.options.paths):
                    if not self.replay_file(source, progress) or self.limit_reached():
                        break
            except KeyboardInterrupt:
                interrupted = True
            if self.delivery_error is None:
                self.commit()
        finally:
            progress.done(self.stats)
            for f in self.rejects.values():
                f.close()
            if self.sink is not None:
                self.sink.close()
        self.summary(interrupted)
        if interrupted:
            return EXIT_INTERRUPTED
        if self.delivery_error is not None:
            return EXIT_DELIVERY
        return EXIT_REJECTS if self.stats.rejected else EXIT_OK

    def limit_reached(self) -> bool:
        return self.options.limit is not None and self.stats.lines >= self.options.limit

    def replay_file(self, source: Source, progress: Progress) -> bool:
        """Replay one file from its checkpoint on; False to stop the whole run."""
        resume = 0
        if self.checkpoint is not None and not source.is_stdin:
            if self.checkpoint.complete(source.key):
                self.stats.bytes_done += os.path.getsize(source.path)
                return True
            resume = self.checkpoint.line(source.key)
        base = self.stats.bytes_done
        number = resume
        for number, line, position in read_lines(source):
            self.stats.bytes_done = base + position
            if number <= resume:
                self.stats.resumed += 1
                continue
            if not line.strip():
                continue
            self.stats.lines += 1
            self.replay_line(source, number, line)
            if not source.is_stdin:
                self.pending[source.key] = (number, False)
            if self.due() and not self.commit():
                return False
            progress.update(self.stats)
            if self.limit_reached():
                return True
        if not source.is_stdin:
            self.pending[source.key] = (number, True)
        return True

    def replay_line(self, source: Source, number: int, line: bytes) -> None:
        options = self.options
        try:
            msg = parse_line(line)
            if msg["type"] not in options.types or not self.in_window(msg["timestamp"]):
                self.stats.filtered += 1
                return
            if not mapped(lambda: posthog_enabled(msg.get("integrations"))):
                self.stats.excluded += 1
                return
            if self.sink is None:
                event = mapped(lambda: to_posthog(msg, options.group_type))
                assert event is not None  # integrations were checked above
                self.out.write(event_json(event) + "\n")
            else:
                self.throttle()
                # The leg maps the message itself: mapping it here too would
                # double the CPU cost per event.
                if not mapped(lambda: self.sink.send(msg)):  # type: ignore[union-attr]
                    self.delivery_error = RuntimeError("posthog's queue refused an event")
                self.since_checkpoint += 1
        except Rejected as reason:
            self.reject(source, number, line, str(reason))
            return
        self.stats.sent[msg["type"]] += 1

    def in_window(self, timestamp: str) -> bool:
        moment = datetime.fromisoformat(timestamp)
        since, until = self.options.since, self.options.until
        return (since is None or moment >= since) and (until is None or moment < until)

    def throttle(self) -> None:
        """Keep to --rate events/s on average since the start."""
        if not self.options.rate:
            return
        due = self.stats.started + self.stats.sent_total / self.options.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def due(self) -> bool:
        return self.sink is not None and (
            self.since_checkpoint >= CHECKPOINT_EVERY_EVENTS
            or time.monotonic() - self.last_checkpoint >= CHECKPOINT_EVERY_SECONDS
        )

    def commit(self) -> bool:
        """Flush posthog, then record what it delivered; False (and no new
        checkpoint) when a delivery failed, so a re-run sends those lines again."""
        if self.sink is None or self.checkpoint is None:
            return True
        error = self.sink.flush() or self.delivery_error
        if error is not None:
            self.delivery_error = error
            return False
        if self.pending:
            self.checkpoint.save(self.pending)
            self.pending = {}
        self.since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        return True

    def reject(self, source: Source, number: int, line: bytes, reason: str) -> None:
        self.stats.rejected += 1
        name = "<stdin>" if source.is_stdin else source.path
        self.err.write("%s:%d: rejected: %s\n" % (name, number, reason))
        rejects = self.rejects.get(source.rejects)
        if rejects is None:
            rejects = self.rejects[source.rejects] = open(source.rejects, "a", encoding="utf-8")
        record = {"file": name, "line": number, "reason": reason, "raw": line.decode("utf-8", "replace").rstrip("\r\n")}
        rejects.write(json.dumps(record, ensure_ascii=False) + "\n")

    def summary(self, interrupted: bool) -> None:
        stats = self.stats
        elapsed = time.monotonic() - stats.started
        verb = "would send" if self.options.dry_run else "sent"
        per_type = ", ".join("%s %d" % (t, stats.sent[t]) for t in TYPES if stats.sent[t])
        lines = [
            "replay %s: %d lines in %.1fs, %s %d events (%s), %.0f events/s"
            % (
                "interrupted" if interrupted else "done",
                stats.lines,
                elapsed,
                verb,
                stats.sent_total,
                per_type or "none",
                stats.sent_total / elapsed if elapsed > 0 else 0.0,
            ),
            "  rejected %d%s" % (stats.rejected, " (see %s)" % ", ".join(sorted(self.rejects)) if self.rejects else ""),
        ]
        if stats.filtered:
            lines.append("  skipped %d outside --types/--since/--until" % stats.filtered)
        if stats.excluded:
            lines.append("  skipped %d whose integrations exclude PostHog" % stats.excluded)
        if stats.resumed:
            lines.append("  resumed: %d lines already sent by an earlier run were skipped" % stats.resumed)
        if self.delivery_error is not None:
            lines.append(
                "  STOPPED: PostHog did not accept a batch (%s). The checkpoint %s holds the last "
                "delivered line; fix the cause and run the same command again to resume."
                % (self.delivery_error, self.checkpoint.path if self.checkpoint else "")
            )
        self.err.write("\n".join(lines) + "\n")


def replay(options: Options, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run a replay; the exit code: 0 all sent, 1 some lines rejected,
    3 PostHog did not accept a batch, 130 interrupted."""
    return Replay(options, out, err).run()
