"""asyncio facade of the disk buffer: waits for data and space, runs fsync off the loop.

The on-disk format and its reasoning are in `shipper.buffer.format`; the synchronous core
(`SegmentQueue`, and the modules it names) in `shipper.buffer.queue`. This module adds what
needs the event loop.

Contract with the rest of the shipper:

- `append(entries)` writes one batch with one `pwritev`, framed as blocks of at most
  `block_max_entries` entries / about `block_max_bytes` bytes (one block per call in the
  common case). Readers get whole blocks, so keep the limits at or below what one output
  request should carry. It waits (lossless backpressure:
  the caller stops reading from Docker) while the unacknowledged bytes plus the batch would
  exceed `max_bytes`; a batch is always accepted into an empty buffer, however large. On
  ENOSPC / EDQUOT it raises `DiskFullError` with the segment unchanged; retry later.
- `sync()` returns once every entry whose `append` returned before the call is on stable
  storage together with its segment's directory entry (policies "batch" and "always"), and
  every ack made before the call is persisted in the acks file. Call it before saving the
  Docker checkpoints that cover those entries: that ordering is what makes "nothing lost"
  hold across power loss.
- Acks are persisted by `sync()`, by `close()`, and by `read()` at most every
  `ack_persist_interval_s` while acks are pending. What is persisted per segment is the
  contiguous acknowledged prefix. After a restart the buffer hands out every record past
  its segment's persisted prefix, in append order: every unacknowledged record, plus those
  acknowledged records whose ack was not yet persisted or lay behind an unacknowledged gap.
  A record inside a persisted prefix is never handed out again.
- An entry is handed out at most once per process lifetime unless it is nacked.

fsync policies (trade-offs):

- "always": `append` returns only after its data is fsynced (group commit: concurrent
  appends share one fsync). Survives power loss for every returned append; costs one fsync
  per append call, i.e. throughput is bound by the disk's fsync latency times batch size.
- "batch" (default): data is fsynced when the caller calls `sync()` (before it persists its
  checkpoints), when a segment is sealed (so only the last segment can ever be torn) and on
  close. Power loss loses at most what was appended since the last `sync()`, and the
  caller's checkpoints still point before it, so those lines are read from Docker again.
  One fsync per checkpoint interval instead of one per batch.
- "never": no fsync at all; the acks file is still replaced atomically by rename. Survives
  kill -9 (the data is in the page cache) but not power loss: records may vanish or turn up
  corrupt while checkpoints already moved past them. For disposable hosts only.

Disk usage: `max_bytes` caps unacknowledged bytes. A segment is deleted only when all of it
is acknowledged, so the disk may hold up to about one extra segment per in-flight batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from shipper import events
from shipper.buffer import format as fmt
from shipper.buffer.ledger import BufferClosedError, FsyncPolicy
from shipper.buffer.queue import SegmentQueue
from shipper.buffer.reader import BufferBatch
from shipper.buffer.recovery import CorruptCallback, RecoveryReport
from shipper.errors import ShipperError

# Blocks a reader gets whole: at most what one bulk request should carry by default.
DEFAULT_BLOCK_MAX_ENTRIES = 5_000
DEFAULT_BLOCK_MAX_BYTES = 2 * 1024 * 1024


class DiskBuffer:
    """Durable FIFO of encoded bulk entries between the pipeline and the sink."""

    def __init__(
        self,
        core: SegmentQueue,
        *,
        max_bytes: int,
        ack_persist_interval_s: float,
        block_max_entries: int = DEFAULT_BLOCK_MAX_ENTRIES,
        block_max_bytes: int = DEFAULT_BLOCK_MAX_BYTES,
    ) -> None:
        self._core = core
        # The parts the hot path calls (append, read, ack), without going through the core.
        self._ledger = core.ledger
        self._writer = core.writer
        self._reader = core.reader
        self._max_bytes = max_bytes
        self._block_max_entries = block_max_entries
        self._block_max_bytes = block_max_bytes
        self._fsync: FsyncPolicy = core.ledger.fsync_policy
        self._ack_persist_interval_s = ack_persist_interval_s
        self._append_lock = asyncio.Lock()  # FIFO: batches land in the order append was called
        self._sync_lock = asyncio.Lock()  # one SyncJob at a time (they share acks.tmp)
        self._data_ready = asyncio.Event()
        self._space_freed = asyncio.Event()
        self._last_ack_persist = time.monotonic()
        self._closed = False

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        max_bytes: int,
        segment_max_bytes: int,
        fsync: FsyncPolicy,
        on_corrupt: CorruptCallback | None = None,
        ack_persist_interval_s: float = 1.0,
        block_max_entries: int = DEFAULT_BLOCK_MAX_ENTRIES,
        block_max_bytes: int = DEFAULT_BLOCK_MAX_BYTES,
    ) -> DiskBuffer:
        """Opens the buffer in `directory` (created if missing) and recovers it.

        Blocking (it reads every unacknowledged record once to check it): call it at
        startup, before the loop is busy. `on_corrupt(path in corrupt/, reason)` is called
        for each file set aside, now or later while reading.
        """
        core = SegmentQueue.open(
            directory, segment_max_bytes=segment_max_bytes, fsync=fsync, on_corrupt=on_corrupt
        )
        return cls(
            core,
            max_bytes=max_bytes,
            ack_persist_interval_s=ack_persist_interval_s,
            block_max_entries=block_max_entries,
            block_max_bytes=block_max_bytes,
        )

    # ------------------------------------------------------------------ writing

    async def append(self, entries: fmt.JoinedEntries | Sequence[bytes]) -> None:
        """Appends one batch; waits for space; DiskFullError on ENOSPC (nothing written)."""
        count = len(entries.lengths if isinstance(entries, fmt.JoinedEntries) else entries)
        if not count:
            return
        encoded = fmt.encode_blocks(
            entries, time.time_ns() // 1_000_000, self._block_max_entries, self._block_max_bytes
        )
        async with self._append_lock:
            ledger = self._ledger
            while ledger.bytes_held and ledger.bytes_held + encoded.size > self._max_bytes:
                self._check_open()
                self._space_freed.clear()
                await self._space_freed.wait()
            self._check_open()
            if self._writer.prepare(encoded.size) and self._fsync != "never":
                # Seal the full segment durably before anything lands in its successor.
                await self._run_sync(acks=False)
            self._writer.write(encoded, count)
        self._data_ready.set()
        if self._fsync == "always":
            # Data only: rewriting the acks file too would triple the fsyncs per append.
            await self._run_sync(acks=False)

    async def sync(self) -> None:
        """Makes every entry appended so far durable (policy permitting) and persists acks.

        Raises DiskFullError if the disk is full; then nothing new is promised durable.
        """
        await self._run_sync(data=True, acks=True)

    async def _run_sync(self, *, data: bool = True, acks: bool = True) -> None:
        async with self._sync_lock:
            job = self._ledger.begin_sync(data=data, acks=acks)
            if job.empty:
                return
            running = asyncio.ensure_future(asyncio.to_thread(job.run))
            try:
                await asyncio.shield(running)
            except asyncio.CancelledError:
                # Cancelling us does not stop the thread: hold the lock until it is done, so
                # no second job (at shutdown, say) writes acks.tmp at the same time.
                await asyncio.wait({running})
                raise
            finally:
                if running.done():
                    self._ledger.finish_sync(job)
                    if job.acks_done:
                        self._last_ack_persist = time.monotonic()

    # ------------------------------------------------------------------ reading

    async def read(
        self, max_entries: int, max_bytes: int, timeout_s: float | None = None
    ) -> BufferBatch | None:
        """The next blocks not yet handed out, in append order, all from one segment, up to
        about `max_entries` entries and `max_bytes` bytes (always at least one block).

        Waits up to `timeout_s` (forever if None) for data; None on timeout or close.
        A nacked batch comes back first, as it was.
        """
        await self._maybe_persist_acks()
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while True:
            if self._closed:
                return None
            batch = self._reader.read(max_entries, max_bytes)
            if batch is not None:
                return batch
            self._data_ready.clear()
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            try:
                async with asyncio.timeout(remaining):
                    await self._data_ready.wait()
            except TimeoutError:
                return None

    def ack(self, batch: BufferBatch) -> None:
        """The sink delivered (or dead-lettered) the batch. Any order; repeats are ignored."""
        if self._reader.ack(batch):
            self._space_freed.set()

    def nack(self, batch: BufferBatch) -> None:
        """Hands the batch out again on the next read, before anything unread."""
        if self._reader.nack(batch):
            self._data_ready.set()

    async def _maybe_persist_acks(self) -> None:
        if not self._ledger.acks_dirty or self._sync_lock.locked():
            return
        if time.monotonic() - self._last_ack_persist < self._ack_persist_interval_s:
            return
        try:
            await self._run_sync(data=False, acks=True)
        except (ShipperError, OSError) as exc:
            # Only costs duplicates after a crash; the next sync() or read() retries.
            events.storage.buffer_acks_not_saved(error=exc)
            self._last_ack_persist = time.monotonic()

    # ------------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        """Wakes waiters (appends raise BufferClosedError, reads return None), then syncs
        data (policy permitting), persists acks and closes every file."""
        if self._closed:
            return
        self._closed = True
        self._data_ready.set()
        self._space_freed.set()
        async with self._append_lock:
            try:
                await self._run_sync()
            finally:
                self._core.close_files()

    def _check_open(self) -> None:
        if self._closed:
            raise BufferClosedError("the disk buffer is closed")

    # ------------------------------------------------------------------ out of band

    @property
    def bytes_held(self) -> int:
        """Framed bytes appended and not yet acknowledged (the quantity `max_bytes` caps)."""
        return self._ledger.bytes_held

    @property
    def records_held(self) -> int:
        return self._ledger.records_held

    @property
    def blocks_read(self) -> tuple[int, int]:
        """(blocks read from the unread tail cache, blocks read from segment files)."""
        return self._reader.blocks_read_from_cache, self._reader.blocks_read_from_file

    @property
    def oldest_unacked_age_s(self) -> float:
        """Seconds since the oldest unacknowledged record was appended; 0.0 when empty.

        Survives restarts (the time is stored in the record). Costs one small pread when
        the oldest record changed since the last call: fine for a metrics scrape.
        """
        time_ms = self._ledger.oldest_unacked_time_ms()
        if time_ms is None:
            return 0.0
        return max(0.0, time.time() - time_ms / 1000)

    @property
    def corrupt_total(self) -> int:
        """Files set aside into corrupt/ since open (including during recovery)."""
        return self._core.corrupt.total

    @property
    def recovery(self) -> RecoveryReport:
        return self._core.recovery

    @property
    def directory(self) -> Path:
        return self._ledger.directory

    @property
    def core(self) -> SegmentQueue:
        """The synchronous core; for tests and tools."""
        return self._core


__all__ = ["BufferBatch", "BufferClosedError", "DiskBuffer", "RecoveryReport"]
