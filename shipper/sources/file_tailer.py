"""Reads a container's json-file logs straight from disk: the fast path past the logs API.

When the shipper sees Docker's container directory (same host, or the directory mounted
read-only), reading `<id>-json.log` itself saves dockerd from decoding the file and framing
the stream for us, and us from a socket hop. The bytes go to `JsonFileDecoder`, which gives
the same records (and `_id`s) the API would, so read modes can change between restarts.

Which files, from a checkpoint's `since`: Docker rotates `<id>-json.log` by renaming it to
`.1` (`.1` to `.2`, ...; the oldest beyond max-file is deleted) and creating a new one. Lines
are in timestamp order within and across the files, so every rotated file whose last write
(mtime, +1 s for the kernel's coarse clock) is not older than `since` is read, oldest first,
then the live file; the decoder drops lines stamped before `since`.

Rotation while following: files are identified by inode, never by name. Every file is
opened before it is read, and a file we hold stays readable after Docker renames or even
deletes it. When the live name points to another inode, the file we hold is read to its end
(Docker closed it before renaming it: it is complete), then the files that came after it
(those with a lower rotation number than its new place, then the new live file) follow. A
16 KiB partial split across a rotation is two json entries in two files; the decoder joins
entries whatever file they came from.

Waiting: one inotify instance (via libc, no dependency) watches each followed container's
directory; a write, a rotation or Docker rewriting the container's `config.v2.json` (which it
does on every state change, e.g. when the container dies) wakes the tailer. Idle containers
cost nothing. Without inotify the tailer polls with `fstat`/`stat`, every 0.25 s.

Stopping: when the directory says the container's state changed (or once a minute as a
safety net), the tailer asks `still_running()`. When it has stopped, the file is read to its
end once more and the stream ends, as the API's follow stream ends.

Compressed rotated files (`compress=true`) are not read here: such containers use the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import random
import struct
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from shipper.model import ContainerMeta

READ_BYTES: Final = 256 * 1024  # as the API chunks: bounds memory with many busy containers
POLL_INTERVAL_S: Final = 0.25
SAFETY_CHECK_S: Final = 60.0
MTIME_MARGIN_NS: Final = 1_000_000_000


def visible_log_path(meta: ContainerMeta, containers_path: str | None) -> Path | None:
    """Where this shipper sees the container's json-file log, or None to use the API."""
    return log_file_choice(meta, containers_path)[0]


def log_file_choice(meta: ContainerMeta, containers_path: str | None) -> tuple[Path | None, str]:
    """The container's json-file log as seen here, or None; and why, for the start log."""
    if meta.log_driver != "json-file" or not meta.log_path:
        return None, f"its log driver is {meta.log_driver or 'unknown'}, not json-file"
    if meta.log_opts.get("compress", "false").lower() in ("true", "1"):
        return None, "its rotated logs are compressed (compress=true)"
    if containers_path is None:
        return None, "Docker's containers directory is unknown (set docker.containers_path)"
    log_path = Path(meta.log_path)
    # Docker's data-root may be mounted elsewhere here: keep `<id>/<id>-json.log` only.
    candidate = Path(containers_path) / log_path.parent.name / log_path.name
    if log_path.parent.name != meta.id:
        return None, f"its LogPath {meta.log_path} is not in a directory named after it"
    if not os.access(candidate.parent, os.R_OK | os.X_OK):
        return None, f"{candidate.parent} is not readable here (docker.containers_path)"
    return candidate, f"its json-file log is readable at {candidate}"


@dataclass
class _Watch:
    event: asyncio.Event = field(default_factory=asyncio.Event)
    state_changed: bool = False  # something other than the log files changed
    log_prefix: bytes = b""
    # Names of the files a writer closed (IN_CLOSE_WRITE) since the watch began, when asked
    # for (`track_closes`): the CRI tail learns from it that a rotated file is complete.
    closed: set[bytes] | None = None


class DirectoryWatcher:
    """One inotify instance for every followed container directory (Linux)."""

    # IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE |
    # IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
    _MASK: Final = 0x002 | 0x004 | 0x008 | 0x040 | 0x080 | 0x100 | 0x200 | 0x400 | 0x800
    _IN_CLOSE_WRITE: Final = 0x008
    _IN_IGNORED: Final = 0x8000
    _IN_Q_OVERFLOW: Final = 0x4000
    _HEADER: Final = struct.Struct("iIII")

    def __init__(self) -> None:
        self._libc: ctypes.CDLL | None = None
        self._fd = -1
        self._watches: dict[int, _Watch] = {}
        self._by_path: dict[str, tuple[int, int]] = {}  # path -> (wd, users)
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, AttributeError):
            return
        if fd < 0:
            return
        self._libc = libc
        self._fd = fd
        asyncio.get_running_loop().add_reader(fd, self._on_readable)

    @property
    def available(self) -> bool:
        return self._fd >= 0

    def watch(
        self,
        directory: Path,
        log_name: str,
        *,
        track_closes: bool = False,
        mask: int | None = None,
        event: asyncio.Event | None = None,
    ) -> _Watch | None:
        """Wakes the returned watch's event on any change in `directory`; None: poll.

        For the directory's first user: `mask`, only on these inotify events; `event`, the
        event to set (one for many directories)."""
        if self._libc is None:
            return None
        key = str(directory)
        known = self._by_path.get(key)
        if known is not None:
            wd, users = known
            self._by_path[key] = (wd, users + 1)
            watch = self._watches[wd]
            if track_closes and watch.closed is None:
                watch.closed = set()
            return watch
        wd = self._libc.inotify_add_watch(
            self._fd, os.fsencode(directory), self._MASK if mask is None else mask
        )
        if wd < 0:
            return None  # e.g. ENOSPC: max_user_watches reached; this one polls
        watch = _Watch(log_prefix=log_name.encode(), closed=set() if track_closes else None)
        if event is not None:
            watch.event = event
        self._watches[wd] = watch
        self._by_path[key] = (wd, 1)
        return watch

    def unwatch(self, directory: Path) -> None:
        key = str(directory)
        known = self._by_path.get(key)
        if known is None or self._libc is None:
            return
        wd, users = known
        if users > 1:
            self._by_path[key] = (wd, users - 1)
            return
        del self._by_path[key]
        self._watches.pop(wd, None)
        self._libc.inotify_rm_watch(self._fd, wd)

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
            self._libc = None

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 256 * 1024)
        except BlockingIOError:
            return
        except OSError:
            return
        pos = 0
        header = self._HEADER
        while pos + header.size <= len(data):
            wd, mask, _cookie, length = header.unpack_from(data, pos)
            name = data[pos + header.size : pos + header.size + length].rstrip(b"\0")
            pos += header.size + length
            if mask & self._IN_Q_OVERFLOW:
                for every in self._watches.values():
                    every.state_changed = True
                    every.event.set()
                continue
            watch = self._watches.get(wd)
            if watch is None:
                continue
            if mask & self._IN_IGNORED:
                # The directory is gone (container removed): wake the tailer to find out.
                watch.state_changed = True
            elif not name.startswith(watch.log_prefix):
                watch.state_changed = True
            if mask & self._IN_CLOSE_WRITE and watch.closed is not None:
                watch.closed.add(name)
            watch.event.set()


_watchers: dict[int, DirectoryWatcher] = {}


def shared_watcher() -> DirectoryWatcher:
    """The running loop's watcher (one inotify descriptor per process and loop)."""
    loop = asyncio.get_running_loop()
    watcher = _watchers.get(id(loop))
    if watcher is None:
        watcher = _watchers[id(loop)] = DirectoryWatcher()
    return watcher


def _rotated(path: Path) -> list[Path]:
    """`<log>.N`, oldest (highest N) first."""
    numbered = []
    prefix = path.name + "."
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    for name in names:
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            numbered.append((int(name[len(prefix) :]), path.parent / name))
    return [p for _, p in sorted(numbered, reverse=True)]


def open_readonly(path: Path) -> int | None:
    """A read-only descriptor of `path`, or None if it does not exist (any more)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def fd_inode(fd: int) -> tuple[int, int]:
    """(device, inode) of an open file: what identifies it across renames."""
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def path_inode(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at `path` now, or None if there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class JsonFileTail:
    """The bytes of a container's json-file logs from `since_ns` on, following rotation."""

    def __init__(
        self,
        path: Path,
        *,
        since_ns: int,
        follow: bool,
        still_running: Callable[[], Awaitable[bool]],
        watcher: DirectoryWatcher | None = None,
    ) -> None:
        self.path = path
        self.since_ns = since_ns
        self.follow = follow
        self._still_running = still_running
        self._watcher = watcher
        self.files_read = 0
        self.rotations = 0

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        watch = None
        if self.follow and self._watcher is not None:
            watch = self._watcher.watch(self.path.parent, self.path.name)
        queue = self._initial_files()
        fd: int | None = None
        try:
            while True:
                if fd is None:
                    if not queue:
                        if not self.follow:
                            return
                        queue = self._files_after(None)
                        if not queue:
                            # The live file does not exist yet (or the container is gone).
                            if not await self._wait(watch, None):
                                return
                            continue
                    fd = queue.pop(0)
                    self.files_read += 1
                # Read the held file to its (current) end.
                while True:
                    data = os.read(fd, READ_BYTES)
                    if not data:
                        break
                    yield data
                if queue:
                    os.close(fd)
                    fd = None
                    continue
                if not self.follow:
                    return
                # At the end of the newest file known: has it been rotated away?
                current = fd_inode(fd)
                if path_inode(self.path) not in (None, current):
                    following = self._files_after(current)
                    data = os.read(fd, READ_BYTES)  # written just before the rename
                    if data:
                        yield data
                        for other in following:
                            os.close(other)
                        continue
                    os.close(fd)
                    fd = None
                    queue = following
                    self.rotations += 1
                    continue
                if not await self._wait(watch, fd):
                    # Stopped: what Docker wrote last is in the file now; read it, then end.
                    while data := os.read(fd, READ_BYTES):
                        yield data
                    return
        finally:
            if fd is not None:
                os.close(fd)
            for other in queue:
                os.close(other)
            if watch is not None and self._watcher is not None:
                self._watcher.unwatch(self.path.parent)

    def _initial_files(self) -> list[int]:
        """Open file descriptors, oldest first, of every file that may hold lines >= since."""
        fds: list[int] = []
        for path in _rotated(self.path):
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_mtime_ns + MTIME_MARGIN_NS < self.since_ns:
                    continue
            fd = open_readonly(path)
            if fd is not None:
                fds.append(fd)
        fd = open_readonly(self.path)
        if fd is not None:
            fds.append(fd)
        return _dedupe(fds)

    def _files_after(self, inode: tuple[int, int] | None) -> list[int]:
        """Open descriptors of the files newer than the one with `inode` (all if unknown)."""
        fds = [
            fd
            for fd in (open_readonly(p) for p in [*_rotated(self.path), self.path])
            if fd is not None
        ]
        fds = _dedupe(fds)
        if inode is None:
            return fds
        for index, fd in enumerate(fds):
            if fd_inode(fd) == inode:
                for older in fds[: index + 1]:
                    os.close(older)
                return fds[index + 1 :]
        # Ours was deleted by rotation already: every file there is newer.
        return fds

    async def _wait(self, watch: _Watch | None, fd: int | None) -> bool:
        """Waits until there may be more to read; False once the container has stopped."""
        if watch is None:
            # Polling: cheap checks only; ask Docker only when the directory changed.
            mtime = _mtime_ns(self.path.parent)
            waited = 0.0
            while waited < SAFETY_CHECK_S:
                await asyncio.sleep(POLL_INTERVAL_S)
                waited += POLL_INTERVAL_S
                if _mtime_ns(self.path.parent) != mtime:
                    return await self._still_running()
                if self._more(fd):
                    return True
            return await self._still_running()
        if watch.state_changed:
            watch.state_changed = False
            if not await self._still_running():
                return False
        watch.event.clear()
        if self._more(fd):  # written between our last read and the clear
            return True
        timeout = SAFETY_CHECK_S * (0.5 + random.random())
        try:
            await asyncio.wait_for(watch.event.wait(), timeout)
        except TimeoutError:
            return await self._still_running()
        if watch.state_changed:
            watch.state_changed = False
            return await self._still_running()
        return True

    def _more(self, fd: int | None) -> bool:
        """Whether the held file grew or was rotated (or the live file appeared)."""
        if fd is None:
            return path_inode(self.path) is not None
        if os.fstat(fd).st_size > os.lseek(fd, 0, os.SEEK_CUR):
            return True
        return path_inode(self.path) not in (None, fd_inode(fd))


def _mtime_ns(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return -1


def _dedupe(fds: list[int]) -> list[int]:
    """Drops descriptors of an inode already opened (a rename raced with the listing)."""
    seen: set[tuple[int, int]] = set()
    out = []
    for fd in fds:
        inode = fd_inode(fd)
        if inode in seen:
            os.close(fd)
        else:
            seen.add(inode)
            out.append(fd)
    return out
