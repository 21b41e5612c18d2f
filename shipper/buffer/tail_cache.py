"""The unread tail cache: blocks just written, kept in memory for the reader that follows.

Why: the reader normally follows the writer closely, so nearly every block is read back
moments after it was written. Reading it from the file (a pread copy, a crc over every byte,
the entry lengths unpacked) was a sixth of the shipper's event-loop time in the benchmark,
all to rebuild what the writer held a moment before. The file stays the truth for restarts,
where recovery checks every crc; within one process, what was written is what was handed to
the kernel, so the cache loses nothing of the buffer's promise. It is bounded (`max_bytes`);
when the reader falls behind (Elasticsearch down), new blocks are not cached and are read
from the file as before.

Invariant: the cache holds blocks exactly as they were written, each under the segment offset
of its frame, and only blocks past the read cursor: a read at the cursor that finds its
blocks here hands out the very batch a read from the file would have decoded.
"""

from __future__ import annotations

import collections
from typing import NamedTuple

from shipper.buffer import format as fmt
from shipper.buffer.segment_file import Segment

# A few of the sink's reads (5 MB by default): enough for a reader that follows the writer.
DEFAULT_TAIL_CACHE_BYTES = 16 * 1024 * 1024


class CachedBlock(NamedTuple):
    segment_id: int
    start: int  # offset of the block's frame in the segment file
    end: int
    block: fmt.Block


class TailCache:
    """Blocks written and not yet read, in append order. The writer adds, the reader takes."""

    __slots__ = ("blocks", "max_bytes", "size")

    def __init__(self, max_bytes: int) -> None:
        self.blocks: collections.deque[CachedBlock] = collections.deque()
        self.size = 0  # framed bytes of the blocks held
        self.max_bytes = max_bytes

    def add(self, segment_id: int, start: int, encoded: fmt.EncodedBlocks) -> None:
        """Keeps the blocks of one append, written at `start`, if all of them fit."""
        size = encoded.size
        if self.size + size <= self.max_bytes:
            self.blocks.extend(
                CachedBlock(segment_id, start + f.start, start + f.end, f.block)
                for f in encoded.framed
            )
            self.size += size

    def take(
        self, segment: Segment, start: int, want: int, max_entries: int, max_bytes: int
    ) -> tuple[list[fmt.Block], int, int, int] | None:
        """(blocks, end, entries, entry bytes) of what `Segment.read` would give at `start`,
        or None when the cache does not hold all of it. Drops blocks before `start`: the
        reader took those from the file."""
        tail = self.blocks
        while tail and (tail[0].segment_id, tail[0].start) < (segment.id, start):
            self.size -= tail[0].end - tail[0].start
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
            self.size -= cached.end - cached.start
        return blocks, end, count, size

    def clear(self) -> None:
        self.blocks.clear()
        self.size = 0
