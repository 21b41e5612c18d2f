"""`inspect_buffer`: the numbers a restart would find, read without changing a byte."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from shipper.buffer import SegmentQueue
from shipper.buffer.inspect import inspect_buffer


def _fingerprint(directory: Path) -> dict[str, tuple[int, str, float]]:
    return {
        str(path.relative_to(directory)): (
            path.stat().st_size,
            hashlib.sha256(path.read_bytes()).hexdigest(),
            path.stat().st_mtime,
        )
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def test_counts_match_a_reopened_queue_and_nothing_changes(tmp_path: Path) -> None:
    directory = tmp_path / "buffer"
    queue = SegmentQueue.open(directory, segment_max_bytes=600, fsync="never")
    now_ms = int(time.time() * 1000) - 5_000
    for number in range(30):
        queue.append([f"entry {number:04d} ".encode() * 3], now_ms + number)
    first = queue.read(7, 1 << 20)
    second = queue.read(5, 1 << 20)
    assert first is not None and second is not None
    queue.ack(first)  # acknowledged and persisted below
    queue.read(4, 1 << 20)  # handed out, not acknowledged: still held
    queue.sync()
    live = (queue.records_held, queue.bytes_held)
    before = _fingerprint(directory)

    # While the "agent" still has the queue open: same numbers, no file touched.
    summary = inspect_buffer(directory)
    assert (summary.records, summary.bytes) == live == (23, summary.bytes)
    assert summary.segments == len(queue.segment_ids)
    assert summary.oldest_record_time_ms == now_ms + 7
    assert summary.oldest_record_age_s is not None and 4 < summary.oldest_record_age_s < 60
    assert summary.problems == []
    assert _fingerprint(directory) == before

    queue.close()
    reopened = SegmentQueue.open(directory, segment_max_bytes=600, fsync="never")
    assert (reopened.records_held, reopened.bytes_held) == live
    reopened.close()


def test_an_acknowledgement_not_yet_persisted_still_counts(tmp_path: Path) -> None:
    directory = tmp_path / "buffer"
    queue = SegmentQueue.open(directory, segment_max_bytes=1 << 20, fsync="never")
    queue.append([b"a" * 10], int(time.time() * 1000))
    queue.append([b"b" * 10], int(time.time() * 1000))
    queue.sync()
    batch = queue.read(1, 1 << 20)
    assert batch is not None
    queue.ack(batch)  # in memory only: a restart would hand it out again
    assert inspect_buffer(directory).records == 2
    queue.sync()
    assert inspect_buffer(directory).records == 1
    queue.close()


def test_missing_directory_is_an_empty_buffer(tmp_path: Path) -> None:
    summary = inspect_buffer(tmp_path / "nope")
    assert (summary.exists, summary.records, summary.bytes) == (False, 0, 0)
    assert not (tmp_path / "nope").exists()
