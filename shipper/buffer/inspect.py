"""What the disk buffer holds, read without opening it: for `shipper status` and tools.

Strictly read-only, and safe while an agent runs on the same directory: it only opens
files with O_RDONLY and `pread`s them, takes no lock, truncates nothing, moves nothing and
writes no acks file (which `SegmentQueue.open` would all do as part of recovery).

The numbers are those a restart would find: every record past the acknowledged prefix
persisted in the acks file. A running agent persists acks about once a second, so its own
figures (`/status`, `/metrics`) can be a little lower. A segment deleted or being written
while we read is counted as far as we got; a torn or corrupt tail counts up to its last
valid record.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from shipper.buffer import format as fmt
from shipper.buffer.recovery import scan


@dataclass(slots=True)
class BufferSummary:
    directory: Path
    exists: bool = False
    segments: int = 0
    records: int = 0  # unacknowledged records
    bytes: int = 0  # framed bytes of those records (the quantity storage.max_bytes caps)
    disk_bytes: int = 0  # size of the segment files on disk
    oldest_record_time_ms: int | None = None  # append time of the oldest unacknowledged one
    corrupt_files: int = 0  # files set aside in corrupt/
    problems: list[str] = field(default_factory=list)

    @property
    def oldest_record_age_s(self) -> float | None:
        if self.oldest_record_time_ms is None:
            return None
        return max(0.0, time.time() - self.oldest_record_time_ms / 1000)


def inspect_buffer(directory: Path) -> BufferSummary:
    """Summarises `<storage.path>/buffer` without changing anything in it."""
    summary = BufferSummary(directory)
    if not directory.is_dir():
        return summary
    summary.exists = True
    acked: dict[int, int] = {}
    try:
        _next_id, acked = fmt.decode_acks((directory / fmt.ACKS_NAME).read_bytes())
    except FileNotFoundError:
        pass
    except (OSError, fmt.FormatError) as exc:
        summary.problems.append(f"acks file unreadable ({exc}): counting every record")
    segments = sorted(
        (segment_id, path)
        for path in directory.iterdir()
        if (segment_id := fmt.parse_segment_name(path.name)) is not None
    )
    for segment_id, path in segments:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # acknowledged and deleted by a running agent meanwhile
        try:
            size = os.fstat(fd).st_size
            try:
                header = os.pread(fd, fmt.SEGMENT_HEADER_SIZE, 0)
                version = fmt.decode_segment_header(header, segment_id)
            except fmt.FormatError as exc:
                if size:
                    summary.problems.append(f"{path.name}: {exc}")
                continue
            start = min(max(acked.get(segment_id, 0), fmt.SEGMENT_HEADER_SIZE), size)
            end, records, problem, _at_eof = scan(fd, start, size, version)
            if problem:
                summary.problems.append(f"{path.name}: {problem} at offset {end}")
            summary.segments += 1
            summary.disk_bytes += size
            summary.records += records
            summary.bytes += end - start
            if records and summary.oldest_record_time_ms is None:
                head = os.pread(fd, fmt.FRAME_HEADER_SIZE, start)
                if len(head) == fmt.FRAME_HEADER_SIZE:
                    summary.oldest_record_time_ms = fmt.peek_record(head)[1]
        finally:
            os.close(fd)
    corrupt = directory / fmt.CORRUPT_DIR
    with contextlib.suppress(OSError):
        summary.corrupt_files = sum(1 for _ in corrupt.iterdir()) if corrupt.is_dir() else 0
    return summary
