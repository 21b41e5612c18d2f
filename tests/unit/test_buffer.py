"""The disk buffer: round trips, segments on disk, acks, recovery, caps, full disks, fsync."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shipper.buffer import BufferBatch, BufferClosedError, DiskBuffer, SegmentQueue
from shipper.buffer import format as fmt
from shipper.buffer.ledger import FsyncPolicy
from shipper.buffer.tail_cache import DEFAULT_TAIL_CACHE_BYTES
from shipper.errors import DiskFullError

HEADER = fmt.SEGMENT_HEADER_SIZE
FRAME = fmt.FRAME_HEADER_SIZE


def framed(*sizes: int) -> int:
    """Bytes of one block (one append) holding entries of these sizes."""
    return FRAME + 4 + 4 * len(sizes) + sum(sizes)


ONE = framed(20)  # a block of one default entry


def entry(number: int, size: int = 20) -> bytes:
    text = f"entry-{number:04d}:".encode()
    return text + b"x" * max(0, size - len(text))


def seg_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.seg"))


def seg_path(directory: Path, segment_id: int) -> Path:
    return directory / fmt.segment_name(segment_id)


def size_of(path: Path) -> int:
    return os.path.getsize(path)


class Reports:
    def __init__(self) -> None:
        self.calls: list[tuple[Path, str]] = []

    def __call__(self, path: Path, reason: str) -> None:
        self.calls.append((path, reason))


def open_core(
    directory: Path,
    *,
    segment_max_bytes: int = 1 << 20,
    fsync: FsyncPolicy = "batch",
    on_corrupt: Callable[[Path, str], None] | None = None,
    tail_cache_bytes: int = DEFAULT_TAIL_CACHE_BYTES,
) -> SegmentQueue:
    return SegmentQueue.open(
        directory,
        segment_max_bytes=segment_max_bytes,
        fsync=fsync,
        on_corrupt=on_corrupt,
        tail_cache_bytes=tail_cache_bytes,
    )


def open_buffer(
    directory: Path,
    *,
    max_bytes: int = 1 << 30,
    segment_max_bytes: int = 1 << 20,
    fsync: FsyncPolicy = "batch",
    on_corrupt: Callable[[Path, str], None] | None = None,
) -> DiskBuffer:
    return DiskBuffer.open(
        directory,
        max_bytes=max_bytes,
        segment_max_bytes=segment_max_bytes,
        fsync=fsync,
        on_corrupt=on_corrupt,
    )


def drain(queue: SegmentQueue, max_entries: int = 1000) -> Iterator[BufferBatch]:
    while (batch := queue.read(max_entries, 1 << 30)) is not None:
        yield batch


def drain_entries(queue: SegmentQueue) -> list[bytes]:
    return [e for batch in drain(queue) for e in batch.entries]


# ---------------------------------------------------------------------- round trips


async def test_append_read_ack_round_trip(tmp_path: Path) -> None:
    buffer = open_buffer(tmp_path)
    await buffer.append([entry(0), entry(1)])
    await buffer.append([entry(2)])
    assert (buffer.records_held, buffer.bytes_held) == (3, framed(20, 20) + ONE)

    batch = await buffer.read(10, 1 << 20, timeout_s=0)
    assert batch is not None
    assert batch.entries == [entry(0), entry(1), entry(2)]
    assert await buffer.read(10, 1 << 20, timeout_s=0) is None  # handed out once
    assert buffer.records_held == 3  # handed out is not acknowledged

    buffer.ack(batch)
    assert (buffer.records_held, buffer.bytes_held) == (0, 0)
    assert buffer.oldest_unacked_age_s == 0.0
    await buffer.close()


async def test_read_respects_max_entries_and_max_bytes(tmp_path: Path) -> None:
    buffer = open_buffer(tmp_path)
    for i in range(5):
        await buffer.append([entry(i)])
    await buffer.append([entry(5, size=500)])
    first = await buffer.read(2, 1 << 20, timeout_s=0)
    second = await buffer.read(10, 45, timeout_s=0)  # 20 + 20 fits, a third would not
    third = await buffer.read(10, 45, timeout_s=0)
    big = await buffer.read(10, 45, timeout_s=0)  # larger than max_bytes: handed out alone
    assert first is not None and second is not None and third is not None and big is not None
    assert first.entries == [entry(0), entry(1)]
    assert second.entries == [entry(2), entry(3)]
    assert third.entries == [entry(4)]
    assert big.entries == [entry(5, size=500)]
    await buffer.close()


async def test_a_block_is_handed_out_whole_and_appends_are_cut_into_blocks(
    tmp_path: Path,
) -> None:
    buffer = open_buffer(tmp_path)
    await buffer.append([entry(i) for i in range(5)])  # one block
    whole = await buffer.read(2, 30, timeout_s=0)
    assert whole is not None and whole.entries == [entry(i) for i in range(5)]
    assert (whole.count, whole.size, len(whole.blocks)) == (5, 100, 1)
    assert whole.bodies == [b"".join(entry(i) for i in range(5))]
    await buffer.close()

    cut = DiskBuffer.open(
        tmp_path / "cut",
        max_bytes=1 << 20,
        segment_max_bytes=1 << 20,
        fsync="batch",
        block_max_entries=2,
        block_max_bytes=50,
    )
    await cut.append([entry(i) for i in range(5)] + [entry(5, size=80), entry(6)])
    assert cut.bytes_held == 2 * framed(20, 20) + framed(20) + framed(80) + framed(20)
    batches = []
    while (batch := await cut.read(1, 1 << 20, timeout_s=0)) is not None:
        batches.append(batch)
    assert [b.entries for b in batches] == [
        [entry(0), entry(1)],
        [entry(2), entry(3)],
        [entry(4)],
        [entry(5, size=80)],  # larger than block_max_bytes alone: a block of its own
        [entry(6)],
    ]
    await cut.close()


async def test_read_waits_for_data_times_out_and_returns_none_on_close(tmp_path: Path) -> None:
    buffer = open_buffer(tmp_path)
    assert await buffer.read(10, 1000, timeout_s=0.01) is None
    waiting = asyncio.create_task(buffer.read(10, 1000, timeout_s=5))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await buffer.append([entry(1)])
    batch = await waiting
    assert batch is not None and batch.entries == [entry(1)]

    forever = asyncio.create_task(buffer.read(10, 1000))
    await asyncio.sleep(0.01)
    await buffer.close()
    assert await forever is None
    with pytest.raises(BufferClosedError):
        await buffer.append([entry(2)])


async def test_nack_hands_the_same_batch_out_again_first(tmp_path: Path) -> None:
    buffer = open_buffer(tmp_path)
    await buffer.append([entry(1)])
    await buffer.append([entry(2)])
    first = await buffer.read(1, 1000, timeout_s=0)
    assert first is not None
    await buffer.append([entry(3)])
    buffer.nack(first)
    again = await buffer.read(10, 1000, timeout_s=0)
    assert again is first and again.entries == [entry(1)]
    rest = await buffer.read(10, 1000, timeout_s=0)
    assert rest is not None and rest.entries == [entry(2), entry(3)]
    buffer.ack(again)
    buffer.ack(rest)
    buffer.ack(rest)  # a repeated ack changes nothing
    assert buffer.records_held == 0
    await buffer.close()

    reopened = open_buffer(tmp_path)
    assert await reopened.read(10, 1000, timeout_s=0) is None
    await reopened.close()


# ---------------------------------------------------------------------- segments and acks


def test_segments_roll_and_are_deleted_only_when_fully_acked(tmp_path: Path) -> None:
    # Each 3-entry block is 92 bytes: two fit under 250 with the header, a third rolls.
    queue = open_core(tmp_path, segment_max_bytes=250)
    for number in range(0, 15, 3):
        queue.append([entry(number + i) for i in range(3)], time_ms=1)
    assert seg_files(tmp_path) == [fmt.segment_name(i) for i in (1, 2, 3)]
    assert [os.path.getsize(seg_path(tmp_path, i)) for i in (1, 2, 3)] == [200, 200, 108]

    batches = list(drain(queue, max_entries=3))  # reads never cross a segment
    assert [[e[6:10] for e in b.entries] for b in batches] == [
        [b"0000", b"0001", b"0002"],
        [b"0003", b"0004", b"0005"],
        [b"0006", b"0007", b"0008"],
        [b"0009", b"0010", b"0011"],
        [b"0012", b"0013", b"0014"],
    ]
    queue.ack(batches[0])
    assert len(seg_files(tmp_path)) == 3  # half of segment 1 is still unacknowledged
    queue.ack(batches[1])
    assert seg_files(tmp_path) == [fmt.segment_name(i) for i in (2, 3)]
    queue.ack(batches[4])
    assert seg_files(tmp_path) == [fmt.segment_name(i) for i in (2, 3)]  # 3 is the write one
    queue.ack(batches[3])
    queue.ack(batches[2])
    # Segment 3 is fully acknowledged but still the write segment: it stays.
    assert seg_files(tmp_path) == [fmt.segment_name(3)]
    assert (queue.records_held, queue.bytes_held) == (0, 0)
    queue.append([entry(15)], time_ms=1)  # fits in segment 3
    queue.append([entry(16, size=200)], time_ms=1)  # rolls: segment 3 sealed
    assert seg_files(tmp_path) == [fmt.segment_name(3), fmt.segment_name(4)]
    in_3, in_4 = drain(queue)
    assert (in_3.entries, in_4.entries) == ([entry(15)], [entry(16, size=200)])
    queue.ack(in_3)
    assert seg_files(tmp_path) == [fmt.segment_name(4)]
    queue.close()


def test_out_of_order_acks_persist_only_the_contiguous_prefix(tmp_path: Path) -> None:
    queue = open_core(tmp_path)
    for number in range(5):
        queue.append([entry(number)], time_ms=1)
    batches = list(drain(queue, max_entries=1))
    queue.ack(batches[3])
    queue.ack(batches[1])
    assert queue.records_held == 3
    queue.close()

    # Nothing before entry 0 was acked, so the persisted prefix is empty: all come back.
    queue = open_core(tmp_path)
    assert drain_entries(queue) == [entry(i) for i in range(5)]
    queue.close()

    queue = open_core(tmp_path)
    batches = list(drain(queue, max_entries=1))
    for index in (4, 1, 0, 3):
        queue.ack(batches[index])
    queue.close()
    # Prefix now ends before entry 2; entries 3 and 4 were acked behind the gap.
    queue = open_core(tmp_path)
    assert drain_entries(queue) == [entry(2), entry(3), entry(4)]
    assert queue.records_held == 3
    queue.close()


def test_restart_redelivers_exactly_the_unacked_entries_in_order(tmp_path: Path) -> None:
    queue = open_core(tmp_path, segment_max_bytes=100)  # one 2-entry batch per segment
    for number in range(0, 12, 2):
        queue.append([entry(number), entry(number + 1)], time_ms=1)
    batches = list(drain(queue))
    assert len(batches) == 6
    for index in (0, 2, 3, 5):
        queue.ack(batches[index])
    queue.close()

    queue = open_core(tmp_path)
    assert queue.recovery.records == 4
    assert drain_entries(queue) == [entry(2), entry(3), entry(8), entry(9)]
    queue.close()


def test_segment_ids_stay_monotonic_after_everything_was_deleted(tmp_path: Path) -> None:
    queue = open_core(tmp_path, segment_max_bytes=60)
    queue.append([entry(1)], time_ms=1)
    queue.append([entry(2)], time_ms=1)
    for batch in list(drain(queue)):
        queue.ack(batch)
    queue.close()
    queue = open_core(tmp_path)
    assert seg_files(tmp_path) == []  # the old write segment was fully acked: deleted at open
    queue.append([entry(3)], time_ms=1)
    assert seg_files(tmp_path) == [fmt.segment_name(3)]
    queue.close()


# ---------------------------------------------------------------------- recovery


def test_torn_tail_is_truncated_and_appends_continue(tmp_path: Path) -> None:
    reports = Reports()
    queue = open_core(tmp_path, on_corrupt=reports)
    queue.append([entry(1)], time_ms=1)
    queue.append([entry(2)], time_ms=1)
    queue.append([entry(3)], time_ms=1)
    queue.close_files()  # kill -9: no sync, no acks
    path = seg_path(tmp_path, 1)
    good = HEADER + 2 * ONE
    with open(path, "r+b") as file:
        file.truncate(good + FRAME + 5)  # mid-payload of entry 3
        file.seek(0, os.SEEK_END)
        file.write(b"\xde\xad")  # and some garbage, still short of the frame's length

    queue = open_core(tmp_path, on_corrupt=reports)
    assert queue.recovery.torn_bytes_truncated == FRAME + 7
    assert os.path.getsize(path) == good
    assert reports.calls == []
    queue.append([entry(4)], time_ms=1)  # goes to a new segment
    assert seg_files(tmp_path) == [fmt.segment_name(1), fmt.segment_name(2)]
    assert drain_entries(queue) == [entry(1), entry(2), entry(4)]
    queue.close()


def test_zero_filled_tail_and_torn_header_count_as_torn(tmp_path: Path) -> None:
    queue = open_core(tmp_path)
    queue.append([entry(1)], time_ms=1)
    queue.close_files()
    path = seg_path(tmp_path, 1)
    with open(path, "ab") as file:
        file.write(b"\0" * 300)  # size extended before the data arrived (power loss)
    seg_path(tmp_path, 2).write_bytes(b"")  # created, header never written
    queue = open_core(tmp_path)
    assert queue.recovery.corrupt == []
    assert queue.recovery.torn_bytes_truncated == 300
    assert seg_files(tmp_path) == [fmt.segment_name(1)]
    assert drain_entries(queue) == [entry(1)]
    queue.append([entry(2)], time_ms=1)
    assert seg_files(tmp_path) == [fmt.segment_name(1), fmt.segment_name(3)]
    queue.close()


def test_bad_crc_in_the_middle_sets_the_segment_aside_and_keeps_its_prefix(
    tmp_path: Path,
) -> None:
    reports = Reports()
    queue = open_core(tmp_path, segment_max_bytes=110)  # two 1-entry blocks per segment
    for number in range(6):
        queue.append([entry(number)], time_ms=1)
    assert len(seg_files(tmp_path)) == 3
    queue.close()
    path = seg_path(tmp_path, 2)
    original = path.read_bytes()
    damaged = bytearray(original)
    damaged[HEADER + ONE + FRAME + 12] ^= 0xFF  # a payload byte of the block of entry 3
    path.write_bytes(bytes(damaged))

    queue = open_core(tmp_path, on_corrupt=reports)
    set_aside = tmp_path / "corrupt" / fmt.segment_name(2)
    at = HEADER + ONE
    assert reports.calls == [(set_aside, f"record crc mismatch at offset {at}")]
    assert set_aside.read_bytes() == bytes(damaged)
    assert path.read_bytes() == original[:at]  # the valid prefix, offsets kept
    assert queue.corrupt_total == 1
    assert drain_entries(queue) == [entry(i) for i in (0, 1, 2, 4, 5)]
    queue.close()

    # Recovering again finds nothing new to complain about.
    queue = open_core(tmp_path, on_corrupt=reports)
    assert len(reports.calls) == 1
    queue.close()


def test_bad_header_sets_the_whole_segment_aside(tmp_path: Path) -> None:
    reports = Reports()
    queue = open_core(tmp_path, segment_max_bytes=60)
    for number in range(3):
        queue.append([entry(number)], time_ms=1)
    queue.close()
    path = seg_path(tmp_path, 1)
    path.write_bytes(b"NOTSEG" + path.read_bytes()[6:])
    queue = open_core(tmp_path, on_corrupt=reports)
    assert reports.calls == [(tmp_path / "corrupt" / path.name, "bad segment magic b'NOTSEG'")]
    assert not path.exists()
    assert drain_entries(queue) == [entry(1), entry(2)]
    queue.close()


def test_corruption_found_while_reading_cuts_the_segment_and_later_ones_flow(
    tmp_path: Path,
) -> None:
    reports = Reports()
    # Reading from the file, as after a restart or with the output far behind (the cache
    # of just-written blocks would hand out the entries as they were written).
    queue = open_core(tmp_path, on_corrupt=reports, tail_cache_bytes=0)
    for number in (1, 2, 3):
        queue.append([entry(number)], time_ms=1)
    with open(seg_path(tmp_path, 1), "r+b") as file:  # bit rot under a running buffer
        file.seek(HEADER + ONE + FRAME)
        file.write(b"?")
    assert queue.read(10, 1000) is not None  # entry 1; entries 2 and 3 are lost
    assert [p.name for p, _ in reports.calls] == [fmt.segment_name(1)]
    assert queue.records_held == 1
    queue.append([entry(4)], time_ms=1)  # not behind the bad record: a new segment
    assert seg_files(tmp_path) == [fmt.segment_name(1), fmt.segment_name(2)]
    assert drain_entries(queue) == [entry(4)]
    queue.close()


def test_bit_rot_under_a_running_buffer_does_not_reach_what_the_cache_hands_out(
    tmp_path: Path,
) -> None:
    reports = Reports()
    queue = open_core(tmp_path, on_corrupt=reports)
    for number in (1, 2, 3):
        queue.append([entry(number)], time_ms=1)
    with open(seg_path(tmp_path, 1), "r+b") as file:
        file.seek(HEADER + ONE + FRAME)
        file.write(b"?")
    assert drain_entries(queue) == [entry(1), entry(2), entry(3)]
    assert reports.calls == []
    queue.close()


def test_corrupt_acks_file_is_set_aside_and_everything_is_redelivered(tmp_path: Path) -> None:
    reports = Reports()
    queue = open_core(tmp_path)
    queue.append([entry(1)], time_ms=1)
    queue.append([entry(2)], time_ms=1)
    first = queue.read(1, 1000)
    assert first is not None
    queue.ack(first)
    queue.close()
    (tmp_path / "acks").write_bytes(b"garbage")
    queue = open_core(tmp_path, on_corrupt=reports)
    assert reports.calls == [
        (tmp_path / "corrupt" / "acks", "acks file: acks file cut short at 7 bytes")
    ]
    assert drain_entries(queue) == [entry(1), entry(2)]
    queue.close()


def test_age_of_the_oldest_unacked_record_survives_restart(tmp_path: Path) -> None:
    queue = open_core(tmp_path)
    assert queue.oldest_unacked_time_ms() is None
    queue.append([entry(1)], time_ms=1_000)
    queue.append([entry(2)], time_ms=2_000)
    first = queue.read(1, 1000)
    assert first is not None
    assert queue.oldest_unacked_time_ms() == 1_000
    queue.ack(first)
    assert queue.oldest_unacked_time_ms() == 2_000
    queue.close()
    queue = open_core(tmp_path)
    assert queue.oldest_unacked_time_ms() == 2_000
    queue.close()


async def test_age_in_seconds_from_the_facade(tmp_path: Path) -> None:
    buffer = open_buffer(tmp_path)
    await buffer.append([entry(1)])
    await asyncio.sleep(0.05)
    assert 0.04 <= buffer.oldest_unacked_age_s < 5
    await buffer.close()


# ---------------------------------------------------------------------- backpressure


async def test_append_waits_at_the_cap_and_resumes_after_an_ack(tmp_path: Path) -> None:
    frame = ONE
    buffer = open_buffer(tmp_path, max_bytes=2 * frame)
    await buffer.append([entry(1)])
    await buffer.append([entry(2)])
    blocked = asyncio.create_task(buffer.append([entry(3)]))
    await asyncio.sleep(0.02)
    assert not blocked.done()
    assert buffer.bytes_held == 2 * frame

    batch = await buffer.read(1, 1000, timeout_s=0)
    assert batch is not None
    buffer.ack(batch)
    await asyncio.wait_for(blocked, 1)
    assert buffer.bytes_held == 2 * frame
    await buffer.close()


async def test_an_oversized_batch_enters_an_empty_buffer_and_waits_otherwise(
    tmp_path: Path,
) -> None:
    buffer = open_buffer(tmp_path, max_bytes=100)
    huge = [entry(i, size=200) for i in range(3)]
    await asyncio.wait_for(buffer.append(huge), 1)  # alone it exceeds the cap: no deadlock
    assert buffer.bytes_held == framed(200, 200, 200)
    second = asyncio.create_task(buffer.append(huge))
    await asyncio.sleep(0.02)
    assert not second.done()
    small = asyncio.create_task(buffer.append([entry(9)]))  # FIFO: behind the big one
    await asyncio.sleep(0.02)
    assert not small.done()
    batch = await buffer.read(2, 1 << 20, timeout_s=0)
    assert batch is not None and len(batch.entries) == 3  # the block, whole
    buffer.ack(batch)
    await asyncio.wait_for(second, 1)
    await asyncio.sleep(0.02)
    assert not small.done()  # 632 + 44 > 100
    rest = await buffer.read(10, 1 << 20, timeout_s=0)
    assert rest is not None and len(rest.entries) == 3
    buffer.ack(rest)
    await asyncio.wait_for(small, 1)
    await buffer.close()


async def test_close_wakes_an_append_waiting_for_space(tmp_path: Path) -> None:
    buffer = open_buffer(tmp_path, max_bytes=10)
    await buffer.append([entry(1)])
    blocked = asyncio.create_task(buffer.append([entry(2)]))
    await asyncio.sleep(0.01)
    await asyncio.wait_for(buffer.close(), 1)
    with pytest.raises(BufferClosedError):
        await blocked


# ---------------------------------------------------------------------- full disk


class FailingWrites:
    """os.write, os.pwrite and os.pwritev that write `partial` bytes of the next call, then
    raise: a disk that fills up, whichever call the buffer writes a file with."""

    def __init__(self, error: int = errno.ENOSPC, partial: int = 0, times: int = 1) -> None:
        self.real = os.pwrite
        self.real_write = os.write
        self.error = error
        self.partial = partial
        self.times = times

    def pwrite(self, fd: int, data: Any, offset: int) -> int:
        if self.times <= 0:
            return self.real(fd, data, offset)
        if self.partial:
            written = self.real(fd, bytes(data)[: self.partial], offset)
            self.partial = 0
            return written
        self.times -= 1
        raise OSError(self.error, os.strerror(self.error))

    def pwritev(self, fd: int, buffers: Any, offset: int) -> int:
        return self.pwrite(fd, b"".join(buffers), offset)

    def write(self, fd: int, data: Any) -> int:
        if self.times <= 0:
            return self.real_write(fd, data)
        written = self.pwrite(fd, data, os.lseek(fd, 0, os.SEEK_CUR))
        os.lseek(fd, written, os.SEEK_CUR)
        return written

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(os, "pwrite", self.pwrite)
        monkeypatch.setattr(os, "pwritev", self.pwritev)
        monkeypatch.setattr(os, "write", self.write)


async def test_enospc_leaves_no_half_record_and_the_next_append_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer = open_buffer(tmp_path)
    await buffer.append([entry(1)])
    path = seg_path(tmp_path, 1)
    size_before = size_of(path)
    # A short write (half of the batch lands) followed by ENOSPC.
    FailingWrites(partial=30).install(monkeypatch)
    with pytest.raises(DiskFullError):
        await buffer.append([entry(2), entry(3)])
    assert size_of(path) == size_before
    assert buffer.records_held == 1
    monkeypatch.undo()

    await buffer.append([entry(4)])
    batch = await buffer.read(10, 1000, timeout_s=0)
    assert batch is not None and batch.entries == [entry(1), entry(4)]
    await buffer.close()
    queue = open_core(tmp_path)
    assert queue.recovery.torn_bytes_truncated == 0
    assert drain_entries(queue) == [entry(1), entry(4)]
    queue.close()


async def test_edquot_on_segment_creation_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer = open_buffer(tmp_path, segment_max_bytes=60)
    await buffer.append([entry(1)])
    FailingWrites(error=errno.EDQUOT).install(monkeypatch)
    with pytest.raises(DiskFullError):
        await buffer.append([entry(2)])  # needs a roll; the new segment's header fails
    assert seg_files(tmp_path) == [fmt.segment_name(1)]
    monkeypatch.undo()
    await buffer.append([entry(2)])
    assert seg_files(tmp_path) == [fmt.segment_name(1), fmt.segment_name(2)]
    await buffer.close()


async def test_enospc_on_the_acks_file_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer = open_buffer(tmp_path)
    await buffer.append([entry(1)])
    await buffer.append([entry(2)])
    await buffer.sync()
    acks_before = (tmp_path / "acks").read_bytes()
    batch = await buffer.read(1, 1000, timeout_s=0)
    assert batch is not None
    buffer.ack(batch)
    FailingWrites().install(monkeypatch)
    with pytest.raises(DiskFullError):
        await buffer.sync()
    assert (tmp_path / "acks").read_bytes() == acks_before
    assert not (tmp_path / "acks.tmp").exists()
    monkeypatch.undo()
    await buffer.sync()
    assert fmt.decode_acks((tmp_path / "acks").read_bytes())[1] == {1: HEADER + ONE}
    await buffer.close()


async def test_other_write_errors_propagate_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer = open_buffer(tmp_path)
    await buffer.append([entry(1)])
    FailingWrites(error=errno.EIO).install(monkeypatch)
    with pytest.raises(OSError) as caught:
        await buffer.append([entry(2)])
    assert caught.value.errno == errno.EIO and not isinstance(caught.value, DiskFullError)
    monkeypatch.undo()
    await buffer.close()


# ---------------------------------------------------------------------- fsync policies


class FsyncCounter:
    def __init__(self) -> None:
        self.real = os.fsync
        self.calls = 0

    def __call__(self, fd: int) -> None:
        self.calls += 1
        self.real(fd)


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> FsyncCounter:
    counter = FsyncCounter()
    monkeypatch.setattr(os, "fsync", counter)
    return counter


async def test_fsync_always_syncs_every_append(tmp_path: Path, fsyncs: FsyncCounter) -> None:
    buffer = open_buffer(tmp_path, fsync="always")
    fsyncs.calls = 0
    await buffer.append([entry(1)])
    assert fsyncs.calls == 2  # the new segment and the directory that now holds it
    await buffer.append([entry(2)])
    assert fsyncs.calls == 3  # just the segment
    await buffer.sync()
    assert fsyncs.calls == 5  # data is synced already; the acks file: tmp file + directory
    await buffer.close()
    assert fsyncs.calls == 5


async def test_fsync_batch_syncs_on_sync_and_roll_only(
    tmp_path: Path, fsyncs: FsyncCounter
) -> None:
    buffer = open_buffer(tmp_path, fsync="batch", segment_max_bytes=110)
    fsyncs.calls = 0
    await buffer.append([entry(1)])
    await buffer.append([entry(2)])  # 16 + 2 * 44 = 104 bytes: still one segment
    assert fsyncs.calls == 0
    await buffer.sync()
    assert fsyncs.calls == 4  # segment, directory, acks tmp file, directory after the rename
    await buffer.append([entry(3)])  # rolls: the new segment and the directory
    assert fsyncs.calls == 6
    await buffer.append([entry(4)])
    assert fsyncs.calls == 6
    await buffer.close()
    assert fsyncs.calls == 9  # segment 2, then the acks file (next id changed) + directory


async def test_fsync_never_syncs_nothing(tmp_path: Path, fsyncs: FsyncCounter) -> None:
    buffer = open_buffer(tmp_path, fsync="never", segment_max_bytes=60)
    for number in range(4):
        await buffer.append([entry(number)])
    batch = await buffer.read(10, 1000, timeout_s=0)
    assert batch is not None
    buffer.ack(batch)
    await buffer.sync()
    await buffer.close()
    assert fsyncs.calls == 0
    assert (tmp_path / "acks").exists()  # acks are still written, by rename


async def test_concurrent_appends_share_fsyncs_in_always_mode(
    tmp_path: Path, fsyncs: FsyncCounter
) -> None:
    buffer = open_buffer(tmp_path, fsync="always")
    await buffer.append([entry(0)])
    fsyncs.calls = 0
    await asyncio.gather(*(buffer.append([entry(i)]) for i in range(1, 21)))
    assert 1 <= fsyncs.calls < 20
    batch = await buffer.read(100, 1 << 20, timeout_s=0)
    assert batch is not None and batch.entries == [entry(i) for i in range(21)]
    await buffer.close()


async def test_acks_are_persisted_by_read_after_the_interval(tmp_path: Path) -> None:
    buffer = DiskBuffer.open(
        tmp_path,
        max_bytes=1 << 20,
        segment_max_bytes=1 << 20,
        fsync="batch",
        ack_persist_interval_s=0.0,
    )
    await buffer.append([entry(1)])
    await buffer.append([entry(2)])
    batch = await buffer.read(1, 1000, timeout_s=0)
    assert batch is not None
    buffer.ack(batch)
    await buffer.read(1, 1000, timeout_s=0)
    assert fmt.decode_acks((tmp_path / "acks").read_bytes())[1] == {1: HEADER + ONE}
    buffer.core.close_files()  # crash
    queue = open_core(tmp_path)
    assert drain_entries(queue) == [entry(2)]
    queue.close()


def test_a_version_1_segment_left_by_an_older_shipper_is_still_delivered(tmp_path: Path) -> None:
    path = seg_path(tmp_path, 4)
    tmp_path.mkdir(exist_ok=True)
    path.write_bytes(
        fmt.encode_segment_header(4, version=1) + fmt.encode_v1_records([entry(1), entry(2)], 5)
    )
    queue = open_core(tmp_path)
    assert (queue.recovery.records, queue.records_held) == (2, 2)
    batches = list(drain(queue))
    assert [b.entries for b in batches] == [[entry(1), entry(2)]]
    queue.append([entry(3)], time_ms=6)  # new records go to a new, version 2 segment
    assert seg_files(tmp_path) == [fmt.segment_name(4), fmt.segment_name(5)]
    assert fmt.decode_segment_header(seg_path(tmp_path, 5).read_bytes()[:HEADER], 5) == 2
    for batch in batches:
        queue.ack(batch)
    assert seg_files(tmp_path) == [fmt.segment_name(5)]
    assert drain_entries(queue) == [entry(3)]
    queue.close()


def test_pwritev_all_writes_every_part_through_short_writes_and_iov_max(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shipper.buffer import segment_file

    real = os.pwritev
    calls: list[int] = []

    def short_pwritev(fd: int, buffers: Any, offset: int) -> int:
        calls.append(len(buffers))
        assert len(buffers) <= segment_file._IOV_MAX
        return real(fd, [bytes(b"".join(buffers))[:7]], offset)  # at most 7 bytes a call

    parts = [b"%d," % n for n in range(3000)] + [b"", b"end"]
    monkeypatch.setattr(os, "pwritev", short_pwritev)
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        segment_file._pwritev_all(fd, parts, 5)
    finally:
        os.close(fd)
    assert path.read_bytes() == bytes(5) + b"".join(parts)
    assert max(calls) == min(len(parts) - 1, segment_file._IOV_MAX)
