"""The on-disk spool: every accepted call written down before it returns, so
that whichever process comes next delivers what a killed one held.

Each process writes its own files, ``<host>.<pid>.<mark>.<random>.spool``, of
records one after the other, then zeros. A record is
``m <seq> <legs> <length> <crc32>\\n<payload>\\n``: the legs it is meant
for (``posthog,segment``), and the ``marshal`` (version 2, readable by every
Python 3) of the Segment message as the call built it, the very bytes the
call's size check made; ``j`` instead of ``m`` when the message holds what
marshal cannot write (a ``datetime`` in a property), its payload then JSON. Beside each, ``<name>.spool.acks`` gets a
line ``a <leg> <seq> <seq> ...`` when a leg is done with those records
(delivered them, or gave up and reported it).

Only the callers write records, under a lock of their own, so a call never
waits for the background threads. The file is allocated ahead
(``posix_fallocate``: a full disk is found when a file is made, never while
writing) and written through a shared memory map: copying into it is a
``memcpy`` under the interpreter lock, where a ``write()`` system call would
hand that lock to the background threads and make the caller wait for it
back, several times the cost of the call itself. The pages of a shared file
mapping are the kernel's: they reach the disk whether or not the process
lives on (not through power loss: no fsync). The background threads append
settlements with ``write()``.

A process holds a POSIX lock (``lockf``) on each file it writes or has taken
over. The kernel drops the lock when the process dies, however it dies,
and a forked child does not inherit it, so a file whose lock can be taken
belongs to a dead process: its unsettled records are delivered again, on
the legs that had not settled them, with their original ``messageId`` (and
so the same PostHog uuid). A file is made under a name no scan reads and
renamed once locked, and unlinked by its holder, under the lock, once every
record in it is settled on every leg, so no two processes ever send one file.

Records are settled per leg from the legs' own batch outcomes (posthog's
consumer, Segment's post, each one's ``on_error``) and, as a net for
anything those miss, whenever a leg holds nothing (``sweep``). A process
killed after a batch was delivered and before its settlement was written
sends that batch again: the ids let PostHog and Segment tell.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import fcntl
import json
import logging
import marshal
import mmap
import os
import secrets
import socket
import time
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from analytics_posthog._delivery.forks import at_fork, fork_safe_lock, reset_in_child
from analytics_posthog._message.build import Message, marshalled, segment_json
from analytics_posthog.errors import DeliveryError

log = logging.getLogger("analytics_posthog")

#: Bytes each spool file is allocated with (a record that does not fit gets a new file).
FILE_BYTES = 1024 * 1024
#: How far past the last record the background keeps the file's pages mapped
#: for writing, so that a call's copy never takes a page fault.
AHEAD = 128 * 1024
#: Linux's ``madvise`` advice that maps pages writable without touching them (5.14+).
_POPULATE_WRITE = getattr(
    mmap, "MADV_POPULATE_WRITE", 23 if os.uname().sysname == "Linux" else None
)
#: Seconds a spool that could not be written is left alone before the next try.
RETRY_WRITE = 1.0
#: How often a process looks for files that dead processes left.
SCAN_INTERVAL = 5.0
SUFFIX = ".spool"
ACKS = ".acks"
#: Where ``spool_dir`` comes from when no setting names one.
ENVIRONMENT = "ANALYTICS_POSTHOG_SPOOL_DIR"
#: This process's mark in the names of the files it makes, new in each forked
#: child: a process can always take a lock it holds itself (and closing a
#: second descriptor of the file would drop it), so a scan must never open
#: its own process's files. Host and pid alone recur: a restarted container
#: has both again.
_process_mark = secrets.token_hex(4)


def _new_process_mark() -> None:
    global _process_mark
    _process_mark = secrets.token_hex(4)


at_fork(_new_process_mark)

#: The longest header a record can have; a longer one is damage.
_HEADER_MAX = 64


class SpoolFull(DeliveryError):
    """The spool directory holds ``spool_max_bytes`` already: the call is dropped."""


class SpoolDamaged(DeliveryError):
    """Records a dead process left that cannot be read back (cut short, corrupt)."""


@dataclasses.dataclass(eq=False)
class SpoolFile:
    path: str
    fd: int
    #: The file mapped for the callers' records (``None``: taken over, or let go).
    map: mmap.mmap | None
    #: Where the next record goes: the bytes in use.
    offset: int = 0
    #: The settlements file, opened at the first settlement.
    acks: int = -1
    #: Up to where the pages are mapped for writing (``Spool.prepare``).
    populated: int = 0
    #: seq -> the legs that have not settled it.
    unsettled: dict[int, set[str]] = dataclasses.field(default_factory=dict)
    #: Whether a dead process left it (its records may be meant for fewer legs).
    taken: bool = False
    #: Records of a dead process still to hand to our delivery: (seq, message).
    backlog: collections.deque[tuple[int, Message]] = dataclasses.field(
        default_factory=collections.deque
    )

    @property
    def size(self) -> int:
        return len(self.map) if self.map is not None else 0

    @property
    def closed(self) -> bool:
        """Let go (``_let_go``): its descriptors are closed."""
        return self.fd < 0

    @property
    def acks_path(self) -> str:
        return self.path + ACKS


#: A record's place: its file and its number there.
Ticket = tuple[SpoolFile, int]


def _payload(msg: Message) -> tuple[bytes, bytes]:
    """A record's kind and payload: the message's marshal where there is one
    (the call's size check made it, most often), otherwise Segment's JSON,
    which the call's size check proved it can write."""
    data = marshalled(msg)
    if data is not None:
        return b"m", data
    try:
        return b"m", marshal.dumps(msg, 2)
    except ValueError:
        return b"j", segment_json(msg).encode()


def _allocate(fd: int, size: int) -> None:
    """Reserve ``size`` bytes on disk now, so that writing through the map
    can never meet a full disk (which would kill the process with SIGBUS)."""
    allocate = getattr(os, "posix_fallocate", None)
    if allocate is not None:
        allocate(fd, 0, size)
        return
    have = os.fstat(fd).st_size
    if size > have:
        os.pwrite(fd, b"\0" * (size - have), have)


class Spool:
    """One process's spool in ``directory``; ``report(error, msgs)`` tells
    ``on_error`` and the log of what the spool cannot keep or read back."""

    def __init__(
        self,
        directory: str,
        max_bytes: int,
        legs: list[str],
        report: Callable[[DeliveryError, list[Any]], None],
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.legs = tuple(legs)
        self._legs_field = ",".join(legs).encode()
        self._report = report
        #: The callers' lock: records, and which file takes them.
        self._write_lock = fork_safe_lock()
        #: The background's lock: what each leg was handed and has settled.
        self._lock = fork_safe_lock()
        self._reset()
        reset_in_child(self._reset)

    def _reset(self) -> None:
        """Start with nothing (in a forked child: the parent's files, and the
        records in them, stay the parent's, and so does its lock on them)."""
        for spool_file in getattr(self, "_files", ()):
            _let_go(spool_file)
        self._files: list[SpoolFile] = []
        self._current: SpoolFile | None = None
        self._seq = 0
        #: id(message) -> its ticket, from the call until the dispatcher hands it over.
        self._tickets: dict[int, Ticket] = {}
        #: leg -> key (the id the leg's batches carry) -> tickets handed to it under that key.
        self._handed: dict[str, dict[str, list[Ticket]]] = {leg: {} for leg in self.legs}
        self._others_bytes = 0
        self._next_scan = 0.0
        self._unwritable: str | None = None
        self._unsaid: str | None = None
        self._retry_at = 0.0
        #: Bytes of records this process wrote, and of its files since removed
        #: (each counter has one writer: the callers, the background).
        self._written = 0
        self._freed = 0
        self._populate = _POPULATE_WRITE
        #: Set by ``finish``: no file is made ahead any more.
        self._finished = False
        #: Records taken over and not yet handed to our delivery (read without the lock).
        self.backlog_size = 0
        self.counts = {"written": 0, "taken_over": 0, "damaged": 0, "unspooled": 0, "full": 0}

    # -- on the caller's thread --------------------------------------------------

    def write(self, msg: Message) -> bool:
        """Put ``msg`` on disk for every leg; ``False`` when the spool is full
        (the caller drops the call). A spool that cannot be written (a
        read-only or full filesystem) leaves the call to memory, as without
        a spool, and says so once."""
        kind, payload = _payload(msg)
        header = b"%s %%d %s %d %d\n" % (kind, self._legs_field, len(payload), zlib.crc32(payload))
        with self._write_lock:
            seq = self._seq + 1
            entry = b"".join((header % seq, payload, b"\n"))
            if self._others_bytes + self._written - self._freed + len(entry) > self.max_bytes:
                self.counts["full"] += 1
                return False
            if self._unwritable is not None and time.monotonic() < self._retry_at:
                self.counts["unspooled"] += 1
                return True
            try:
                spool_file = self._writable(len(entry))
            except OSError as error:
                self.counts["unspooled"] += 1
                self._cannot_write(error)
                spool_file = None
            if spool_file is not None:
                self._put(spool_file, entry)
                self._unwritable = None
                self._seq = seq
                spool_file.unsettled[seq] = set(self.legs)
                self._tickets[id(msg)] = (spool_file, seq)
                self.counts["written"] += 1
        if self._unsaid is not None:
            self._say()
        return True

    def _put(self, spool_file: SpoolFile, entry: bytes) -> None:
        assert spool_file.map is not None
        end = spool_file.offset + len(entry)
        spool_file.map[spool_file.offset : end] = entry
        spool_file.offset = end
        self._written += len(entry)

    def prepare(self) -> None:
        """On the dispatcher's thread: a file ready before the first call, and
        its next pages mapped for writing before the calls reach them."""
        current = self._current
        if current is None:
            if self._unwritable is not None or self._files or self._finished:
                return
            with self._write_lock:
                if self._current is None and not self._finished:
                    try:
                        made = self._create(FILE_BYTES)
                    except OSError as error:
                        self._cannot_write(error)
                    else:
                        with self._lock:
                            self._current = made
            self._say()
            return
        mapped = current.map if current is not None else None
        if self._populate is None or current is None or mapped is None:
            return
        start = max(current.populated, current.offset)
        stop = min(current.offset + AHEAD, current.size)
        if stop - start < AHEAD // 4:
            return
        aligned = start - start % mmap.PAGESIZE
        try:
            mapped.madvise(self._populate, aligned, stop - aligned)
        except (OSError, ValueError):
            self._populate = None
            return
        current.populated = stop

    def _writable(self, room: int) -> SpoolFile:
        current = self._current
        if current is not None and current.offset + room <= current.size:
            return current
        if current is not None:
            with self._lock:
                self._current = None
                if not current.unsettled:
                    self._remove(current)
            # A full file with records unsettled stays until they are (``_settled``).
        current = self._create(max(FILE_BYTES, room))
        with self._lock:
            self._current = current
        return current

    def _create(self, size: int) -> SpoolFile:
        """A new file of ours: allocated and locked under a name no scan reads, then named."""
        os.makedirs(self.directory, exist_ok=True)
        name = "%s.%d.%s.%s" % (
            socket.gethostname(),
            os.getpid(),
            _process_mark,
            secrets.token_hex(4),
        )
        hidden = os.path.join(self.directory, "." + name + ".new")
        fd = os.open(hidden, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _allocate(fd, size)
            mapped = mmap.mmap(fd, size)
            path = os.path.join(self.directory, name + SUFFIX)
            os.rename(hidden, path)
        except OSError:
            os.close(fd)
            try:
                os.unlink(hidden)
            except OSError:
                pass
            raise
        spool_file = SpoolFile(path, fd, mapped)
        self._files.append(spool_file)
        return spool_file

    def _cannot_write(self, error: OSError) -> None:
        """Said once per reason; writing is tried again after ``RETRY_WRITE`` seconds."""
        self._retry_at = time.monotonic() + RETRY_WRITE
        reason = (
            "%s: %s" % (errno.errorcode.get(error.errno, "error"), error.strerror)
            if error.errno
            else str(error)
        )
        if self._unwritable != reason:
            self._unwritable = reason
            # Logged by ``_say`` once the locks are let go: an app's log
            # handler may make a call, which takes them again.
            self._unsaid = reason

    def _say(self) -> None:
        reason, self._unsaid = self._unsaid, None
        if reason is not None:
            log.warning(
                "analytics_posthog: the spool in %s cannot be written (%s); calls are kept "
                "in memory only until it can",
                self.directory,
                reason,
            )

    # -- as the legs deliver --------------------------------------------------------

    def ticket(self, msg: Message) -> Ticket | None:
        """``msg``'s place in the spool, taken as the dispatcher hands it over
        (one ``dict.pop``, atomic without the lock)."""
        return self._tickets.pop(id(msg), None)

    def legs_of(self, ticket: Ticket) -> set[str]:
        spool_file, seq = ticket
        with self._lock:
            return set(spool_file.unsettled.get(seq, ()))

    def hand(self, legs: list[tuple[str, str]], ticket: Ticket) -> None:
        """``ticket``'s record goes to each ``(leg, key)``: the leg's batches name it ``key``."""
        with self._lock:
            for leg, key in legs:
                self._handed[leg].setdefault(key, []).append(ticket)

    def settle(self, leg: str, keys: Iterable[str]) -> None:
        """``leg`` is done with the records it knows by ``keys`` (from any thread)."""
        with self._lock:
            handed = self._handed.get(leg)
            if not handed:
                return
            tickets = []
            for key in keys:
                waiting = handed.get(key)
                if waiting:
                    tickets.append(waiting.pop(0))
                    if not waiting:
                        del handed[key]
            self._settled(leg, tickets)
        self._say()

    def settle_ticket(self, leg: str, ticket: Ticket, key: str | None = None) -> None:
        """``leg`` is done with ``ticket``'s record at once (refused, not for
        it, or delivered in sync mode); ``key``: it was handed under that key,
        and that very ticket is taken back (an app may repeat a messageId)."""
        with self._lock:
            waiting = self._handed.get(leg, {}).get(key) if key is not None else None
            if waiting and ticket in waiting:
                waiting.remove(ticket)
                if not waiting:
                    del self._handed[leg][key]
            self._settled(leg, [ticket])
        self._say()

    def sweep(self, leg: str) -> None:
        """``leg`` holds nothing: whatever was handed to it is settled."""
        with self._lock:
            handed = self._handed.get(leg)
            if not handed:
                return
            tickets = [ticket for waiting in handed.values() for ticket in waiting]
            handed.clear()
            self._settled(leg, tickets)
        self._say()

    def forget(self, leg: str) -> None:
        """``leg``'s library was stopped with messages left (exit past its
        deadline): what was handed to it stays unsettled, for the next process."""
        with self._lock:
            self._handed.get(leg, {}).clear()

    def _settled(self, leg: str, tickets: list[Ticket]) -> None:
        by_file: dict[SpoolFile, list[int]] = {}
        for spool_file, seq in tickets:
            legs = spool_file.unsettled.get(seq)
            if legs is None or leg not in legs:
                continue
            legs.discard(leg)
            by_file.setdefault(spool_file, []).append(seq)
            if not legs:
                del spool_file.unsettled[seq]
        for spool_file, seqs in by_file.items():
            if spool_file.closed:
                continue
            if (
                not spool_file.unsettled
                and not spool_file.backlog
                and spool_file is not self._current
            ):
                self._remove(spool_file)
                continue
            entry = b"a %s %s\n" % (leg.encode(), " ".join(map(str, seqs)).encode())
            try:
                if spool_file.acks < 0:
                    spool_file.acks = os.open(
                        spool_file.acks_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600
                    )
                os.write(spool_file.acks, entry)
            except OSError as error:
                # Settled in memory all the same: only a later process would send them again.
                self._cannot_write(error)

    def _remove(self, spool_file: SpoolFile) -> None:
        """Every record settled: unlinked while still locked, then let go (once)."""
        if spool_file.closed:
            return
        for path in (spool_file.path, spool_file.acks_path):
            try:
                os.unlink(path)
            except OSError:
                pass
        _let_go(spool_file)
        if not spool_file.taken:
            self._freed += spool_file.offset
        if spool_file in self._files:
            self._files.remove(spool_file)
        if spool_file is self._current:
            self._current = None

    def finish(self) -> None:
        """At exit: the current file goes too when everything in it is settled."""
        with self._write_lock, self._lock:
            self._finished = True
            current = self._current
            if current is not None and not current.unsettled:
                self._remove(current)

    # -- what dead processes left -----------------------------------------------

    def scan(self, now: float | None = None, *, force: bool = False) -> None:
        """Every ``SCAN_INTERVAL``: take over one file of a dead process, and
        measure the directory for ``spool_max_bytes``."""
        now = time.monotonic() if now is None else now
        if not force and now < self._next_scan:
            return
        self._next_scan = now + SCAN_INTERVAL
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        ours = {os.path.basename(f.path) for f in list(self._files)}
        present = set(names)
        feeding = self.backlog_size > 0
        others = 0
        mine = ".%s." % _process_mark
        for name in sorted(names):
            path = os.path.join(self.directory, name)
            if mine in name:
                continue
            if name.startswith(".") and name.endswith(".new"):
                _clear_unnamed(path)
                continue
            if name.endswith(SUFFIX + ACKS) and name[: -len(ACKS)] not in present:
                # What a process that died removing its file left.
                _unlink(path)
                continue
            if not name.endswith(SUFFIX) or name in ours:
                continue
            if not feeding and self._take(path):
                feeding = True
                continue
            try:
                others += os.stat(path).st_size
            except OSError:
                pass
        self._others_bytes = others

    def _take(self, path: str) -> bool:
        """Lock ``path`` if its process is dead, and read its unsettled records."""
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return False
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Unlinked by another taker between our open and our lock: not ours.
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                raise OSError(errno.ENOENT, "taken by another process")
            with open(fd, "rb", closefd=False) as reader:
                content = reader.read()
            try:
                with open(path + ACKS, "rb") as reader:
                    settlements = reader.read()
            except FileNotFoundError:
                settlements = b""
        except OSError:
            os.close(fd)
            return False
        spool_file = SpoolFile(path, fd, None, len(content.rstrip(b"\0")), taken=True)
        try:
            records, damaged = _read(content)
            _apply(settlements, records)
        except Exception as error:  # a file we cannot make sense of must not stop the client
            log.warning("analytics_posthog: the spool file %s cannot be read (%s)", path, error)
            records, damaged = {}, 1
        _fill(spool_file, records)
        with self._lock:
            self._files.append(spool_file)
            self.backlog_size += len(spool_file.backlog)
            self.counts["taken_over"] += len(spool_file.backlog)
            self.counts["damaged"] += damaged
            if not spool_file.backlog:
                self._remove(spool_file)
        if damaged:
            self._report(
                SpoolDamaged(
                    "%d record(s) in %s could not be read back (cut short or corrupt)"
                    % (damaged, path)
                ),
                [],
            )
        return True

    def backlog(self, room: int) -> list[tuple[Message, Ticket]]:
        """Up to ``room`` records taken over, oldest first, to deliver again."""
        out: list[tuple[Message, Ticket]] = []
        with self._lock:
            for spool_file in self._files:
                while spool_file.backlog and len(out) < room:
                    seq, msg = spool_file.backlog.popleft()
                    self._tickets[id(msg)] = (spool_file, seq)
                    out.append((msg, (spool_file, seq)))
            self.backlog_size -= len(out)
        return out

    def put_back(self, msg: Message, ticket: Ticket) -> None:
        """A record ``backlog`` gave that our queue had no room for after all."""
        spool_file, seq = ticket
        with self._lock:
            self._tickets.pop(id(msg), None)
            spool_file.backlog.appendleft((seq, msg))
            self.backlog_size += 1


def _let_go(spool_file: SpoolFile) -> None:
    if spool_file.map is not None:
        spool_file.map.close()
        spool_file.map = None
    for fd in (spool_file.fd, spool_file.acks):
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
    spool_file.fd = spool_file.acks = -1


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _clear_unnamed(path: str) -> None:
    """A file a process died before naming holds no record yet: removed."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.unlink(path)
    except OSError:
        pass
    finally:
        os.close(fd)


def _message(kind: bytes, payload: bytes) -> Message:
    msg = marshal.loads(payload) if kind == b"m" else json.loads(payload)
    if not isinstance(msg, dict) or not isinstance(msg.get("messageId"), str):
        raise ValueError("not a message")
    return msg


def _read(content: bytes) -> tuple[dict[int, tuple[set[str], Message]], int]:
    """A dead process's records (its file: records, then zeros), by seq,
    and how many could not be read back. After a damaged record, reading
    goes on at the next line that starts one."""
    records: dict[int, tuple[set[str], Message]] = {}
    damaged = 0
    position, end = 0, len(content)
    while position < end and content[position] != 0:
        newline = content.find(b"\n", position, position + _HEADER_MAX)
        try:
            if newline < 0:
                raise ValueError("no header")
            kind, _, rest = content[position:newline].partition(b" ")
            if kind not in (b"m", b"j"):
                raise ValueError("not a record")
            seq_field, legs, length_field, crc_field = rest.split(b" ")
            seq, length, crc = int(seq_field), int(length_field), int(crc_field)
            start = newline + 1
            payload = content[start : start + length]
            if (
                len(payload) != length
                or content[start + length : start + length + 1] != b"\n"
                or zlib.crc32(payload) != crc
            ):
                raise ValueError("cut short or corrupt")
            records[seq] = (set(legs.decode().split(",")), _message(kind, payload))
            position = start + length + 1
        except (ValueError, TypeError, EOFError, KeyError, UnicodeDecodeError):
            damaged += 1
            position = _next_record(content, position + 1)
    return records, damaged


def _next_record(content: bytes, start: int) -> int:
    """Where the next record after damage begins: a line starting ``m`` or
    ``j`` and a space; the end when there is none."""
    found = [content.find(marker, start) for marker in (b"\nm ", b"\nj ")]
    return min((at + 1 for at in found if at >= 0), default=len(content))


def _apply(settlements: bytes, records: dict[int, tuple[set[str], Message]]) -> None:
    """Take off each record the legs that settled it. A line cut short by
    the kill settles nothing: those records are sent again, with their ids."""
    for line in settlements.split(b"\n")[:-1]:
        kind, _, rest = line.partition(b" ")
        leg, _, listed = rest.partition(b" ")
        if kind != b"a" or not leg:
            continue
        seqs = listed.split()
        name = leg.decode(errors="replace")
        for seq in seqs:
            entry = records.get(int(seq)) if seq.isdigit() else None
            if entry is not None:
                entry[0].discard(name)


def _fill(spool_file: SpoolFile, records: dict[int, tuple[set[str], Message]]) -> None:
    """The records some leg has not settled, oldest first, as ``spool_file``'s backlog."""
    for seq in sorted(records):
        legs, msg = records[seq]
        if legs:
            spool_file.unsettled[seq] = legs
            spool_file.backlog.append((seq, msg))
