"""Reading and acknowledging: the read cursor, batches handed out, nacks, acks.

The cursor walks the segments in id order. A read at the cursor takes whole blocks from the
tail cache when it holds them, else from the segment file. A batch handed out stays
outstanding until it is acked (the segment's acknowledged prefix grows, and a sealed segment
acknowledged to its end is deleted) or nacked (handed out again before anything unread).

Invariants:
- An entry is handed out at most once per process lifetime unless it is nacked.
- A bad record found while reading loses everything from it to its segment's end: the loss
  is taken off what the ledger holds, the file is linked into corrupt/, and a write segment
  is sealed so that no append lands behind the bad record.
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
from dataclasses import dataclass

from shipper.buffer import format as fmt
from shipper.buffer.ledger import BufferClosedError, Ledger
from shipper.buffer.recovery import CorruptFiles
from shipper.buffer.segment_file import Segment
from shipper.buffer.tail_cache import TailCache


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


class Reader:
    """Hands out what was appended, in order, and takes acks and nacks. Not thread-safe."""

    def __init__(self, ledger: Ledger, cache: TailCache, corrupt: CorruptFiles) -> None:
        self.blocks_read_from_cache = 0
        self.blocks_read_from_file = 0
        self._ledger = ledger
        self._cache = cache
        self._corrupt = corrupt
        self._read_id = 0  # segment the read cursor is in (0: before the first one)
        self._read_pos = 0
        self._outstanding: set[tuple[int, int]] = set()  # (segment id, start) handed out
        self._nacked: list[tuple[int, int, int, BufferBatch]] = []  # heap by position
        self._nack_seq = 0

    # ----------------------------------------------------------------- reading

    def read(self, max_entries: int, max_bytes: int) -> BufferBatch | None:
        """The next blocks not yet handed out (nacked ones first), or None if there are none.

        Never returns an empty batch; returns one block even if it exceeds the limits.
        """
        if self._ledger.closed:
            raise BufferClosedError("the disk buffer is closed")
        while self._nacked:
            *_, batch = heapq.heappop(self._nacked)
            if (batch.segment_id, batch.start) in self._outstanding:
                return batch
        while True:
            segment = self._cursor_segment()
            if segment is None:
                return None
            fresh = self._read_from(segment, max(1, max_entries), max_bytes)
            if fresh is not None:
                return fresh
            # The rest of this segment was corrupt and has been cut off; try the next one.

    def _cursor_segment(self) -> Segment | None:
        """The segment with unread data at or after the cursor, moving the cursor to it."""
        segments = self._ledger.segments
        while True:
            segment = segments.get(self._read_id)
            if segment is not None:
                if self._read_pos < segment.end:
                    return segment
                if not segment.sealed:
                    return None  # caught up with the writer
            ids = self._ledger.ids
            index = bisect.bisect_right(ids, self._read_id)
            if index == len(ids):
                return None
            following = segments[ids[index]]
            if segment is not None:
                segment.close_read()
            self._read_id = following.id
            # Nothing of a segment the cursor has not reached has been handed out, so it
            # has no acks yet past what recovery found: its unread data starts at `acked`.
            self._read_pos = following.acked

    def _read_from(self, segment: Segment, max_entries: int, max_bytes: int) -> BufferBatch | None:
        start = self._read_pos
        # What one read of the file may take (the cache stops where it would).
        want = min(segment.end - start, fmt.read_size(max_entries, max_bytes))
        cached = self._cache.take(segment, start, want, max_entries, max_bytes)
        if cached is not None:
            blocks, end, count, size = cached
            self.blocks_read_from_cache += len(blocks)
            return self._hand_out(segment, blocks, start, end, count, size)
        read = segment.read(start, want, max_entries, max_bytes)
        if read.problem:
            self._cut_corrupt_tail(segment, read.end, read.entry_count, read.problem)
        if not read.entry_count:
            return None
        self.blocks_read_from_file += len(read.blocks)
        return self._hand_out(
            segment, read.blocks, start, read.end, read.entry_count, read.payload_bytes
        )

    def _hand_out(
        self,
        segment: Segment,
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

    def _cut_corrupt_tail(self, segment: Segment, at: int, keep: int, problem: str) -> None:
        """A bad record found while reading: everything from it to the segment end is lost.

        Runs mid-flight, so the file stays where it is (it may be the write segment, and its
        valid prefix may still be unacknowledged); a hard link goes to corrupt/ instead.
        """
        ledger = self._ledger
        ledger.bytes_held -= segment.end - at
        ledger.records_held -= segment.unread_records - keep
        segment.end = at
        segment.unread_records = keep
        if not segment.sealed:
            segment.seal()  # no append may land behind the bad record
            ledger.delete_if_done(segment)
        with contextlib.suppress(OSError):
            self._corrupt.set_aside(segment.path, f"{problem} at offset {at}", move=False)
        ledger.delete_if_done(segment)

    # ----------------------------------------------------------------- acknowledging

    def ack(self, batch: BufferBatch) -> bool:
        """Marks the batch delivered; False (and no effect) if it is not outstanding."""
        key = (batch.segment_id, batch.start)
        if key not in self._outstanding:
            return False
        self._outstanding.remove(key)
        ledger = self._ledger
        ledger.bytes_held -= batch.end - batch.start
        ledger.records_held -= batch.count
        segment = ledger.segments.get(batch.segment_id)
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
        ledger.ack_version += 1
        ledger.delete_if_done(segment)
        return True

    def nack(self, batch: BufferBatch) -> bool:
        """Hands the same batch out again, before anything unread; False if not outstanding."""
        if (batch.segment_id, batch.start) not in self._outstanding:
            return False
        self._nack_seq += 1
        heapq.heappush(self._nacked, (batch.segment_id, batch.start, self._nack_seq, batch))
        return True
