"""Opening a buffer directory: every segment checked, torn tails cut, corrupt files set aside.

`recover` runs once, when the buffer opens and before anything is appended or read. It reads
the acks file, then every unacknowledged record of every segment once, checking its crc
(`scan`). What it finds:

- A torn tail (the last segment's last write cut by kill -9 or power loss: a frame cut by
  the end of the file, or zeros to it) is truncated. Its lines were never checkpointed, so
  they are read from Docker again.
- A segment file created just before a crash whose header never reached the disk is removed.
- Damage anywhere else is corruption, and the file goes to `corrupt/` for forensics: whole
  if its header is bad, else with a copy of its valid prefix put in its place, so that what
  was good is still delivered.
- A bad acks file goes to `corrupt/` too; every record is then delivered again (duplicates,
  which the sink's deterministic `_id` absorbs, never loss).

`CorruptFiles` sets files aside and reports them, here and for the reader, which can find
damage mid-flight.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shipper import events
from shipper.buffer import format as fmt
from shipper.buffer.ledger import Ledger
from shipper.buffer.segment_file import Segment
from shipper.durable import fsync_directory

CorruptCallback = Callable[[Path, str], None]

_SCAN_CHUNK_BYTES = 4 * 1024 * 1024


@dataclass(slots=True)
class RecoveryReport:
    """What recovery found and did; the caller turns it into log lines and metrics."""

    segments: int = 0
    records: int = 0  # unacknowledged records recovered
    bytes: int = 0
    torn_bytes_truncated: int = 0
    # Every file set aside, at recovery and later while reading.
    corrupt: list[tuple[Path, str]] = field(default_factory=list)


class CorruptFiles:
    """Sets damaged files aside into `corrupt/`, counts them and reports each one."""

    def __init__(
        self, ledger: Ledger, report: RecoveryReport, on_corrupt: CorruptCallback | None
    ) -> None:
        self.directory = ledger.directory / fmt.CORRUPT_DIR
        self.total = 0  # files set aside, at recovery or while reading
        self._ledger = ledger
        self._report = report
        self._on_corrupt = on_corrupt

    def set_aside(self, path: Path, reason: str, *, move: bool) -> Path:
        """Moves (or hard-links, leaving it in place) `path` into corrupt/ and reports it."""
        target = self.directory / path.name
        suffix = 0
        while target.exists():
            if not move and os.path.samefile(target, path):
                break  # linked there by an attempt that crashed before the rename
            suffix += 1
            target = self.directory / f"{path.name}.{suffix}"
        else:
            if move:
                os.replace(path, target)
            else:
                os.link(path, target)
        self._ledger.dir_version += 1
        if self._ledger.fsync_policy != "never":
            fsync_directory(self.directory)
        self.total += 1
        self._report.corrupt.append((target, reason))
        events.storage.buffer_file_set_aside(path=path, target=target, reason=reason)
        if self._on_corrupt is not None:
            self._on_corrupt(target, reason)
        return target


def recover(ledger: Ledger, corrupt: CorruptFiles, report: RecoveryReport) -> None:
    """Fills the empty `ledger` with what its directory (created if missing) holds.

    Never raises for bad data, only for I/O errors. Ends with a sync, so the acks file
    matches the live segments before anything is appended.
    """
    directory = ledger.directory
    directory.mkdir(parents=True, exist_ok=True)
    corrupt.directory.mkdir(exist_ok=True)
    for stale in directory.glob("*.tmp"):
        stale.unlink(missing_ok=True)
    acked, next_id = _load_acks(directory, corrupt)
    found: list[tuple[int, Path]] = []
    for path in directory.iterdir():
        segment_id = fmt.parse_segment_name(path.name)
        if segment_id is not None and path.is_file():
            found.append((segment_id, path))
    found.sort()
    # The newest segment that got its header is the one a crash can have torn; files
    # after it were created just before the crash and never got theirs.
    last_index = len(found) - 1
    while last_index > 0 and _torn_at_creation(found[last_index][1]):
        last_index -= 1
    for index, (segment_id, path) in enumerate(found):
        last = index >= last_index
        _recover_segment(ledger, corrupt, report, segment_id, path, acked.get(segment_id, 0), last)
    highest = max((segment_id for segment_id, _ in found), default=0)
    ledger.next_id = max(next_id, highest + 1, 1)
    for segment in list(ledger.segments.values()):
        ledger.delete_if_done(segment)
    report.segments = len(ledger.segments)
    report.records = ledger.records_held
    report.bytes = ledger.bytes_held
    # Persist the clamped / pruned acks and the directory changes now, before any
    # append, so nothing read from the old acks file can apply to later records.
    ledger.ack_version += 1
    ledger.sync()
    if report.torn_bytes_truncated or report.corrupt:
        events.storage.buffer_recovered_with_damage(
            records=ledger.records_held,
            segments=len(ledger.segments),
            torn_bytes=report.torn_bytes_truncated,
            corrupt_files=len(report.corrupt),
        )


def scan(
    fd: int, start: int, size: int, version: int = fmt.FORMAT_VERSION
) -> tuple[int, int, str, bool]:
    """Validates the frames of [start, size): (valid end, entries, problem, reaches EOF).

    `reaches EOF` tells a torn write from corruption in the middle: the bad frame is cut
    by the end of the file, claims to run past it, ends exactly at it, or everything from
    it to the end is zero bytes (size extended before the data reached the disk).
    """
    pos = start
    records = 0
    while pos < size:
        buf = os.pread(fd, min(_SCAN_CHUNK_BYTES, size - pos), pos)
        decoded = fmt.decode_records(buf, 1 << 62, 1 << 62, version)
        records += decoded.entry_count
        pos += decoded.consumed
        if decoded.stop == fmt.END:
            continue
        if decoded.stop == fmt.INCOMPLETE:
            if pos + decoded.need > size:
                return pos, records, "record cut by the end of the file", True
            if decoded.consumed:
                continue  # the frame straddles the chunk boundary; next chunk starts at it
            buf = os.pread(fd, decoded.need, pos)  # one frame larger than a chunk
            decoded = fmt.decode_records(buf, 1, 1 << 62, version)
            if decoded.blocks:
                records += decoded.entry_count
                pos += decoded.consumed
                continue
        problem = decoded.problem or "unreadable record"
        head = os.pread(fd, fmt.FRAME_HEADER_SIZE, pos)
        if len(head) < fmt.FRAME_HEADER_SIZE:
            return pos, records, problem, True
        length, _time = fmt.peek_record(head)
        ends_at_eof = pos + fmt.FRAME_HEADER_SIZE + length >= size
        return pos, records, problem, ends_at_eof or _zero_tail(fd, pos, size)
    return pos, records, "", False


def _load_acks(directory: Path, corrupt: CorruptFiles) -> tuple[dict[int, int], int]:
    """({segment id: acked offset}, next segment id) from the acks file, if it is valid."""
    path = directory / fmt.ACKS_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}, 1
    try:
        next_id, acked = fmt.decode_acks(data)
    except fmt.FormatError as exc:
        # Losing the acks only means re-delivering acknowledged records: duplicates the
        # sink's deterministic _id absorbs. Never a reason to stop.
        corrupt.set_aside(path, f"acks file: {exc}", move=True)
        return {}, 1
    return acked, next_id


def _recover_segment(
    ledger: Ledger,
    corrupt: CorruptFiles,
    report: RecoveryReport,
    segment_id: int,
    path: Path,
    acked: int,
    last: bool,
) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, fmt.SEGMENT_HEADER_SIZE, 0)
        try:
            version = fmt.decode_segment_header(head, segment_id)
        except fmt.FormatError as exc:
            if last and _torn_at_creation(path):
                # Created just before a crash, header never reached the disk.
                events.storage.buffer_segment_torn_at_creation(path=path)
                report.torn_bytes_truncated += size
                path.unlink()
                ledger.dir_version += 1
                return
            corrupt.set_aside(path, str(exc), move=True)
            return
        start = min(max(acked, fmt.SEGMENT_HEADER_SIZE), size)
        end, records, problem, reaches_eof = scan(fd, start, size, version)
    finally:
        os.close(fd)
    if problem:
        if last and reaches_eof:
            # A write cut by kill -9 or power loss: its lines were never checkpointed,
            # the caller reads them from Docker again.
            events.storage.buffer_torn_tail_truncated(
                path=path, torn_bytes=size - end, problem=problem
            )
            _truncate(path, end, fsync=ledger.fsync_policy != "never")
            report.torn_bytes_truncated += size - end
        else:
            _keep_prefix(ledger, corrupt, path, end, f"{problem} at offset {end}")
    # synced_end 0: what survived a kill -9 may sit only in the page cache; the sync at
    # the end of recovery makes it durable (cheap when it already is).
    segment = Segment(
        id=segment_id,
        path=path,
        end=end,
        acked=start,
        synced_end=0,
        sealed=True,
        version=version,
        unread_records=records,
    )
    ledger.add(segment)
    ledger.bytes_held += end - start
    ledger.records_held += records


def _truncate(path: Path, size: int, *, fsync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _keep_prefix(ledger: Ledger, corrupt: CorruptFiles, path: Path, size: int, reason: str) -> None:
    """Sets the corrupt file aside and puts a copy of its valid first `size` bytes back.

    The copy keeps every offset, so the acks file stays right for it. Order: copy to
    tmp and fsync it, hard-link the original into corrupt/, then rename the copy over
    the original. A crash at any point leaves either the original (recovery repeats the
    work) or the copy in place, and the evidence in corrupt/ or still in place.
    """
    tmp = path.with_name(path.name + ".tmp")
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        remaining = size
        while remaining:
            chunk = src.read(min(remaining, _SCAN_CHUNK_BYTES))
            if not chunk:
                break
            dst.write(chunk)
            remaining -= len(chunk)
        dst.flush()
        if ledger.fsync_policy != "never":
            os.fsync(dst.fileno())
    corrupt.set_aside(path, reason, move=False)
    os.replace(tmp, path)
    ledger.dir_version += 1


def _torn_at_creation(path: Path) -> bool:
    with open(path, "rb") as file:
        head = file.read(fmt.SEGMENT_HEADER_SIZE)
    return len(head) < fmt.SEGMENT_HEADER_SIZE or not any(head)


def _zero_tail(fd: int, start: int, size: int) -> bool:
    pos = start
    while pos < size:
        chunk = os.pread(fd, min(_SCAN_CHUNK_BYTES, size - pos), pos)
        if not chunk or chunk.count(0) != len(chunk):
            return False
        pos += len(chunk)
    return True
