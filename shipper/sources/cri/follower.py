"""One task per pod container: read its CRI log files from its checkpoint to its end.

A container here is one attempt of a pod's container (a restart is another container id and
another `<attempt>.log`), so a follower reads its files once: following them while the
container runs, to their end once it has exited (tail.py says when the files are complete),
and then it is done. What happens to the records is every source's `Delivery`: skip what the
checkpoint counts, process, buffer, take, count.

Positions are Docker's `Checkpoint(since_ns, skip)`, time-based, so they hold across rotated,
compressed and renamed files. With the position the checkpoint keeps this source's state
(`cri_state`): the log file, whether it was read to its end (`finished`: nothing to read
again), and the container's metadata, so a container whose pod is gone (deleted while the
shipper was down) is still read to its end with the same fields.

At the start of a read, when the oldest file left starts after the checkpoint's time, the
lines the checkpoint counts may be in files kubelet deleted: none are skipped then (any
shipped before have the same `_id`s and are stored once), and when that file starts later
than the checkpoint's window could reach, the lines in between are reported lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipper import events
from shipper.backoff import Backoff
from shipper.config import ProcessingConfig
from shipper.cri.metadata import meta_state
from shipper.cri.parser import CriDecoder
from shipper.cri.runtime import CriRuntimeClient, NotCriV1, NotFound, RuntimeUnavailable
from shipper.model import ContainerMeta
from shipper.pipeline.processor import build_processor
from shipper.sources.checkpoint import DEFAULT_SLACK_NS, Checkpoint
from shipper.sources.cri.tail import SETTLE_S, CriLogTail, TailStart
from shipper.sources.delivery import Delivery, Intake, with_flush_ticks
from shipper.sources.files import shared_watcher

SOURCE_KIND = "cri"
DEFAULT_MAX_LINE_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class CriFollowerSettings:
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    slack_ns: int = DEFAULT_SLACK_NS
    max_backoff_s: float = 10.0
    settle_s: float = SETTLE_S
    # Read at every (re)read, so a reloaded config applies from the next one on.
    processing: Callable[[], ProcessingConfig] = field(default=ProcessingConfig)


def cri_state(checkpoint: Checkpoint | None) -> Mapping[str, Any] | None:
    """This source's state kept with a checkpoint, if it is one of ours."""
    state = checkpoint.source_state if checkpoint is not None else None
    if state is None or state.get("kind") != SOURCE_KIND:
        return None
    return state


class CriContainerFollower:
    def __init__(
        self,
        container_id: str,
        log: Path,
        meta: ContainerMeta,
        intake: Intake,
        start: Checkpoint | None,
        settings: CriFollowerSettings,
        runtime: CriRuntimeClient | None,
    ) -> None:
        """`runtime` None: the runtime no longer knows the container (read what is left)."""
        self.container_id = container_id
        self.log = log
        self.meta: ContainerMeta | None = meta
        self._intake = intake
        self._settings = settings
        self._runtime = runtime
        self.delivery = Delivery(container_id, intake, start, settings.slack_ns)
        state = cri_state(start)
        self.finished = bool(state and state.get("finished"))
        # Set by discovery when its listing shows the container exited: the tail asks.
        self.nudge = asyncio.Event()
        self._state: dict[str, Any] | None = None
        self._invalid_lines_reported = 0

    @property
    def last_read_monotonic(self) -> float:
        return self.delivery.last_read_monotonic

    def checkpoint(self) -> Checkpoint:
        return dataclasses.replace(self.delivery.checkpoint(), source_state=self.source_state())

    def source_state(self) -> dict[str, Any]:
        if self._state is None or self._state["finished"] != self.finished:
            assert self.meta is not None
            self._state = {
                "kind": SOURCE_KIND,
                "name": self.meta.display_name,
                "log_path": str(self.log),
                "finished": self.finished,
                "meta": meta_state(self.meta),
            }
        return self._state

    async def run(self) -> None:
        """Reads the container's files to their end (following them while it runs)."""
        assert self.meta is not None
        self._intake.container_changed(self.meta)
        backoff = Backoff(base_s=0.5, cap_s=self._settings.max_backoff_s)
        while True:
            try:
                await self._read_once(self.meta)
            except OSError as exc:
                # Unreadable (permissions, I/O): start again from the checkpoint, which
                # counts only lines already in the buffer.
                delay = backoff.next_delay_s()
                events.cri.log_files_unreadable(
                    container_id=self.container_id,
                    container_name=self.meta.display_name,
                    path=self.log,
                    error=exc,
                    delay_s=delay,
                )
                await asyncio.sleep(delay)
                continue
            self.finished = True
            return

    async def _read_once(self, meta: ContainerMeta) -> None:
        processor = build_processor(self._settings.processing(), meta)
        start = self.delivery.begin(processor)
        running = await self._still_running()
        tail = CriLogTail(
            self.log,
            since_ns=start.since_ns,
            follow=running,
            still_running=self._still_running,
            watcher=shared_watcher(),
            nudge=self.nudge,
            on_lost=self._file_lost,
            settle_s=self._settings.settle_s,
        )
        decoder: CriDecoder | None = None
        chunks = tail.chunks()
        stream = with_flush_ticks(chunks, processor)
        async with contextlib.aclosing(stream), contextlib.aclosing(chunks):
            async for chunk in stream:
                if chunk is None:  # a tick: events of a quiet container whose time has come
                    await self.delivery.flush_due(meta)
                    continue
                if decoder is None:
                    decoder = self._decoder(tail.start, start)
                records = decoder.feed(chunk)
                if records:
                    await self.delivery.deliver(meta, records)
                self._report_invalid(decoder)
                # Let the output's callbacks run between two chunks (see the Docker follower).
                await asyncio.sleep(0)
        if decoder is None:
            decoder = self._decoder(tail.start, start)
        # The container stopped and its files are complete: a line left in parts (its
        # output ended without a newline) is a record; events still held are complete.
        rest = decoder.finish()
        if rest:
            await self.delivery.deliver(meta, rest)
        self._report_invalid(decoder)
        await self.delivery.finish(meta)

    def _decoder(self, found: TailStart, start: Checkpoint) -> CriDecoder:
        """The decoder of this read, after checking the files against the checkpoint."""
        if (
            start.since_ns > 0
            and found.from_oldest_rotation
            and found.first_line_ns is not None
            and found.first_line_ns > start.since_ns
        ):
            # The oldest file left starts after the checkpoint's time: the lines it counts
            # may have been in a file kubelet deleted, so none are skipped.
            self.delivery.skip_nothing()
            if found.first_line_ns > start.since_ns + self._settings.slack_ns:
                self._file_lost("rotated files older than " + (found.files or ["?"])[0])
        if start.since_ns > 0 and not found.files and not self.finished:
            self._file_lost(f"{self.log} and its rotations")
        return CriDecoder(
            self.container_id,
            max_line_bytes=self._settings.max_line_bytes,
            since_ns=start.since_ns,
            continued=found.continued_streams,
        )

    def _file_lost(self, what: str) -> None:
        events.cri.log_file_lost(
            container_id=self.container_id,
            container_name=self.meta.display_name if self.meta is not None else "",
            file=what,
        )

    def _report_invalid(self, decoder: CriDecoder) -> None:
        if decoder.invalid_lines > self._invalid_lines_reported:
            events.cri.invalid_log_lines(
                container_id=self.container_id,
                path=self.log,
                lines=decoder.invalid_lines - self._invalid_lines_reported,
            )
            self._invalid_lines_reported = decoder.invalid_lines

    async def _still_running(self) -> bool:
        if self._runtime is None:
            return False
        try:
            state = await self._runtime.container_state(self.container_id)
        except NotFound:
            return False
        except (RuntimeUnavailable, NotCriV1):
            return True  # cannot tell: keep following; a later check will know
        # "created": kubelet starts it right after creating it.
        return state in ("running", "created")
