"""`SegmentQueue`: the disk buffer's synchronous core, put together from its parts.

A durable FIFO of byte entries with out-of-order acknowledgement: the ledger (shared state
and durability), recovery (in `open`), the writer, the reader and the tail cache between
them; the package docstring says what each module does. `shipper.buffer.disk.DiskBuffer` is
the asyncio face that adds waiting (for data, for space) and runs fsync off the event loop
(`begin_sync` -> `SyncJob.run` in a thread -> `finish_sync`); for the hot path it calls the
writer and the reader directly. Nothing here blocks for long except `SyncJob.run` and
recovery in `open`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from shipper.buffer import format as fmt
from shipper.buffer.ledger import FsyncPolicy, Ledger, SyncJob
from shipper.buffer.reader import BufferBatch, Reader
from shipper.buffer.recovery import CorruptCallback, CorruptFiles, RecoveryReport, recover
from shipper.buffer.tail_cache import DEFAULT_TAIL_CACHE_BYTES, TailCache
from shipper.buffer.writer import Writer


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
        self.ledger = Ledger(directory, fsync)
        self.recovery = RecoveryReport()
        self.corrupt = CorruptFiles(self.ledger, self.recovery, on_corrupt)
        self.tail_cache = TailCache(tail_cache_bytes)
        self.writer = Writer(self.ledger, self.tail_cache, segment_max_bytes)
        self.reader = Reader(self.ledger, self.tail_cache, self.corrupt)

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
        recover(queue.ledger, queue.corrupt, queue.recovery)
        return queue

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
        fsync = self.ledger.fsync_policy
        if self.writer.prepare(encoded.size) and fsync != "never":
            self.ledger.sync()
        self.writer.write(encoded, len(entries))
        if fsync == "always":
            self.ledger.sync()

    # ----------------------------------------------------------------- reading

    def read(self, max_entries: int, max_bytes: int) -> BufferBatch | None:
        return self.reader.read(max_entries, max_bytes)

    def ack(self, batch: BufferBatch) -> bool:
        return self.reader.ack(batch)

    def nack(self, batch: BufferBatch) -> bool:
        return self.reader.nack(batch)

    # ----------------------------------------------------------------- durability

    def begin_sync(self, *, data: bool = True, acks: bool = True) -> SyncJob:
        return self.ledger.begin_sync(data=data, acks=acks)

    def finish_sync(self, job: SyncJob) -> None:
        self.ledger.finish_sync(job)

    def sync(self) -> None:
        self.ledger.sync()

    # ----------------------------------------------------------------- out of band

    @property
    def bytes_held(self) -> int:
        return self.ledger.bytes_held

    @property
    def records_held(self) -> int:
        return self.ledger.records_held

    @property
    def corrupt_total(self) -> int:
        return self.corrupt.total

    @property
    def blocks_read_from_cache(self) -> int:
        return self.reader.blocks_read_from_cache

    @property
    def blocks_read_from_file(self) -> int:
        return self.reader.blocks_read_from_file

    def oldest_unacked_time_ms(self) -> int | None:
        return self.ledger.oldest_unacked_time_ms()

    @property
    def segment_ids(self) -> list[int]:
        return list(self.ledger.ids)

    @property
    def write_segment_synced(self) -> tuple[Path, int] | None:
        """(path, bytes known durable) of the write segment; tests simulate power loss."""
        segment = self.writer.segment
        if segment is None or segment.sealed:
            return None
        return segment.path, segment.synced_end

    # ----------------------------------------------------------------- closing

    def close(self) -> None:
        """Syncs (policy permitting), persists acks and closes every file."""
        if self.ledger.closed:
            return
        try:
            self.ledger.sync()
        finally:
            self.close_files()

    def close_files(self) -> None:
        """Closes every file without syncing anything: what kill -9 leaves behind."""
        self.tail_cache.clear()
        self.ledger.close_files()
