"""One segment file: its state, creating it, writing frames, reading blocks back, fsync, deleting.

Every system call on a segment file is made here; what the bytes mean is
`shipper.buffer.format`. Which segment is written, read, sealed or deleted, and when, is
decided by the writer, the reader and the ledger.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from shipper import events
from shipper.buffer import format as fmt
from shipper.durable import raise_if_disk_full, write_all

_IOV_MAX = os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 1024


class BlocksRead(NamedTuple):
    """What one read of a segment found, from its `start` offset."""

    blocks: list[fmt.Block]
    end: int  # offset just past the last block
    entry_count: int
    payload_bytes: int  # bytes of the entries, without framing
    problem: str  # damage at `end`: everything from there to the segment's end is lost


@dataclass(slots=True, eq=False)
class Segment:
    """A segment file and what the buffer knows about it."""

    id: int
    path: Path
    end: int  # end of the last valid frame; the next append goes here
    acked: int  # end of the contiguous acknowledged prefix
    synced_end: int  # bytes known to be on stable storage
    sealed: bool  # nothing is appended to it any more
    version: int = fmt.FORMAT_VERSION  # of the file's format: new segments get the current one
    unread_records: int = 0  # entries at or after the read cursor (for loss accounting)
    fd: int | None = None  # write fd, only while this is the write segment
    read_fd: int | None = None  # while the reader's cursor is in this segment
    # Acks that arrived before the batch in front of them: start offset -> end offset.
    out_of_order: dict[int, int] = field(default_factory=dict)

    @classmethod
    def create(cls, directory: Path, segment_id: int) -> Segment:
        """A new, empty write segment: the file with just its header (not yet fsynced).

        DiskFullError on ENOSPC / EDQUOT, with no file left behind.
        """
        path = directory / fmt.segment_name(segment_id)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise_if_disk_full(exc, f"creating {path}")
            raise
        try:
            write_all(fd, fmt.encode_segment_header(segment_id), 0)
        except OSError as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise_if_disk_full(exc, f"creating {path}")
            raise
        size = fmt.SEGMENT_HEADER_SIZE
        return cls(
            id=segment_id, path=path, end=size, acked=size, synced_end=0, sealed=False, fd=fd
        )

    def write(self, parts: Sequence[bytes], size: int) -> None:
        """Writes `size` bytes of frames at the end with one `pwritev` and moves the end past
        them. On failure the file is truncated back and `end` stays where it was (it always
        ends a valid frame); DiskFullError on ENOSPC / EDQUOT. When even the truncate fails
        the segment is sealed: no later append may land behind the garbage."""
        fd = self.fd
        if fd is None:
            raise RuntimeError(f"segment {self.path} is not open for writing")
        start = self.end
        try:
            _pwritev_all(fd, parts, start)
        except OSError as exc:
            try:
                os.ftruncate(fd, start)
            except OSError as cut_failed:
                # Its `end` stays before the garbage, so nothing reads it; recovery sees it
                # as a torn tail or sets the file aside.
                events.storage.buffer_truncate_failed(path=self.path, error=cut_failed)
                self.seal()
            raise_if_disk_full(exc, f"appending to {self.path}")
            raise
        self.end = start + size

    def seal(self) -> None:
        """Nothing more is appended: closes the write fd."""
        self.sealed = True
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def read(self, start: int, want: int, max_entries: int, max_bytes: int) -> BlocksRead:
        """Whole blocks from `start`, as `fmt.decode_records` decodes one `pread` of `want`
        bytes there (a first block larger than that is read whole).

        Valid blocks of the current format are read straight into their entries
        (`fmt.read_blocks`); anything else (version 1, damage, a file shorter than `end`
        says) is the one `pread`, decoded by the one definition of damaged data.
        """
        fd = self.read_fd
        if fd is None:
            fd = self.read_fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        available = self.end - start
        version = self.version
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
                end = start + read.consumed
                return BlocksRead(read.blocks, end, read.entry_count, read.payload_bytes, "")
        buf = os.pread(fd, want, start)
        decoded = fmt.decode_records(buf, max_entries, max_bytes, version)
        first_too_big = not decoded.blocks and decoded.stop == fmt.INCOMPLETE
        if first_too_big and len(buf) == want and decoded.need <= available:
            # The first block alone is larger than the read; read exactly it.
            buf = os.pread(fd, decoded.need, start)
            decoded = fmt.decode_records(buf, 1, max_bytes, version)
        problem = decoded.problem
        if not problem and len(buf) < want:
            problem = f"file ends at {start + len(buf)}, expected {self.end}"
        elif not problem and not decoded.blocks:
            problem = "record runs past the end of the segment"
        if decoded.stop == fmt.LIMIT:
            problem = ""  # the blocks taken are good; the next read meets what follows
        end = start + decoded.consumed
        return BlocksRead(decoded.blocks, end, decoded.entry_count, decoded.payload_bytes, problem)

    def close_read(self) -> None:
        if self.read_fd is not None:
            os.close(self.read_fd)
            self.read_fd = None

    def append_time_ms(self, offset: int) -> int | None:
        """Append time of the record at `offset`, from its frame header; None if unreadable."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                head = os.pread(fd, fmt.FRAME_HEADER_SIZE, offset)
            finally:
                os.close(fd)
        except OSError:
            return None
        if len(head) < fmt.FRAME_HEADER_SIZE:
            return None
        return fmt.peek_record(head)[1]

    def close(self) -> None:
        """Closes the file's descriptors; nothing about the file changes."""
        self.close_read()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def delete(self) -> None:
        """Closes and unlinks the file. A failure is logged, not raised: a file left behind
        is only delivered again after a restart (duplicates, not loss)."""
        self.close()
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            events.storage.buffer_segment_not_deleted(path=self.path, error=exc)


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
