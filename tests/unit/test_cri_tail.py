"""Which bytes of a container's CRI log files the tail hands over, in which order, across
rotations written as containerd and kubelet write them (files played by the test)."""

from __future__ import annotations

import asyncio
import gzip
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shipper.sources.cri.tail import END_OF_FILE, CriLogTail
from shipper.sources.files import DirectoryWatcher

S = 1_000_000_000
T0 = 1_796_000_000 * S  # 2026-12-...


def stamp(ns: int) -> bytes:
    seconds, nanos = divmod(ns, S)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode() + b".%09dZ" % nanos


def line(ns: int, text: str, stream: str = "stdout", tag: str = "F") -> bytes:
    return stamp(ns) + f" {stream} {tag} {text}\n".encode()


class Writer:
    """containerd's side: an open log file, appended to."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def close(self) -> None:
        os.close(self.fd)


class Running:
    def __init__(self) -> None:
        self.running = True

    async def __call__(self) -> bool:
        return self.running


async def until(predicate: Callable[[], bool], what: str, timeout_s: float = 5) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


class Reader:
    """Runs a tail's chunks into a list."""

    def __init__(self, tail: CriLogTail) -> None:
        self.tail = tail
        self.chunks: list[bytes] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for chunk in self.tail.chunks():
            self.chunks.append(chunk)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    def files(self) -> list[bytes]:
        """The bytes per file: END_OF_FILE separates them."""
        out = [b""]
        for chunk in self.chunks:
            if chunk == END_OF_FILE:
                out.append(b"")
            else:
                out[-1] += chunk
        return out


@pytest.fixture
async def watcher() -> DirectoryWatcher:
    watcher = DirectoryWatcher()
    assert watcher.available
    return watcher


@pytest.mark.parametrize("inotify", [True, False], ids=["inotify", "polling"])
async def test_a_line_in_progress_at_rotation_ends_the_renamed_file_before_the_new_one(
    tmp_path: Path, inotify: bool
) -> None:
    """After ReopenContainerLog containerd writes the held part into the renamed file after
    the new file has lines, then closes it: the new file is read only after that."""
    log = tmp_path / "0.log"
    first = Writer(log)
    first.write(line(T0, "before"))
    running = Running()
    nudge = asyncio.Event()  # discovery's, when its listing shows the container exited
    tail = CriLogTail(
        log,
        since_ns=0,
        follow=True,
        still_running=running,
        watcher=DirectoryWatcher() if inotify else None,
        nudge=nudge,
        settle_s=0.5,
    )
    reader = Reader(tail)
    await until(lambda: b"before" in reader.data, "the first line")
    rotated = tmp_path / "0.log.20261206-153557"
    os.rename(log, rotated)
    second = Writer(log)  # the reopen
    second.write(line(T0 + 2, "err", "stderr"))
    await asyncio.sleep(0.1)
    assert b"err" not in reader.data, "the new file was read before the renamed one was closed"
    first.write(line(T0 + 3, "head ", "stdout", "P"))  # the old reader's late part
    first.close()  # IN_CLOSE_WRITE under the rotated name
    second.write(line(T0 + 1, "tail"))
    await until(lambda: b"tail" in reader.data, "the new file")
    running.running = False
    nudge.set()
    second.close()
    await asyncio.wait_for(reader.task, 5)
    assert reader.files() == [
        line(T0, "before") + line(T0 + 3, "head ", "stdout", "P"),
        line(T0 + 2, "err", "stderr") + line(T0 + 1, "tail"),
    ]
    assert tail.rotations == 1


async def test_the_close_of_the_renamed_file_moves_on_without_waiting_to_settle(
    tmp_path: Path, watcher: DirectoryWatcher
) -> None:
    log = tmp_path / "0.log"
    first = Writer(log)
    first.write(line(T0, "a"))
    running = Running()
    tail = CriLogTail(
        log, since_ns=0, follow=True, still_running=running, watcher=watcher, settle_s=30
    )
    reader = Reader(tail)
    await until(lambda: b" a\n" in reader.data, "the first line")
    os.rename(log, tmp_path / "0.log.20261206-153557")
    second = Writer(log)
    second.write(line(T0 + 1, "b"))
    first.close()
    await until(lambda: b" b\n" in reader.data, "the new file, long before settle_s", 3)
    running.running = False
    second.close()
    await asyncio.wait_for(reader.task, 40)


async def test_a_resume_skips_old_rotations_and_names_the_streams_they_left_open(
    tmp_path: Path,
) -> None:
    log = tmp_path / "0.log"
    oldest = tmp_path / "0.log.20261206-153500.gz"
    oldest.write_bytes(gzip.compress(line(T0, "one") + line(T0 + S, "two", "stderr", "P")))
    older = tmp_path / "0.log.20261206-153510"
    older.write_bytes(line(T0 + 10 * S, "three") + line(T0 + 11 * S, "four", "stdout", "P"))
    os.utime(older, ns=(T0 + 11 * S, T0 + 11 * S))
    recent = tmp_path / "0.log.20261206-153520"
    recent.write_bytes(line(T0 + 20 * S, "five"))
    os.utime(recent, ns=(T0 + 20 * S, T0 + 20 * S))
    log.write_bytes(line(T0 + 30 * S, "six"))
    os.utime(log, ns=(T0 + 30 * S, T0 + 30 * S))
    tail = CriLogTail(log, since_ns=T0 + 15 * S, follow=False, still_running=Running())
    reader = Reader(tail)
    await asyncio.wait_for(reader.task, 5)
    # The gzipped one ends where the plain one after it begins: both are older than since.
    assert reader.files() == [line(T0 + 20 * S, "five"), line(T0 + 30 * S, "six")]
    assert tail.start.continued_streams == {"stdout", "stderr"}
    assert not tail.start.from_oldest_rotation
    assert tail.start.first_line_ns == T0 + 20 * S


async def test_a_compressed_rotation_of_what_was_read_is_not_read_again(
    tmp_path: Path, watcher: DirectoryWatcher
) -> None:
    """The shipper fell behind: the live file it reads is rotated, and by the next rotation
    kubelet has compressed it (a new inode): the .gz is the same lines, and is skipped."""
    log = tmp_path / "0.log"
    first = Writer(log)
    first.write(line(T0, "a"))
    running = Running()
    tail = CriLogTail(
        log, since_ns=0, follow=True, still_running=running, watcher=watcher, settle_s=0.05
    )
    iterator = tail.chunks()
    assert await iterator.__anext__() == line(T0, "a")
    # Meanwhile (the tail is not asked for more): more lines, a rotation, a second one that
    # compresses the first, and the live file.
    first.write(line(T0 + 1, "b"))
    first.close()
    rotated = tmp_path / "0.log.20261206-153557"
    os.rename(log, rotated)
    second = Writer(log)
    second.write(line(T0 + 2, "c"))
    second.close()
    rotated.with_name(rotated.name + ".gz").write_bytes(gzip.compress(rotated.read_bytes()))
    rotated.unlink()
    os.rename(log, tmp_path / "0.log.20261206-153607")
    third = Writer(log)
    third.write(line(T0 + 3, "d"))
    chunks = []
    async for chunk in iterator:
        chunks.append(chunk)
        if b" d\n" in b"".join(chunks):
            break
    assert b"".join(chunks) == line(T0 + 1, "b") + line(T0 + 2, "c") + line(T0 + 3, "d")
    await iterator.aclose()
    third.close()


async def test_a_rotation_deleted_before_it_was_read_is_reported(
    tmp_path: Path, watcher: DirectoryWatcher
) -> None:
    """Far behind: while the tail reads one rotation, kubelet deletes a newer one it saw but
    had not opened yet (files it holds stay readable: those are never lost)."""
    log = tmp_path / "0.log"
    first = Writer(log)
    first.write(line(T0, "a"))
    first.close()
    lost: list[str] = []
    tail = CriLogTail(
        log,
        since_ns=0,
        follow=True,
        still_running=Running(),
        watcher=watcher,
        on_lost=lost.append,
        settle_s=0.05,
    )
    iterator = tail.chunks()
    assert await iterator.__anext__() == line(T0, "a")
    # Rotated three times while the tail was not reading.
    names = ["0.log.20261206-153500", "0.log.20261206-153510", "0.log.20261206-153520"]
    os.rename(log, tmp_path / names[0])
    (tmp_path / names[1]).write_bytes(line(T0 + 1, "b"))
    (tmp_path / names[2]).write_bytes(line(T0 + 2, "c"))
    live = Writer(log)
    live.write(line(T0 + 3, "d"))
    await asyncio.sleep(0.1)  # older than settle_s: complete
    assert await iterator.__anext__() == END_OF_FILE  # the first, read to its end
    assert await iterator.__anext__() == line(T0 + 1, "b")  # the next, opened; c seen
    (tmp_path / names[2]).unlink()  # kubelet deleted c before it was opened
    rest = []
    async for chunk in iterator:
        rest.append(chunk)
        if b" d\n" in chunk:
            break
    await iterator.aclose()
    live.close()
    assert rest == [END_OF_FILE, line(T0 + 3, "d")]
    assert lost == [names[2]]
