"""A local append-only spool of finished usage events, so no completed request goes unbilled.

Invariant: from the moment a group of events is written here until the group commit has put
all of them in the database, they are on disk in this directory; a segment file is removed only
once every event in it is committed. After any stop (SIGTERM with the database down, kill -9,
a crash) the next start replays what is left, keyed by the usage id: usage rows are inserted
ignoring duplicates and charges carry the unique ledger reference ``usage:<id>``, so a replay
of events that were in fact committed changes nothing.

Why this shape:
* Requests never touch the disk: the recorder hands over a group of events every flush
  interval, which becomes ONE ``write()`` (the kernel keeps written data across a process
  kill, so kill -9 loses at most the events not yet handed over: one interval) and one
  ``fsync`` on a private thread (durability against power loss, off the event loop).
* One JSON object per line, every dataclass field by name: fields added to the event later
  round-trip without changes here. A line that is not complete (no newline, bad JSON: the
  write a crash tore) is skipped with a warning; it was never reported as spooled.
* One process per directory (an exclusive ``flock``, released by the kernel when the process
  dies): two processes draining one spool could each commit and delete the other's events.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import time
import typing
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson

log = logging.getLogger(__name__)

T = TypeVar("T")

SEGMENT_SUFFIX = ".spool"
LOCK_NAME = ".lock"


class SpoolLocked(RuntimeError):
    pass


REPLICA_ID_NAME = "replica-id"


def replica_id(directory: str | os.PathLike[str]) -> str:
    """The id of the gateway that owns this spool directory, the same across its restarts.

    The Redis wallet names this replica's pending charges with it, so a restarted process
    finds (and clears, after replaying the spool) what its previous run left there.
    """
    path = Path(directory) / REPLICA_ID_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        text = ""
    if len(text) == 12 and all(c in "0123456789abcdef" for c in text):
        return text
    text = uuid.uuid4().hex[:12]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)  # atomic: a crash leaves the old file or the new one
    return text


def default_spool_dir(database_url: str) -> Path:
    """Next to the SQLite database file (``./aigateway.db`` -> ``./aigateway.db-spool``);
    ``./aigateway-spool`` in the working directory for any other database."""
    for prefix in ("sqlite+aiosqlite:///", "sqlite:///"):
        if database_url.startswith(prefix):
            path = database_url[len(prefix):].split("?", 1)[0]
            if path and path != ":memory:":
                return Path(path + "-spool")
    return Path("aigateway-spool")


def _datetime_fields(cls: type) -> frozenset[str]:
    hints = typing.get_type_hints(cls)
    found = set()
    for f in dataclasses.fields(cls):
        hint = hints.get(f.name)
        if hint is datetime or datetime in typing.get_args(hint):
            found.add(f.name)
    return frozenset(found)


class EventCodec(Generic[T]):
    """Every field of a dataclass, by name, as one JSON line (orjson writes datetimes as RFC 3339)."""

    def __init__(self, cls: type[T]) -> None:
        self._cls = cls
        self._names = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
        self._dates = _datetime_fields(cls)

    def encode(self, events: Iterable[T]) -> bytes:
        names = self._names
        return b"".join(orjson.dumps({n: getattr(e, n) for n in names}, option=orjson.OPT_APPEND_NEWLINE)
                        for e in events)

    def decode(self, line: bytes) -> T:
        data: dict[str, Any] = orjson.loads(line)
        known = {k: v for k, v in data.items() if k in self._names}  # a field since removed: ignore
        for name in self._dates:
            if isinstance(known.get(name), str):
                known[name] = datetime.fromisoformat(known[name])
        return self._cls(**known)


@dataclasses.dataclass(frozen=True, slots=True)
class Recovered(Generic[T]):
    events: list[T]  # unique by id, in spool order
    segments: tuple[Path, ...]
    torn: int  # lines skipped: incomplete or unreadable


def read_segments(directory: Path, codec: EventCodec[T], key: Callable[[T], str]) -> Recovered[T]:
    """Every complete event in the directory's segments, first occurrence of each id."""
    segments = tuple(sorted(directory.glob("*" + SEGMENT_SUFFIX)))
    events: list[T] = []
    seen: set[str] = set()
    torn = 0
    for path in segments:
        data = path.read_bytes()
        lines = data.split(b"\n")
        # The last piece is b"" when the file ends with a newline, else a torn write.
        if lines[-1]:
            torn += 1
            log.warning("spool %s: skipping an incomplete last line (%d bytes)", path, len(lines[-1]))
        for line in lines[:-1]:
            if not line:
                continue
            try:
                event = codec.decode(line)
            except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
                torn += 1
                log.warning("spool %s: skipping an unreadable line (%s)", path, exc)
                continue
            ident = key(event)
            if ident not in seen:
                seen.add(ident)
                events.append(event)
    return Recovered(events, segments, torn)


class Spool(Generic[T]):
    """Append groups of events; forget them in the same order once committed."""

    def __init__(self, directory: str | os.PathLike[str], cls: type[T], *, key: Callable[[T], str],
                 segment_bytes: int = 4 * 1024 * 1024, segment_seconds: float = 5.0) -> None:
        self.directory = Path(directory)
        self._codec = EventCodec(cls)
        self._key = key
        self._segment_bytes = segment_bytes
        self._segment_seconds = segment_seconds
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._opened_at = 0.0
        self._serial = 0
        # (segment path, events in it not yet committed), oldest first; the last may be open.
        self._segments: deque[list[Any]] = deque()
        # One thread, so fsyncs and closes of a file happen in the order they were asked for.
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage-spool")
        self._sync_queued = False
        self.spooled = 0  # events on disk, not yet committed

    # -- life cycle ---------------------------------------------------------------------

    def open(self) -> Recovered[T]:
        """Take the directory's lock and return what earlier processes left (not yet forgotten:
        call `forget_recovered` once those events are committed)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolLocked(f"another aigateway process uses the usage spool {self.directory}; "
                              "give each process its own [billing] spool_dir") from None
        self._lock_fd = fd
        self._recovered = read_segments(self.directory, self._codec, self._key)
        return self._recovered

    def forget_recovered(self) -> None:
        for path in self._recovered.segments:
            path.unlink(missing_ok=True)
        self._fsync_dir()

    def close(self) -> None:
        """Sync and close the open segment; remove it if everything in it was committed."""
        if self._fd is not None:
            self._io.submit(_sync_close, self._fd).result()
            self._fd = None
            self._drop_committed(include_open=True)
        self._io.shutdown(wait=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    # -- the recorder's side ------------------------------------------------------------

    def append(self, events: list[T]) -> None:
        """One write for the whole group (durable against a process kill on return); the fsync
        follows on the spool's thread."""
        if not events:
            return
        data = self._codec.encode(events)
        if self._fd is None or self._size >= self._segment_bytes or (
                time.monotonic() - self._opened_at >= self._segment_seconds):
            self._rotate()
        view = memoryview(data)
        while view:  # a regular file takes it in one write unless the disk is full
            written = os.write(self._fd, view)  # type: ignore[arg-type]
            view = view[written:]
        self._size += len(data)
        self._segments[-1][1] += len(events)
        self.spooled += len(events)
        self._schedule_sync()

    def committed(self, count: int) -> None:
        """The oldest `count` spooled events are in the database: drop the segments they empty."""
        self.spooled -= count
        for segment in self._segments:
            if count <= 0:
                break
            take = min(count, segment[1])
            segment[1] -= take
            count -= take
        self._drop_committed(include_open=False)

    async def wait_synced(self) -> None:
        """Until everything written so far is fsynced (used at shutdown)."""
        if self._fd is not None:
            await _wrap(self._io.submit(os.fsync, self._fd))

    # -- internals ----------------------------------------------------------------------

    def _rotate(self) -> None:
        if self._fd is not None:
            self._io.submit(_sync_close, self._fd)
        self._drop_committed(include_open=True)
        self._serial += 1
        self._path = self.directory / f"{time.time_ns():020d}-{os.getpid()}-{self._serial:06d}{SEGMENT_SUFFIX}"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = 0
        self._opened_at = time.monotonic()
        self._segments.append([self._path, 0])
        self._io.submit(self._fsync_dir)  # the new name survives a power loss

    def _drop_committed(self, *, include_open: bool) -> None:
        while self._segments and self._segments[0][1] == 0:
            if self._segments[0][0] == self._path and self._fd is not None and not include_open:
                return  # still being written to
            path, _ = self._segments.popleft()
            path.unlink(missing_ok=True)

    def _schedule_sync(self) -> None:
        # An fsync that has not started yet covers this write too; else queue one. The fd stays
        # valid for it: its close is queued behind it on the same single thread.
        if self._sync_queued or self._fd is None:
            return
        self._sync_queued = True
        self._io.submit(self._fsync, self._fd)

    def _fsync(self, fd: int) -> None:  # on the spool thread
        self._sync_queued = False
        try:
            os.fsync(fd)
        except OSError as exc:
            log.error("usage spool fsync failed: %s", exc)

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _sync_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def _wrap(future: Future[Any]) -> None:
    import asyncio

    await asyncio.wrap_future(future)
