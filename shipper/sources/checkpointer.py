"""The checkpointer: every `storage.checkpoint_interval_s`, makes the buffer durable and then
saves the positions of what it holds, and keeps the rate-limit summaries and rotation watch
going.

The order is the exactly-once promise: the positions are snapshotted first, the buffer is
synced, and only then are they saved, so a saved position never covers a line the disk does
not hold. While a save fails for a full disk, the intake is closed (reading waits) and opened
again by the next save that succeeds. Any other failure to make state durable (EIO, say) stops
the shipper: see `save`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from shipper import events, telemetry
from shipper.buffer import DiskBuffer
from shipper.errors import DiskFullError
from shipper.sources.checkpoint import CheckpointBook
from shipper.sources.intake import BufferIntake


class Checkpointer:
    def __init__(
        self,
        book: CheckpointBook,
        buffer: DiskBuffer,
        intake: BufferIntake,
        *,
        interval_s: float,
        storage_path: Path,
        on_storage_failure: Callable[[], None],
    ) -> None:
        self._book = book
        self._buffer = buffer
        self._intake = intake
        self._interval_s = interval_s
        self._storage_path = storage_path
        # Asks the shipper to stop, in order, once storage failed.
        self._on_storage_failure = on_storage_failure
        self._stop = asyncio.Event()
        # Set when making the buffer or checkpoints durable failed for another reason than a
        # full disk (EIO, say): see `save`.
        self.storage_failure: OSError | None = None

    async def run(self) -> None:
        """Saves, watches rotation and writes due summaries every interval until `stop`."""
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self._interval_s)
            if self._stop.is_set():
                return
            await self.save()
            self._check_rotation()
            await self.write_summaries(removed_only=False)

    def stop(self) -> None:
        """Ends `run` after the save in flight, if any (`run` is not cancelled: a save in
        flight runs in a thread that cancelling would not stop, and the final save would
        race it on the same tmp file)."""
        self._stop.set()

    async def save(self) -> None:
        """Syncs the buffer, then saves the positions snapshotted before the sync."""
        if self.storage_failure is not None:
            return
        snapshot = self._book.snapshot()
        intake = self._intake
        try:
            await self._buffer.sync()
            if await asyncio.to_thread(self._book.save, snapshot):
                telemetry.checkpoint_writes.inc()
        except DiskFullError as exc:
            events.storage.disk_full_saving_checkpoints(error=exc)
            intake.open.clear()
            return
        except OSError as exc:
            # After a failed fsync the kernel may have dropped the dirty pages and reports the
            # error once: a later fsync can succeed over lost data. So no checkpoint is saved
            # again by this process; the last saved one stays valid, and the next start
            # re-reads from Docker whatever it covers no longer (the buffer's checksums drop
            # what did not reach the disk). Stopping loudly is the only safe answer.
            self.storage_failure = exc
            events.storage.storage_failed(error=exc, path=self._storage_path)
            intake.open.clear()
            self._on_storage_failure()
            return
        if not intake.open.is_set():
            events.storage.checkpoints_saved_again()
            intake.open.set()

    async def write_summaries(self, *, removed_only: bool) -> None:
        """Rate-limit summaries of containers gone quiet or removed (never while the buffer
        cannot take them: they wait, their counts are saved with the checkpoints)."""
        if self.storage_failure is not None or not self._intake.open.is_set():
            return
        with contextlib.suppress(DiskFullError):
            await self._intake.write_due_summaries(time.time_ns(), removed_only=removed_only)

    def _check_rotation(self) -> None:
        newly, at_risk = self._intake.rotation.check(time.time_ns(), time.monotonic())
        for risk in newly:
            events.sources.rotation_risk(
                container_id=risk.container_id,
                container_name=risk.container_name,
                backlog_bytes=risk.backlog_bytes,
                capacity_bytes=risk.capacity_bytes,
                behind_s=risk.lag_s,
                held_by_rate_limit=risk.rate_limited,
            )
        telemetry.containers_at_rotation_risk.set(at_risk)
