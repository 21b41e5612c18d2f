"""Following files on disk: what the json-file tail (Docker) and the CRI tail share.

Both tails identify a file by its inode, never by its name, so a rename, a compression or a
deletion by the runtime or kubelet never cuts a read short: every file is opened before it
is read, and a file held stays readable. Both wait on one inotify instance per process (via
libc, no dependency) that watches each followed container's directory: a write, a rename or
a close wakes the tail, and idle containers cost nothing. Where inotify is not available (or
its watches run out) a tail polls every `POLL_INTERVAL_S`, and every tail asks the runtime
whether its container still runs at least every `SAFETY_CHECK_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

READ_BYTES: Final = 256 * 1024  # as the API chunks: bounds memory with many busy containers
POLL_INTERVAL_S: Final = 0.25
SAFETY_CHECK_S: Final = 60.0
# A file's mtime is the kernel's coarse clock: a file last written up to this long before a
# line's timestamp may still hold that line.
MTIME_MARGIN_NS: Final = 1_000_000_000


@dataclass
class Watch:
    """What one watched directory tells its tail: woken on any change, and what changed."""

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
        self._watches: dict[int, Watch] = {}
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
    ) -> Watch | None:
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
        watch = Watch(log_prefix=log_name.encode(), closed=set() if track_closes else None)
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
