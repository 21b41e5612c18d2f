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
import os
import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path

from shipper.model import ContainerMeta
from shipper.sources.files import (
    MTIME_MARGIN_NS,
    POLL_INTERVAL_S,
    READ_BYTES,
    SAFETY_CHECK_S,
    DirectoryWatcher,
    Watch,
    fd_inode,
    open_readonly,
    path_inode,
)


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

    async def _wait(self, watch: Watch | None, fd: int | None) -> bool:
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
