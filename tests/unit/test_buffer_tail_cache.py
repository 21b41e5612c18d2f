"""The disk buffer's unread tail cache: reads served from memory hand out exactly the
batches a read of the segment file gives, and the cache stays within its bound.

Three queues take the same random appends, reads, acks and nacks: one without a cache (every
block read back from its file), one whose cache holds only part of the tail, and one with the
default cache. Every read must return equal batches (the same blocks at the same offsets)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from shipper.buffer import BufferBatch, SegmentQueue
from shipper.buffer.tail_cache import DEFAULT_TAIL_CACHE_BYTES

appends = st.tuples(
    st.just("append"),
    st.lists(st.integers(0, 300), min_size=1, max_size=12),  # entry sizes
    st.integers(1, 6),  # block_max_entries
    st.integers(1, 900),  # block_max_bytes
)
reads = st.tuples(st.just("read"), st.integers(1, 20), st.integers(1, 2500))
acks = st.tuples(st.just("ack"), st.integers(0, 1 << 16))
nacks = st.tuples(st.just("nack"), st.integers(0, 1 << 16))
operations = st.lists(st.one_of(appends, appends, reads, reads, acks, nacks), max_size=60)


def batch_key(batch: BufferBatch | None) -> object:
    if batch is None:
        return None
    return (batch.blocks, batch.segment_id, batch.start, batch.end, batch.count, batch.size)


@settings(max_examples=300, deadline=None)
@given(operations, st.integers(1, 3000), st.sampled_from([700, 4000, 64 * 1024]))
def test_cached_reads_are_the_file_reads(
    ops: list[tuple[object, ...]], small_cache: int, segment_max_bytes: int
) -> None:
    root = Path(tempfile.mkdtemp(prefix="tail-cache-"))
    sizes = {"file": 0, "small": small_cache, "default": DEFAULT_TAIL_CACHE_BYTES}
    queues = {
        name: SegmentQueue.open(
            root / name,
            segment_max_bytes=segment_max_bytes,
            fsync="never",
            on_corrupt=None,
            tail_cache_bytes=size,
        )
        for name, size in sizes.items()
    }
    outstanding: dict[str, list[BufferBatch]] = {name: [] for name in queues}
    number = 0
    try:
        for op in ops:
            if op[0] == "append":
                _, entry_sizes, block_entries, block_bytes = op
                assert isinstance(entry_sizes, list)
                entries = []
                for size in entry_sizes:
                    entries.append(f"{number}:".encode() + bytes([number % 251]) * size)
                    number += 1
                for queue in queues.values():
                    queue.append(
                        entries,
                        1000 + number,
                        block_max_entries=int(block_entries),  # type: ignore[call-overload]
                        block_max_bytes=int(block_bytes),  # type: ignore[call-overload]
                    )
            elif op[0] == "read":
                _, max_entries, max_bytes = op
                got = {
                    name: queue.read(int(max_entries), int(max_bytes))  # type: ignore[call-overload]
                    for name, queue in queues.items()
                }
                keys = {name: batch_key(batch) for name, batch in got.items()}
                assert keys["small"] == keys["file"]
                assert keys["default"] == keys["file"]
                for name, batch in got.items():
                    if batch is not None and batch not in outstanding[name]:
                        outstanding[name].append(batch)
            else:
                _, pick = op
                for name, queue in queues.items():
                    if outstanding[name]:
                        index = int(pick) % len(outstanding[name])  # type: ignore[call-overload]
                        if op[0] == "ack":
                            assert queue.ack(outstanding[name].pop(index))
                        else:
                            assert queue.nack(outstanding[name][index])
            held = {(q.bytes_held, q.records_held) for q in queues.values()}
            assert len(held) == 1
            for name, queue in queues.items():
                assert queue.tail_cache.size <= sizes[name]
                assert queue.tail_cache.size == sum(
                    c.end - c.start for c in queue.tail_cache.blocks
                )
        assert queues["file"].blocks_read_from_cache == 0
        # Nothing restarted, so the default cache served every block it handed out.
        assert queues["default"].blocks_read_from_file == 0
        assert queues["default"].blocks_read_from_cache == queues["file"].blocks_read_from_file
    finally:
        for queue in queues.values():
            queue.close_files()
        shutil.rmtree(root, ignore_errors=True)


def test_a_reader_behind_the_cache_reads_the_rest_from_the_file(tmp_path: Path) -> None:
    """When the reader falls behind (the sink stalled), the cache takes what fits, then
    nothing; the blocks past it come from the file, in order, and the cache fills again
    once the reader has caught up."""
    entry_bytes = 100
    frame_bytes = 16 + 4 + 4 + entry_bytes  # one entry per block below
    queue = SegmentQueue.open(
        tmp_path,
        segment_max_bytes=1 << 20,
        fsync="never",
        on_corrupt=None,
        tail_cache_bytes=3 * frame_bytes,
    )
    entries = [b"%03d" % n + b"x" * (entry_bytes - 3) for n in range(8)]
    for entry in entries[:5]:
        queue.append([entry], 1)
    assert queue.tail_cache.size == 3 * frame_bytes  # the first three; four and five did not fit
    got = []
    while (batch := queue.read(1, 1 << 20)) is not None:
        got.extend(batch.entries)
        assert queue.ack(batch)
    assert got == entries[:5]
    assert (queue.blocks_read_from_cache, queue.blocks_read_from_file) == (3, 2)
    for entry in entries[5:]:
        queue.append([entry], 1)
    batch = queue.read(10, 1 << 20)
    assert batch is not None and batch.entries == entries[5:]
    assert (queue.blocks_read_from_cache, queue.blocks_read_from_file) == (6, 2)
    assert queue.tail_cache.size == 0
    queue.close()


def test_many_small_blocks_stop_where_the_file_read_stops(tmp_path: Path) -> None:
    """A read takes one pread of the batch's bytes plus framing for up to 64 blocks; with
    more, smaller blocks the file read stops at its end, and so must the cache."""
    queues = [
        SegmentQueue.open(
            tmp_path / str(size),
            segment_max_bytes=1 << 20,
            fsync="never",
            on_corrupt=None,
            tail_cache_bytes=size,
        )
        for size in (0, DEFAULT_TAIL_CACHE_BYTES)
    ]
    for queue in queues:
        for n in range(100):
            queue.append([b"%02d" % n], 1)  # a block of one 2-byte entry each
    file_read, cached_read = (queue.read(100, 200) for queue in queues)
    assert file_read is not None and cached_read is not None
    assert 64 < file_read.count < 100  # what one pread of 200 + 100 * 4 + 64 * 20 bytes holds
    assert batch_key(cached_read) == batch_key(file_read)
    assert queues[1].blocks_read_from_file == 0
    for queue in queues:
        queue.close()


def test_after_a_restart_blocks_come_from_the_files(tmp_path: Path) -> None:
    def open_queue() -> SegmentQueue:
        return SegmentQueue.open(
            tmp_path, segment_max_bytes=1 << 20, fsync="batch", on_corrupt=None
        )

    queue = open_queue()
    queue.append([b"one", b"two"], 1, block_max_entries=1)
    queue.close()
    queue = open_queue()
    queue.append([b"three"], 2)
    got = []
    while (batch := queue.read(10, 1 << 20)) is not None:
        got.append(batch.entries)
    # The recovered segment from its file; the new one's block from memory.
    assert got == [[b"one", b"two"], [b"three"]]
    assert (queue.blocks_read_from_cache, queue.blocks_read_from_file) == (1, 2)
    queue.close()
