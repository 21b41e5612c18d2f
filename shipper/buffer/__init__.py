"""Durable segmented disk queue between the pipeline and the sink.

One job per module:

    disk.py          DiskBuffer, the asyncio face: waits for data and space, fsync off the loop
    queue.py         SegmentQueue, the synchronous core that puts the parts below together
    format.py        the on-disk format and its reasoning: frames, blocks, the acks file
    ledger.py        the live segments, what they hold, what is durable (sync, acks file)
    recovery.py      opening a directory: checking segments, torn tails, corrupt files aside
    writer.py        appending: the write segment, rolling over, one pwritev per batch
    reader.py        the read cursor, batches handed out, acks and nacks
    tail_cache.py    blocks just written, kept in memory for the reader that follows
    segment_file.py  every system call on one segment file: create, write, read, fsync, delete
    inspect.py       what a buffer holds, read without opening it (`shipper status`)
"""

from __future__ import annotations

from shipper.buffer.disk import DiskBuffer
from shipper.buffer.ledger import BufferClosedError
from shipper.buffer.queue import SegmentQueue
from shipper.buffer.reader import BufferBatch
from shipper.buffer.recovery import RecoveryReport

__all__ = ["BufferBatch", "BufferClosedError", "DiskBuffer", "RecoveryReport", "SegmentQueue"]
