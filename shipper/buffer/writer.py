"""Appending: the write segment, rolling over to a new one when full, one pwritev per batch.

Invariants:
- Records are only ever appended to the write segment, with one `pwritev` per batch at the
  segment's known end; a failed write is truncated back, so `end` always ends a valid frame.
- After the buffer opens no existing segment is written again: the first append creates a
  new one. A segment whose tail was cut by a crash therefore never gets new records past an
  acks offset that was persisted before the crash.
- What is written goes into the tail cache too (if it fits), for the reader that follows.
"""

from __future__ import annotations

from shipper.buffer import format as fmt
from shipper.buffer.ledger import BufferClosedError, Ledger
from shipper.buffer.segment_file import Segment
from shipper.buffer.tail_cache import TailCache


class Writer:
    """Appends framed batches to the write segment. Not thread-safe."""

    def __init__(self, ledger: Ledger, cache: TailCache, segment_max_bytes: int) -> None:
        self.segment_max_bytes = segment_max_bytes
        # The write segment; None (or sealed, by a reader that found it damaged) until the
        # next append creates one.
        self.segment: Segment | None = None
        self._ledger = ledger
        self._cache = cache

    def prepare(self, size: int) -> bool:
        """Makes sure a write segment can take `size` more bytes; True if it rolled.

        After a roll the caller should sync (policy permitting) before `write`, so a sealed
        segment is durable before anything lands in its successor.
        """
        if self._ledger.closed:
            raise BufferClosedError("the disk buffer is closed")
        current = self.segment
        if current is None or current.sealed:
            self.segment = self._ledger.create_segment()
            return False
        if current.end > fmt.SEGMENT_HEADER_SIZE and current.end + size > self.segment_max_bytes:
            successor = self._ledger.create_segment()  # first: on ENOSPC nothing has changed
            self.seal()
            self.segment = successor
            return True
        return False

    def write(self, encoded: fmt.EncodedBlocks, count: int) -> None:
        """Writes framed blocks holding `count` entries to the write segment with one
        pwritev; DiskFullError on ENOSPC / EDQUOT, after which the segment is as it was
        before. The blocks go into the tail cache if they fit."""
        segment = self.segment
        if segment is None or segment.fd is None:
            raise RuntimeError("write without prepare")
        start = segment.end
        size = encoded.size
        try:
            segment.write(encoded.parts, size)
        except BaseException:
            if segment.sealed:  # could not take the half record back: done with this file
                self.seal()
            raise
        segment.unread_records += count
        ledger = self._ledger
        ledger.bytes_held += size
        ledger.records_held += count
        self._cache.add(segment.id, start, encoded)

    def seal(self) -> None:
        """No more appends to the write segment; the next append creates a new one."""
        segment = self.segment
        if segment is None:
            return
        self.segment = None
        segment.seal()
        self._ledger.delete_if_done(segment)
