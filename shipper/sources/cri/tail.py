"""The bytes of one container's CRI log files from a checkpoint on, across kubelet's rotation.

One follower reads one container (one attempt: `<attempt>.log` and its rotations, see
paths.py). This module decides which files, in which order, and when a file is complete;
the bytes go to the parser, which joins lines across files.

Which files, from a checkpoint's `since`: the rotations and then the live file, oldest
first. A rotation whose lines are all older than `since` (with a second's margin) is skipped:
a plain one's last write is its mtime; a compressed one's mtime is when kubelet compressed
it, so its end is the first line of the file after it. When the first file read is not the
oldest there is, a line of the file before may go on in it (a `P` at the end of a rotated
file is continued in the next one): `continued_streams` says which streams end in a `P`
there, so that the parser drops the rest of that line, which is older than `since`.

Following: files are identified by inode, never by name. Every file is opened before it is
read, and a file we hold stays readable after kubelet renames, compresses or deletes it.
When `<attempt>.log` points to another inode, the file we hold was rotated; it is read to
its end, and only once it is *complete*, then the rotations after it and the new live file.

Complete: after `ReopenContainerLog`, containerd's old line readers still write what they
held (the first part of a line in progress, as a `P`) into the *renamed* file, possibly after
the new file has lines, and then close it. So a file that is no longer the live one (or whose
container exited) is complete once its writer closed it (`IN_CLOSE_WRITE` under its current
name) or, where that was not seen (no inotify, or it happened before we watched), once it has
not changed for `settle_s`; a `.gz` always is. Reading the next file before would put the rest
of a line before its start.

Which file we held once it was rotated: the plain rotation with its inode; if kubelet
compressed it meanwhile, the oldest newer `.gz` whose gzip trailer gives its size. All
rotations up to the last one read are done (`done_stamp`), so a compressed copy of a file
already read is never read again. A rotation seen in a listing that disappears before it was
read was deleted by kubelet unread: `on_lost` is told (a gap).

Waiting: one inotify watch on the container's directory (shared `DirectoryWatcher`) wakes the
tail on any write, rename or close. The tail asks `still_running()` when the live file was
closed (containerd closes it when the container exits), when `nudge` is set (discovery saw
the container exit), and once a minute as a safety net. Without inotify it polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import random
import struct
import time
import zlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from shipper.cri import parser
from shipper.cri.paths import Rotation, rotations
from shipper.sources.files import (
    MTIME_MARGIN_NS,
    POLL_INTERVAL_S,
    READ_BYTES,
    SAFETY_CHECK_S,
    DirectoryWatcher,
    fd_inode,
    open_readonly,
    path_inode,
)

SETTLE_S: Final = 1.0
FIRST_LINE_BYTES: Final = 128  # a CRI line's timestamp is at most 35 bytes
END_OF_FILE: Final = b""  # yielded after the last bytes of each file but the live one


@dataclass
class _File:
    """A file of the log opened for reading."""

    fd: int
    path: Path  # the name it had when opened
    stamp: str | None  # its rotation stamp; None while it is (or was) the live file
    compressed: bool = False
    reader: gzip.GzipFile | None = None
    inode: tuple[int, int] = (0, 0)
    rotated: bool = False  # no longer the live file: a rotation, or renamed since opened

    def read(self) -> bytes:
        if self.reader is not None:
            return self.reader.read(READ_BYTES)
        return os.read(self.fd, READ_BYTES)

    def close(self) -> None:
        if self.reader is not None:
            with contextlib.suppress(OSError, EOFError, zlib.error):
                self.reader.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)


@dataclass
class TailStart:
    """What the first listing found (for the follower's checks at the start of a read)."""

    # The first file read is the oldest there is, and rotations exist: lines before it may
    # have been deleted by kubelet (checked against the checkpoint by the follower).
    from_oldest_rotation: bool = False
    first_line_ns: int | None = None  # of the first file read
    continued_streams: frozenset[str] = frozenset()
    files: list[str] = field(default_factory=list)


class CriLogTail:
    """The bytes of one container's CRI log from `since_ns` on; `END_OF_FILE` between files."""

    def __init__(
        self,
        log: Path,
        *,
        since_ns: int,
        follow: bool,
        still_running: Callable[[], Awaitable[bool]],
        watcher: DirectoryWatcher | None = None,
        nudge: asyncio.Event | None = None,
        on_lost: Callable[[str], None] | None = None,
        settle_s: float = SETTLE_S,
    ) -> None:
        self.log = log
        self.since_ns = since_ns
        self.follow = follow
        self._still_running = still_running
        self._watcher = watcher
        self._nudge = nudge
        self._on_lost = on_lost
        self._settle_s = settle_s
        self.start = TailStart()
        self.done_stamp = ""  # every rotation stamped up to this one was read or skipped
        self._seen_stamps: set[str] = set()  # rotations after done_stamp seen in a listing
        self._stopped = False  # the container was found not running
        self._asked_after_close = False  # whether the live file's close was looked into
        self.rotations = 0

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        watch = None
        if self._watcher is not None:
            watch = self._watcher.watch(self.log.parent, self.log.name, track_closes=True)
        queue = self._initial_files()
        current: _File | None = None
        try:
            while True:
                if current is None:
                    if queue:
                        current = queue.pop(0)
                    else:
                        current = self._next_file()
                        if current is None:
                            # No live file (not created yet, or deleted with the container).
                            if not self.follow or self._stopped:
                                return
                            if not await self._wait(watch, None):
                                self._stopped = True
                            continue
                while data := current.read():
                    yield data
                if current.stamp is None and not current.rotated:
                    # The live file, at its current end: was it rotated away?
                    if path_inode(self.log) != current.inode:
                        current.rotated = True
                        self.rotations += 1
                        continue
                    if not self.follow or self._stopped:
                        if self._complete(current, watch):
                            return
                        await self._wait_settle(watch, current)
                        continue
                    if not await self._wait(watch, current):
                        self._stopped = True
                    continue
                # A rotation (or the live file of a stopped container): on once complete.
                if not self._complete(current, watch):
                    await self._wait_settle(watch, current)
                    continue
                yield END_OF_FILE
                if current.stamp is None and current.rotated:
                    self._identify(current)
                if current.stamp is not None and current.stamp > self.done_stamp:
                    self.done_stamp = current.stamp
                current.close()
                current = None
        finally:
            if current is not None:
                current.close()
            for other in queue:
                other.close()
            if watch is not None and self._watcher is not None:
                self._watcher.unwatch(self.log.parent)

    # -- which files ---------------------------------------------------------------------------

    def _initial_files(self) -> list[_File]:
        """Opened files, oldest first, from the first that may hold lines at or after since."""
        rotated = rotations(self.log)
        ends = [self._end_ns(rotation, rotated[i + 1 :]) for i, rotation in enumerate(rotated)]
        first = 0
        for index, end_ns in enumerate(ends):
            if end_ns is not None and end_ns + MTIME_MARGIN_NS < self.since_ns:
                first = index + 1
            else:
                break
        skipped, kept = rotated[:first], rotated[first:]
        if skipped:
            self.done_stamp = skipped[-1].stamp
            self.start.continued_streams = self._open_streams(skipped)
        files: list[_File] = []
        for rotation in kept:
            opened = _open_rotation(rotation)
            if opened is not None:
                files.append(opened)
        done = max([self.done_stamp, *(f.stamp or "" for f in files)])
        # Then the live file, after any rotation that came meanwhile.
        while (following := self._next_file(done)) is not None:
            files.append(following)
            if following.stamp is None:
                break
            done = following.stamp
        self.start.from_oldest_rotation = not skipped and bool(rotated)
        if files:
            self.start.first_line_ns = _first_line_ns(files[0].path, files[0].compressed)
        self.start.files = [str(f.path) for f in files]
        return files

    def _end_ns(self, rotation: Rotation, later: list[Rotation]) -> int | None:
        """When the rotation's last line was written, at the latest; None: unknown."""
        if not rotation.compressed:
            with contextlib.suppress(OSError):
                return os.stat(rotation.path).st_mtime_ns
            return None
        following = later[0] if later else None
        if following is None:
            return _first_line_ns(self.log, False)
        return _first_line_ns(following.path, following.compressed)

    def _open_streams(self, skipped: list[Rotation]) -> frozenset[str]:
        """The streams whose last line in the files not read is a `P` (continued after them).

        Newest first, until each stream's last line is found: a stream silent for a whole
        file (a line left unfinished while the other stream filled it) is found further back.
        """
        found: dict[str, bool] = {}
        for rotation in reversed(skipped):
            try:
                if rotation.compressed:
                    with gzip.open(rotation.path, "rb") as compressed:
                        data = compressed.read()
                else:
                    data = rotation.path.read_bytes()
            except (OSError, EOFError, zlib.error):
                continue
            for stream, partial in parser.last_parts(data).items():
                found.setdefault(stream, partial)
            if len(found) == 2:
                break
        return frozenset(stream for stream, partial in found.items() if partial)

    def _next_file(self, done: str | None = None) -> _File | None:
        """The oldest file after those done: a rotation newer than `done` (`done_stamp`),
        else the live file (checked against a rotation that raced with opening it)."""
        done = self.done_stamp if done is None else done
        for _ in range(5):
            newer = [r for r in rotations(self.log) if r.stamp > done]
            self._note_vanished(newer, done)
            self._seen_stamps.update(r.stamp for r in newer)
            if newer:
                opened = _open_rotation(newer[0])
                if opened is not None:
                    return opened
                continue  # compressed or deleted between listing and opening: list again
            fd = open_readonly(self.log)
            if fd is None:
                return None
            live = _File(fd, self.log, None, inode=fd_inode(fd))
            newer = [r for r in rotations(self.log) if r.stamp > done]
            if not newer:
                return live
            if not newer[0].compressed and path_inode(newer[0].path) == live.inode:
                # Rotated between our listing and the open: it is that rotation.
                live.stamp, live.path, live.rotated = newer[0].stamp, newer[0].path, True
                return live
            live.close()  # a rotation came first: read it first
        return None

    def _note_vanished(self, newer: list[Rotation], done: str) -> None:
        """Rotations seen earlier, newer than those done, that are gone unread."""
        present = {r.stamp for r in newer}
        first = newer[0].stamp if newer else None
        for stamp in sorted(self._seen_stamps):
            if stamp <= done or stamp in present:
                continue
            if first is None or stamp < first:
                self._seen_stamps.discard(stamp)
                if self._on_lost is not None:
                    self._on_lost(f"{self.log.name}.{stamp}")

    def _identify(self, held: _File) -> None:
        """The rotation stamp of the live file we held and was rotated (see module doc)."""
        newer = [r for r in rotations(self.log) if r.stamp > self.done_stamp]
        for rotation in newer:
            if not rotation.compressed and path_inode(rotation.path) == held.inode:
                held.stamp = rotation.stamp
                return
        size = _fd_size(held.fd)
        for rotation in newer:
            if rotation.compressed:
                if _gzip_size(rotation.path) == size % (1 << 32):
                    held.stamp = rotation.stamp
                return  # only the oldest newer one can be ours
            break
        # Deleted already (or not recognisable): done_stamp stays, nothing newer is skipped.

    # -- completeness and waiting --------------------------------------------------------------

    def _complete(self, held: _File, watch: _WatchLike | None) -> bool:
        """No more lines will be written to this file (see the module docstring)."""
        if held.compressed:
            return True
        if watch is not None and watch.closed is not None:
            name = self._current_name(held)
            if name is not None and os.fsencode(name) in watch.closed:
                return True
        try:
            st = os.fstat(held.fd)
        except OSError:
            return True
        changed_ns = max(st.st_mtime_ns, st.st_ctime_ns)
        return time.time_ns() - changed_ns >= self._settle_s * 1e9

    def _current_name(self, held: _File) -> str | None:
        if held.stamp is not None:
            return held.path.name
        if not held.rotated:
            return self.log.name
        for rotation in rotations(self.log):
            if not rotation.compressed and path_inode(rotation.path) == held.inode:
                return rotation.path.name
        return None

    async def _wait_settle(self, watch: _WatchLike | None, held: _File) -> None:
        """Until the held file may be complete or has more lines: an event, or a tick."""
        if watch is not None:
            watch.event.clear()
            if _fd_size(held.fd) > _fd_position(held.fd):
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.event.wait(), timeout=min(0.25, self._settle_s))
            return
        await asyncio.sleep(min(POLL_INTERVAL_S, self._settle_s))

    async def _wait(self, watch: _WatchLike | None, held: _File | None) -> bool:
        """Until there may be more to read; False once the container has stopped."""
        if self._nudge is not None and self._nudge.is_set():
            self._nudge.clear()
            if not await self._still_running():
                return False
        if watch is None:
            waited = 0.0
            while waited < SAFETY_CHECK_S:
                await asyncio.sleep(POLL_INTERVAL_S)
                waited += POLL_INTERVAL_S
                if self._more(held) or (self._nudge is not None and self._nudge.is_set()):
                    return True
            return await self._still_running()
        watch.event.clear()
        if self._more(held):
            return True
        if (
            not self._asked_after_close
            and watch.closed is not None
            and os.fsencode(self.log.name) in watch.closed
        ):
            # containerd closes the live file when the container exits.
            self._asked_after_close = True
            if not await self._still_running():
                return False
        waiters = {asyncio.ensure_future(watch.event.wait())}
        if self._nudge is not None:
            waiters.add(asyncio.ensure_future(self._nudge.wait()))
        try:
            done, _ = await asyncio.wait(
                waiters,
                timeout=SAFETY_CHECK_S * (0.5 + random.random()),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        if not done:
            return await self._still_running()
        return True

    def _more(self, held: _File | None) -> bool:
        """Whether the held file grew or was rotated (or the live file appeared)."""
        if held is None:
            return path_inode(self.log) is not None or bool(rotations(self.log))
        if _fd_size(held.fd) > _fd_position(held.fd):
            return True
        return path_inode(self.log) != held.inode


class _WatchLike(Protocol):
    """What the tail uses of the shared directory watch (sources/files.py)."""

    event: asyncio.Event
    closed: set[bytes] | None


def _open_rotation(rotation: Rotation) -> _File | None:
    fd = open_readonly(rotation.path)
    if fd is None:
        return None
    opened = _File(fd, rotation.path, rotation.stamp, rotation.compressed, inode=fd_inode(fd))
    opened.rotated = True
    if rotation.compressed:
        opened.reader = gzip.GzipFile(fileobj=os.fdopen(os.dup(fd), "rb"), mode="rb")
    return opened


def _fd_size(fd: int) -> int:
    return os.fstat(fd).st_size


def _fd_position(fd: int) -> int:
    return os.lseek(fd, 0, os.SEEK_CUR)


def _first_line_ns(path: Path, compressed: bool) -> int | None:
    """The timestamp of a file's first line; None if it has none (yet) or is unreadable."""
    try:
        if compressed:
            with gzip.open(path, "rb") as file:
                head = file.read(FIRST_LINE_BYTES)
        else:
            with open(path, "rb") as file:
                head = file.read(FIRST_LINE_BYTES)
    except (OSError, EOFError, zlib.error):
        return None
    return parser.line_timestamp(head)


def _gzip_size(path: Path) -> int | None:
    """The uncompressed size modulo 2**32 a gzip file's trailer records (ISIZE)."""
    try:
        with open(path, "rb") as file:
            file.seek(-4, os.SEEK_END)
            trailer = file.read(4)
    except OSError:
        return None
    return int(struct.unpack("<I", trailer)[0]) if len(trailer) == 4 else None
