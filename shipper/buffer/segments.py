"""The synchronous core of the disk buffer: segments on disk, recovery, read cursor, acks.

The file format is described in `shipper.buffer.format`. This module owns every file in the
buffer directory and every piece of state about them; `shipper.buffer.disk.DiskBuffer` is the
asyncio facade that adds waiting (for data, for space) and runs fsync off the event loop by
splitting a sync into `begin_sync` (loop) -> `SyncJob.run` (any thread) -> `finish_sync`
(loop). Nothing here blocks for long except `SyncJob.run` and recovery in `open`.

Invariants:
- Records are only ever appended to the write segment, with one `pwritev` per batch at the
  segment's known end; a failed write is truncated back, so `end` always ends a valid frame.
- After `open` no existing segment is written again: the first append creates a new one. A
  segment whose tail was cut by a crash therefore never gets new records past an acks offset
  that was persisted before the crash.
- A segment file is deleted only when it is sealed (not the write segment) and its
  contiguous acknowledged prefix reaches its end.
- `bytes_held` / `records_held` count framed bytes / records appended (or recovered) and not
  yet acknowledged, including those handed out to a reader.
- The unread tail cache holds blocks exactly as they were written, each under the segment
  offset of its frame, and only blocks past the read cursor: a read at the cursor that
  finds its blocks there hands out the very batch a read from the file would have decoded.

Why the cache: the reader normally follows the writer closely, so nearly every block is read
back moments after it was written. Reading it from the file (a pread copy, a crc over every
byte, the entry lengths unpacked) was a sixth of the shipper's event-loop time in the
benchmark, all to rebuild what the writer held a moment before. The file stays the truth
for restarts, where recovery checks every crc; within one process, what was written is
what was handed to the kernel, so the cache loses nothing of the buffer's promise. It is
bounded (`tail_cache_bytes`); when the reader falls behind (Elasticsearch down), new blocks
are not cached and are read from the file as before.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import errno
import heapq
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

from shipper.buffer import format as fmt
from shipper.errors import DiskFullError

log = logging.getLogger(__name__)

FsyncPolicy = Literal["always", "batch", "never"]
CorruptCallback = Callable[[Path, str], None]

_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_SCAN_CHUNK_BYTES = 4 * 1024 * 1024
_IOV_MAX = os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 1024
# A few of the sink's reads (5 MB by default): enough for a reader that follows the writer.
DEFAULT_TAIL_CACHE_BYTES = 16 * 1024 * 1024


@dataclass(slots=True, eq=False)
class BufferBatch:
    """Whole blocks handed out by one read, in append order, all from one segment.

    Pass the batch itself back to `ack` (or `nack`); the other fields say where it lives.
    """

    blocks: list[fmt.Block]
    segment_id: int
    start: int  # offset of the first frame in the segment file
    end: int  # offset just past the last frame
    count: int  # entries in the blocks
    size: int  # bytes of those entries, without framing

    @property
    def entries(self) -> list[bytes]:
        """Every entry, split out of its block (the slow path: only when items matter)."""
        if len(self.blocks) == 1:
            return self.blocks[0].entries()
        return [entry for block in self.blocks for entry in block.entries()]

    @property
    def bodies(self) -> list[bytes]:
        """Per block, its entries concatenated: what a bulk request body is made of."""
        return [block.data for block in self.blocks]


@dataclass(slots=True)
class RecoveryReport:
    """What `open` found and did; the caller turns it into log lines and metrics."""

    segments: int = 0
    records: int = 0  # unacknowledged records recovered
    bytes: int = 0
    torn_bytes_truncated: int = 0
    corrupt: list[tuple[Path, str]] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class _Segment:
    id: int
    path: Path
    end: int  # end of the last valid frame; the next append goes here
    acked: int  # end of the contiguous acknowledged prefix
    synced_end: int  # bytes known to be on stable storage
    sealed: bool
    version: int = fmt.FORMAT_VERSION  # of the file's format: new segments get the current one
    unread_records: int = 0  # entries at or after the read cursor (for loss accounting)
    fd: int | None = None  # write fd, only while this is the write segment
    # Acks that arrived before the batch in front of them: start offset -> end offset.
    out_of_order: dict[int, int] = field(default_factory=dict)


class _Cached(NamedTuple):
    segment_id: int
    start: int  # offset of the block's frame in the segment file
    end: int
    block: fmt.Block


@dataclass(slots=True, eq=False)
class SyncJob:
    """The blocking half of a sync: plain data, safe to run in a worker thread."""

    directory: Path
    fsync: bool
    segments: list[tuple[_Segment, Path, int]]  # fsync these files, then mark synced up to
    dir_version: int  # fsync the directory when not -1
    acks: bytes | None
    acks_version: int
    data_done: bool = False
    acks_done: bool = False

    @property
    def empty(self) -> bool:
        return not self.segments and self.dir_version < 0 and self.acks is None

    def run(self) -> None:
        """fsync the segments and the directory, then replace the acks file."""
        try:
            if self.fsync:
                for _segment, path, _end in self.segments:
                    _fsync_path(path)
                if self.dir_version >= 0:
                    fsync_directory(self.directory)
            self.data_done = True
            if self.acks is not None:
                write_acks_file(self.directory, self.acks, fsync=self.fsync)
            self.acks_done = True
        except OSError as exc:
            _raise_if_disk_full(exc, "syncing the buffer")
            raise


class SegmentQueue:
    """A durable FIFO of byte entries with out-of-order acknowledgement. Not thread-safe."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_max_bytes: int,
        fsync: FsyncPolicy,
        on_corrupt: CorruptCallback | None,
        tail_cache_bytes: int = DEFAULT_TAIL_CACHE_BYTES,
    ) -> None:
        self.directory = directory
        self.corrupt_directory = directory / fmt.CORRUPT_DIR
        self.segment_max_bytes = segment_max_bytes
        self.fsync_policy: FsyncPolicy = fsync
        self._on_corrupt = on_corrupt
        self.recovery = RecoveryReport()
        self.corrupt_total = 0  # segments set aside, at recovery or while reading
        self.bytes_held = 0
        self.records_held = 0
        self._segments: dict[int, _Segment] = {}
        self._ids: list[int] = []  # sorted ids of live segments
        self._write: _Segment | None = None
        self._next_id = 1
        self._read_id = 0  # segment the read cursor is in (0: before the first one)
        self._read_pos = 0
        self._read_fd: int | None = None
        self._read_fd_id = 0
        self._outstanding: set[tuple[int, int]] = set()  # (segment id, start) handed out
        self._nacked: list[tuple[int, int, int, BufferBatch]] = []  # heap by position
        self._nack_seq = 0
        self._ack_version = 0  # bumped whenever what the acks file would hold changes
        self._acks_persisted_version = -1
        self._dir_version = 0  # bumped on every create / delete / rename in the directory
        self._dir_synced_version = 0
        self._oldest_cache: tuple[int, int, int] | None = None  # (id, offset, time ms)
        # Blocks written and not yet read, in append order (see the module docstring).
        self._tail: collections.deque[_Cached] = collections.deque()
        self._tail_bytes = 0
        self.tail_cache_bytes = tail_cache_bytes
        self.blocks_read_from_cache = 0
        self.blocks_read_from_file = 0
        self.closed = False

    # ----------------------------------------------------------------- open / recovery

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        segment_max_bytes: int,
        fsync: FsyncPolicy,
        on_corrupt: CorruptCallback | None = None,
        tail_cache_bytes: int = DEFAULT_TAIL_CACHE_BYTES,
    ) -> SegmentQueue:
        """Opens (creating if needed) the buffer in `directory` and recovers what it holds.

        Torn tails of the last segment are truncated; corrupt segments are moved to
        `corrupt/` (their valid prefix stays deliverable) and reported; the acks file is
        rewritten for the live segments. Never raises for bad data, only for I/O errors.
        """
        queue = cls(
            directory,
            segment_max_bytes=segment_max_bytes,
            fsync=fsync,
            on_corrupt=on_corrupt,
            tail_cache_bytes=tail_cache_bytes,
        )
        queue._recover()
        return queue

    def _recover(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.corrupt_directory.mkdir(exist_ok=True)
        for stale in self.directory.glob("*.tmp"):
            stale.unlink(missing_ok=True)
        acked, next_id = self._load_acks()
        found: list[tuple[int, Path]] = []
        for path in self.directory.iterdir():
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
            self._recover_segment(segment_id, path, acked.get(segment_id, 0), last=last)
        highest = max((segment_id for segment_id, _ in found), default=0)
        self._next_id = max(next_id, highest + 1, 1)
        for segment in list(self._segments.values()):
            if segment.acked >= segment.end:
                self._delete(segment)
        self.recovery.segments = len(self._segments)
        self.recovery.records = self.records_held
        self.recovery.bytes = self.bytes_held
        # Persist the clamped / pruned acks and the directory changes now, before any
        # append, so nothing read from the old acks file can apply to later records.
        self._ack_version += 1
        self.sync()
        if self.recovery.torn_bytes_truncated or self.recovery.corrupt:
            log.warning(
                "Recovered the disk buffer: %d records held in %d segments, %d torn bytes "
                "truncated, %d segments set aside as corrupt.",
                self.records_held,
                len(self._segments),
                self.recovery.torn_bytes_truncated,
                len(self.recovery.corrupt),
            )

    def _load_acks(self) -> tuple[dict[int, int], int]:
        path = self.directory / fmt.ACKS_NAME
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return {}, 1
        try:
            next_id, acked = fmt.decode_acks(data)
        except fmt.FormatError as exc:
            # Losing the acks only means re-delivering acknowledged records: duplicates the
            # sink's deterministic _id absorbs. Never a reason to stop.
            self._set_aside(path, f"acks file: {exc}", move=True)
            return {}, 1
        return acked, next_id

    def _recover_segment(self, segment_id: int, path: Path, acked: int, *, last: bool) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            head = os.pread(fd, fmt.SEGMENT_HEADER_SIZE, 0)
            try:
                version = fmt.decode_segment_header(head, segment_id)
            except fmt.FormatError as exc:
                if last and _torn_at_creation(path):
                    # Created just before a crash, header never reached the disk.
                    log.warning("Removed the disk buffer segment %s torn at creation.", path)
                    self.recovery.torn_bytes_truncated += size
                    path.unlink()
                    self._dir_version += 1
                    return
                self._set_aside(path, str(exc), move=True)
                return
            start = min(max(acked, fmt.SEGMENT_HEADER_SIZE), size)
            end, records, problem, reaches_eof = _scan(fd, start, size, version)
        finally:
            os.close(fd)
        if problem:
            if last and reaches_eof:
                # A write cut by kill -9 or power loss: its lines were never checkpointed,
                # the caller reads them from Docker again.
                log.warning(
                    "Truncated a torn tail of %d bytes from the disk buffer segment %s (%s).",
                    size - end,
                    path,
                    problem,
                )
                self._truncate(path, end)
                self.recovery.torn_bytes_truncated += size - end
            else:
                self._keep_prefix(path, end, f"{problem} at offset {end}")
        # synced_end 0: what survived a kill -9 may sit only in the page cache; the sync at
        # the end of recovery makes it durable (cheap when it already is).
        segment = _Segment(
            id=segment_id,
            path=path,
            end=end,
            acked=start,
            synced_end=0,
            sealed=True,
            version=version,
            unread_records=records,
        )
        self._add(segment)
        self.bytes_held += end - start
        self.records_held += records

    def _truncate(self, path: Path, size: int) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            if self.fsync_policy != "never":
                os.fsync(fd)
        finally:
            os.close(fd)

    def _keep_prefix(self, path: Path, size: int, reason: str) -> None:
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
            if self.fsync_policy != "never":
                os.fsync(dst.fileno())
        self._set_aside(path, reason, move=False)
        os.replace(tmp, path)
        self._dir_version += 1

    def _set_aside(self, path: Path, reason: str, *, move: bool) -> Path:
        """Moves (or hard-links) `path` into corrupt/ and reports it."""
        target = self.corrupt_directory / path.name
        suffix = 0
        while target.exists():
            if not move and os.path.samefile(target, path):
                break  # linked there by an attempt that crashed before the rename
            suffix += 1
            target = self.corrupt_directory / f"{path.name}.{suffix}"
        else:
            if move:
                os.replace(path, target)
            else:
                os.link(path, target)
        self._dir_version += 1
        if self.fsync_policy != "never":
            fsync_directory(self.corrupt_directory)
        self.corrupt_total += 1
        self.recovery.corrupt.append((target, reason))
        log.error("Set aside the corrupt disk buffer file %s as %s: %s.", path, target, reason)
        if self._on_corrupt is not None:
            self._on_corrupt(target, reason)
        return target

    # ----------------------------------------------------------------- appending

    def append(
        self,
        entries: Sequence[bytes],
        time_ms: int,
        *,
        block_max_entries: int = 1 << 30,
        block_max_bytes: int = 1 << 30,
    ) -> None:
        """Frames one batch as blocks and writes it (rolling and syncing inline): the
        synchronous path."""
        if not entries:
            return
        encoded = fmt.encode_blocks(entries, time_ms, block_max_entries, block_max_bytes)
        if self.prepare_append(encoded.size) and self.fsync_policy != "never":
            self.sync()
        self.write_prepared(encoded, len(entries))
        if self.fsync_policy == "always":
            self.sync()

    def prepare_append(self, size: int) -> bool:
        """Makes sure a write segment can take `size` more bytes; True if it rolled.

        After a roll the caller should sync (policy permitting) before `write_prepared`, so
        a sealed segment is durable before anything lands in its successor.
        """
        self._check_open()
        current = self._write
        if current is None:
            self._write = self._create_segment()
            return False
        if current.end > fmt.SEGMENT_HEADER_SIZE and current.end + size > self.segment_max_bytes:
            successor = self._create_segment()  # first: on ENOSPC nothing has changed
            self._seal_write()
            self._write = successor
            return True
        return False

    def write_prepared(self, encoded: fmt.EncodedBlocks, count: int) -> None:
        """Writes framed blocks holding `count` entries to the write segment with one
        pwritev; DiskFullError on ENOSPC / EDQUOT, after which the segment is as it was
        before. The blocks go into the unread tail cache if they fit."""
        segment = self._write
        if segment is None or segment.fd is None:
            raise RuntimeError("write_prepared without prepare_append")
        start = segment.end
        try:
            _pwritev_all(segment.fd, encoded.parts, start)
        except OSError as exc:
            try:
                os.ftruncate(segment.fd, start)
            except OSError:
                # Cannot take the half record back: stop writing to this file. Its `end`
                # stays before the garbage, so nothing reads it; recovery sees it as a torn
                # tail or sets the file aside.
                log.exception("Could not truncate %s after a failed write.", segment.path)
                self._seal_write()
            _raise_if_disk_full(exc, f"appending to {segment.path}")
            raise
        size = encoded.size
        segment.end = start + size
        segment.unread_records += count
        self.bytes_held += size
        self.records_held += count
        if self._tail_bytes + size <= self.tail_cache_bytes:
            self._tail.extend(
                _Cached(segment.id, start + f.start, start + f.end, f.block) for f in encoded.framed
            )
            self._tail_bytes += size

    def _create_segment(self) -> _Segment:
        segment_id = self._next_id
        path = self.directory / fmt.segment_name(segment_id)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            _raise_if_disk_full(exc, f"creating {path}")
            raise
        try:
            _pwrite_all(fd, fmt.encode_segment_header(segment_id), 0)
        except OSError as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            _raise_if_disk_full(exc, f"creating {path}")
            raise
        self._next_id += 1
        self._dir_version += 1
        self._ack_version += 1  # the acks file records the next id
        size = fmt.SEGMENT_HEADER_SIZE
        segment = _Segment(
            id=segment_id, path=path, end=size, acked=size, synced_end=0, sealed=False, fd=fd
        )
        self._add(segment)
        return segment

    def _seal_write(self) -> None:
        segment = self._write
        if segment is None:
            return
        self._write = None
        segment.sealed = True
        if segment.fd is not None:
            os.close(segment.fd)
            segment.fd = None
        if segment.acked >= segment.end:
            self._delete(segment)

    # ----------------------------------------------------------------- reading

    def read(self, max_entries: int, max_bytes: int) -> BufferBatch | None:
        """The next blocks not yet handed out (nacked ones first), or None if there are none.

        Never returns an empty batch; returns one block even if it exceeds the limits.
        """
        self._check_open()
        while self._nacked:
            *_, batch = heapq.heappop(self._nacked)
            if (batch.segment_id, batch.start) in self._outstanding:
                return batch
        while True:
            segment = self._reader_segment()
            if segment is None:
                return None
            fresh = self._read_from(segment, max(1, max_entries), max_bytes)
            if fresh is not None:
                return fresh
            # The rest of this segment was corrupt and has been cut off; try the next one.

    def _reader_segment(self) -> _Segment | None:
        while True:
            segment = self._segments.get(self._read_id)
            if segment is not None:
                if self._read_pos < segment.end:
                    return segment
                if not segment.sealed:
                    return None  # caught up with the writer
            index = bisect.bisect_right(self._ids, self._read_id)
            if index == len(self._ids):
                return None
            following = self._segments[self._ids[index]]
            self._close_read_fd()
            self._read_id = following.id
            # Nothing of a segment the cursor has not reached has been handed out, so it
            # has no acks yet past what recovery found: its unread data starts at `acked`.
            self._read_pos = following.acked

    def _read_from(self, segment: _Segment, max_entries: int, max_bytes: int) -> BufferBatch | None:
        start = self._read_pos
        # What one read of the file may take (the cache and `read_blocks` stop where it would).
        want = min(segment.end - start, fmt.read_size(max_entries, max_bytes))
        cached = self._read_cached(segment, start, want, max_entries, max_bytes)
        if cached is not None:
            return cached
        if self._read_fd is None or self._read_fd_id != segment.id:
            self._close_read_fd()
            self._read_fd = os.open(segment.path, os.O_RDONLY | os.O_CLOEXEC)
            self._read_fd_id = segment.id
        available = segment.end - start
        version = segment.version
        fd = self._read_fd
        if version == fmt.FORMAT_VERSION:
            read = fmt.read_blocks(
                lambda size, offset: os.pread(fd, size, offset),
                start,
                want,
                available,
                max_entries,
                max_bytes,
            )
            if read is not None and read.entry_count:
                self.blocks_read_from_file += len(read.blocks)
                end = start + read.consumed
                return self._hand_out(
                    segment, read.blocks, start, end, read.entry_count, read.payload_bytes
                )
        # Version 1, or anything not plain (damage, a file shorter than the segment says):
        # one pread of the whole read, decoded by the one definition of damaged data.
        buf = os.pread(fd, want, start)
        decoded = fmt.decode_records(buf, max_entries, max_bytes, version)
        first_too_big = not decoded.blocks and decoded.stop == fmt.INCOMPLETE
        if first_too_big and len(buf) == want and decoded.need <= available:
            # The first block alone is larger than the read; read exactly it.
            buf = os.pread(fd, decoded.need, start)
            decoded = fmt.decode_records(buf, 1, max_bytes, version)
        problem = decoded.problem
        if not problem and len(buf) < want:
            problem = f"file ends at {start + len(buf)}, expected {segment.end}"
        elif not problem and not decoded.blocks:
            problem = "record runs past the end of the segment"
        count = decoded.entry_count
        end = start + decoded.consumed
        if problem and decoded.stop != fmt.LIMIT:
            self._cut_corrupt_tail(segment, end, count, problem)
        if not count:
            return None
        self.blocks_read_from_file += len(decoded.blocks)
        return self._hand_out(segment, decoded.blocks, start, end, count, decoded.payload_bytes)

    def _read_cached(
        self, segment: _Segment, start: int, want: int, max_entries: int, max_bytes: int
    ) -> BufferBatch | None:
        """The batch `decode_records` would give for the file at `start`, from the tail
        cache, or None when the cache does not hold the block there."""
        tail = self._tail
        while tail and (tail[0].segment_id, tail[0].start) < (segment.id, start):
            self._tail_bytes -= tail[0].end - tail[0].start  # read from the file meanwhile
            tail.popleft()
        if not tail or tail[0].segment_id != segment.id or tail[0].start != start:
            return None
        blocks: list[fmt.Block] = []
        count = 0
        size = 0
        end = start
        limit = start + want
        complete = False  # stopped where the file read would: a limit or the segment's end
        for cached in tail:
            if cached.segment_id != segment.id or cached.start != end:
                break  # not cached (it did not fit): the file read would go on
            block = cached.block
            if blocks and (
                cached.end > limit  # beyond the pread: that read stops before it
                or count + block.count > max_entries
                or size + len(block.data) > max_bytes
            ):
                complete = True
                break
            blocks.append(block)
            count += block.count
            size += len(block.data)
            end = cached.end
            if count >= max_entries:
                complete = True
                break
        if not complete and end < segment.end:
            return None  # the file read takes these blocks and the ones after them
        for _ in blocks:
            cached = tail.popleft()
            self._tail_bytes -= cached.end - cached.start
        self.blocks_read_from_cache += len(blocks)
        return self._hand_out(segment, blocks, start, end, count, size)

    def _hand_out(
        self,
        segment: _Segment,
        blocks: list[fmt.Block],
        start: int,
        end: int,
        count: int,
        size: int,
    ) -> BufferBatch:
        segment.unread_records -= count
        self._read_pos = end
        batch = BufferBatch(blocks, segment.id, start, end, count, size)
        self._outstanding.add((segment.id, start))
        return batch

    def _cut_corrupt_tail(self, segment: _Segment, at: int, keep: int, problem: str) -> None:
        """A bad record found while reading: everything from it to the segment end is lost.

        Runs mid-flight, so the file stays where it is (it may be the write segment, and its
        valid prefix may still be unacknowledged); a hard link goes to corrupt/ instead.
        """
        lost_records = segment.unread_records - keep
        self.bytes_held -= segment.end - at
        self.records_held -= lost_records
        segment.end = at
        segment.unread_records = keep
        if segment is self._write:
            self._seal_write()  # no append may land behind the bad record
        with contextlib.suppress(OSError):
            self._set_aside(segment.path, f"{problem} at offset {at}", move=False)
        if segment.sealed and segment.acked >= segment.end and segment.id in self._segments:
            self._delete(segment)

    def _close_read_fd(self) -> None:
        if self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd = None
            self._read_fd_id = 0

    # ----------------------------------------------------------------- acknowledging

    def ack(self, batch: BufferBatch) -> bool:
        """Marks the batch delivered; False (and no effect) if it is not outstanding."""
        key = (batch.segment_id, batch.start)
        if key not in self._outstanding:
            return False
        self._outstanding.remove(key)
        self.bytes_held -= batch.end - batch.start
        self.records_held -= batch.count
        segment = self._segments.get(batch.segment_id)
        if segment is None:
            return True
        if batch.start != segment.acked:
            segment.out_of_order[batch.start] = batch.end
            return True
        acked = batch.end
        pending = segment.out_of_order
        while acked in pending:
            acked = pending.pop(acked)
        segment.acked = acked
        self._ack_version += 1
        if segment.sealed and acked >= segment.end:
            self._delete(segment)
        return True

    def nack(self, batch: BufferBatch) -> bool:
        """Hands the same batch out again, before anything unread; False if not outstanding."""
        if (batch.segment_id, batch.start) not in self._outstanding:
            return False
        self._nack_seq += 1
        heapq.heappush(self._nacked, (batch.segment_id, batch.start, self._nack_seq, batch))
        return True

    def _add(self, segment: _Segment) -> None:
        self._segments[segment.id] = segment
        bisect.insort(self._ids, segment.id)

    def _delete(self, segment: _Segment) -> None:
        if self._read_fd_id == segment.id:
            self._close_read_fd()
        del self._segments[segment.id]
        self._ids.remove(segment.id)
        self._dir_version += 1
        self._ack_version += 1
        try:
            segment.path.unlink(missing_ok=True)
        except OSError:
            # Left behind it is only re-delivered after a restart: duplicates, not loss.
            log.exception("Could not delete the acknowledged segment %s.", segment.path)

    # ----------------------------------------------------------------- durability

    def begin_sync(self, *, data: bool = True, acks: bool = True) -> SyncJob:
        """Snapshots what a sync must do; run the job anywhere, then call `finish_sync`."""
        segments: list[tuple[_Segment, Path, int]] = []
        dir_version = -1
        do_fsync = self.fsync_policy != "never"
        if data and do_fsync:
            segments = [(s, s.path, s.end) for s in self._segments.values() if s.synced_end < s.end]
            if self._dir_synced_version != self._dir_version:
                dir_version = self._dir_version
        acks_data: bytes | None = None
        if acks and self._acks_persisted_version != self._ack_version:
            acked = {s.id: s.acked for s in self._segments.values()}
            acks_data = fmt.encode_acks(self._next_id, acked)
        return SyncJob(
            self.directory, do_fsync, segments, dir_version, acks_data, self._ack_version
        )

    def finish_sync(self, job: SyncJob) -> None:
        if job.data_done:
            for segment, _path, end in job.segments:
                segment.synced_end = max(segment.synced_end, end)
            if job.dir_version >= 0:
                self._dir_synced_version = max(self._dir_synced_version, job.dir_version)
        if job.acks_done and job.acks is not None:
            self._acks_persisted_version = max(self._acks_persisted_version, job.acks_version)

    def sync(self) -> None:
        """Synchronous sync: data and directory durable (policy permitting), acks persisted."""
        job = self.begin_sync()
        if job.empty:
            return
        try:
            job.run()
        finally:
            self.finish_sync(job)

    @property
    def acks_dirty(self) -> bool:
        return self._acks_persisted_version != self._ack_version

    # ----------------------------------------------------------------- out of band

    def oldest_unacked_time_ms(self) -> int | None:
        """Append time of the oldest unacknowledged record: the first one past an acked prefix."""
        for segment_id in self._ids:
            segment = self._segments[segment_id]
            if segment.acked >= segment.end:
                continue
            cached = self._oldest_cache
            if cached is not None and cached[:2] == (segment_id, segment.acked):
                return cached[2]
            try:
                fd = os.open(segment.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    head = os.pread(fd, fmt.FRAME_HEADER_SIZE, segment.acked)
                finally:
                    os.close(fd)
            except OSError:
                return None
            if len(head) < fmt.FRAME_HEADER_SIZE:
                return None
            _length, time_ms = fmt.peek_record(head)
            self._oldest_cache = (segment_id, segment.acked, time_ms)
            return time_ms
        return None

    @property
    def segment_ids(self) -> list[int]:
        return list(self._ids)

    @property
    def write_segment_synced(self) -> tuple[Path, int] | None:
        """(path, bytes known durable) of the write segment; tests simulate power loss."""
        if self._write is None:
            return None
        return self._write.path, self._write.synced_end

    # ----------------------------------------------------------------- closing

    def close(self) -> None:
        """Syncs (policy permitting), persists acks and closes every file."""
        if self.closed:
            return
        try:
            self.sync()
        finally:
            self.close_files()

    def close_files(self) -> None:
        """Closes every file without syncing anything: what kill -9 leaves behind."""
        self.closed = True
        self._tail.clear()
        self._tail_bytes = 0
        self._close_read_fd()
        if self._write is not None and self._write.fd is not None:
            os.close(self._write.fd)
            self._write.fd = None

    def _check_open(self) -> None:
        if self.closed:
            raise BufferClosedError("the disk buffer is closed")


class BufferClosedError(RuntimeError):
    """append / read on a closed buffer: a shutdown-ordering bug in the caller."""


def _scan(
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


def _pwritev_all(fd: int, parts: Sequence[bytes], offset: int) -> None:
    """Writes the parts back to back at `offset`, `IOV_MAX` of them per system call."""
    pending = [memoryview(part) for part in parts if part]
    while pending:
        batch = pending[:_IOV_MAX]
        written = os.pwritev(fd, batch, offset)
        offset += written
        done = 0
        while done < len(batch) and written >= len(batch[done]):
            written -= len(batch[done])
            done += 1
        del pending[:done]
        if written:  # a short write inside this part
            pending[0] = pending[0][written:]


def _pwrite_all(fd: int, data: bytes | bytearray, offset: int) -> None:
    view = memoryview(data)
    done = 0
    while done < len(data):
        done += os.pwrite(fd, view[done:], offset + done)


def _fsync_path(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # fully acknowledged and deleted meanwhile: nothing left to make durable
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


def write_acks_file(directory: Path, data: bytes, *, fsync: bool) -> None:
    """Replaces the acks file atomically; on failure the old file stays as it was."""
    tmp = directory / (fmt.ACKS_NAME + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        _pwrite_all(fd, data, 0)
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, directory / fmt.ACKS_NAME)
    if fsync:
        fsync_directory(directory)


def _raise_if_disk_full(exc: OSError, doing: str) -> None:
    if exc.errno in _DISK_FULL_ERRNOS:
        raise DiskFullError(f"disk full while {doing}: {exc.strerror}") from exc
