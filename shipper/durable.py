"""How the shipper's own state reaches the disk: each durability step defined once.

The disk buffer's segments and acks file, the checkpoints file and the dead-letter file all
rest on the same few steps, and a mistake in any of them is lost data after a power cut:

* `write_all`: a write is not done until every byte is (a short write is not an error);
* `fsync_file`, `fsync_directory`: data, then the directory entry that names it;
* `replace_atomically`: tmp → write → fsync → rename → fsync(dir), so a reader finds the old
  file or the new one, never a torn one; the tmp file never outlives a failure;
* `raise_if_disk_full`: ENOSPC and EDQUOT become `DiskFullError` (reading pauses, nothing is
  lost); every other OSError stays what it is.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from shipper.errors import DiskFullError

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def raise_if_disk_full(exc: OSError, doing: str) -> None:
    """Raises DiskFullError (from `exc`) if `exc` says the disk or the quota is full."""
    if exc.errno in DISK_FULL_ERRNOS:
        raise DiskFullError(f"disk full while {doing}: {exc.strerror}") from exc


def write_all(fd: int, data: bytes | bytearray, offset: int | None = None) -> None:
    """Writes every byte of `data` at `offset` (None: at the file's position)."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        if offset is None:
            done += os.write(fd, view[done:])
        else:
            done += os.pwrite(fd, view[done:], offset + done)


def fsync_file(path: Path) -> None:
    """Makes what was written to the file at `path` durable; nothing if it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # deleted meanwhile (e.g. a fully acknowledged segment): nothing to keep
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(directory: Path) -> None:
    """Makes creates, renames and deletes in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(path: Path, data: bytes, *, fsync: bool = True, mode: int = 0o600) -> None:
    """Replaces `path` with `data`; on any failure the old file stays as it was.

    Without `fsync` (storage.fsync: never) the rename still makes the swap atomic for
    readers, but a power cut may leave the old file or an empty one.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if fsync:
            fsync_directory(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
