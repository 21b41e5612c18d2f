"""One task per Docker container: read its logs from its checkpoint, reconnect, follow runs.

The follower reads whole network chunks (or json-file chunks) and turns them into records;
what happens to them then (skip what the checkpoint counts, process, buffer, count as taken)
is every source's `Delivery` (delivery.py), which also holds the container's position. A
full buffer makes delivery wait, and so reading pauses: Docker keeps the logs.

What is Docker's own here: which way the logs are read (API or files), reconnecting with
backoff, and a container's runs (a restart that selection no longer wants is not shipped).
Every (re)connection starts from the checkpoint with a fresh decoder and processor, so a
broken stream, a daemon restart and a shipper restart all resume the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from shipper import events
from shipper.backoff import Backoff
from shipper.config import ProcessingConfig
from shipper.docker.api import (
    ApiVersionRefused,
    ContainerGone,
    DockerClient,
    DockerError,
    DockerRequestFailed,
    LogsNotReadable,
)
from shipper.docker.engine import DOCKER, stream_dialect
from shipper.docker.frames import DEFAULT_MAX_LINE_BYTES, LogStreamDecoder
from shipper.docker.jsonfile import JsonFileDecoder
from shipper.events.docker import ReadFailure
from shipper.lines.timestamps import TimestampError, parse_timestamp
from shipper.model import ContainerMeta, LogRecord
from shipper.pipeline.processor import build_processor
from shipper.sources.checkpoint import DEFAULT_SLACK_NS, Checkpoint
from shipper.sources.delivery import Delivery, Intake, with_flush_ticks
from shipper.sources.docker.json_tail import JsonFileTail, log_file_choice
from shipper.sources.files import shared_watcher

__all__ = ["ContainerFollower", "FollowerSettings", "Intake"]


@dataclass(frozen=True, slots=True)
class FollowerSettings:
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    slack_ns: int = DEFAULT_SLACK_NS
    max_backoff_s: float = 10.0
    read_mode: str = "api"  # api | files | auto: see DockerConfig.read_mode
    # Docker's containers directory as seen here; None: unknown, every log is read by API.
    containers_path: str | None = None
    # Read at every (re)connection, so a reloaded config applies from the next one on.
    processing: Callable[[], ProcessingConfig] = field(default=ProcessingConfig)


class ContainerFollower:
    def __init__(
        self,
        container_id: str,
        docker: DockerClient,
        intake: Intake,
        start: Checkpoint | None,
        settings: FollowerSettings,
        select: Callable[[ContainerMeta], bool] | None = None,
    ) -> None:
        self.container_id = container_id
        # Whether the container is shipped, asked again when it starts a new run: a rename
        # (or anything else selection looks at) takes effect at its next start.
        self._select = select
        self._docker = docker
        self._intake = intake
        self._settings = settings
        # The container's records from decoding on, and its position.
        self.delivery = Delivery(container_id, intake, start, settings.slack_ns)
        self.meta: ContainerMeta | None = None
        self.wake = asyncio.Event()  # set by discovery when the container starts again
        self._warned_fallback = False
        self._read_mode = ""  # files or api, as last chosen (logged when it changes)
        self._run_started_at = ""  # StartedAt of the run being followed
        self._until_ns: int | None = None  # lines stamped at or after this are not ours
        # When the run being followed ended (its "die" event), until the next run is seen:
        # Docker keeps appending to the same log, so lines stamped later may be the next
        # run's, which selection must decide on before they are shipped.
        self._died_at_ns: int | None = None
        self._deselected = False

    def checkpoint(self) -> Checkpoint:
        return self.delivery.checkpoint()

    @property
    def last_read_monotonic(self) -> float:
        return self.delivery.last_read_monotonic

    async def run(self) -> None:
        """Follows until the container has stopped and every line it wrote was taken."""
        backoff = Backoff(base_s=0.1, cap_s=self._settings.max_backoff_s)
        while True:
            self.wake.clear()
            try:
                meta = await self._docker.inspect(self.container_id)
            except ContainerGone:
                return
            except DockerError as exc:
                await self._pause(backoff, _read_failure(exc, "docker_unavailable"), exc)
                continue
            self._set_meta(meta)
            if self._deselected_on_restart(meta):
                # Read what the previous run left (the new run's lines are dropped), then go.
                # The run's end by its "die" event when known (Docker stamps all of a run's
                # output before emitting it), else the new run's start (which Docker records
                # only once the process runs, so its first lines may be stamped before).
                died_at = self._died_at_ns
                until = self._until_ns  # already decided while reading, from the "die"
                if until is None:
                    until = died_at + 1 if died_at is not None else None
                if until is None:
                    until = _parse_started_at(meta.started_at)
                if until:
                    self._until_ns = until
                    with contextlib.suppress(ContainerGone, LogsNotReadable, DockerError):
                        await self._read_once(dataclasses.replace(meta, running=False))
                self._say_deselected(meta)
                return
            self._run_started_at = meta.started_at
            try:
                finished = await self._read_once(meta)
            except ContainerGone:
                return
            except LogsNotReadable as exc:
                events.docker.logs_not_readable(
                    container_id=self.container_id, log_driver=meta.log_driver, error=exc
                )
                return
            except DockerError as exc:
                await self._pause(backoff, _read_failure(exc, "log_stream_broken"), exc)
                continue
            backoff.reset()
            if finished and not self.wake.is_set():
                return

    def rename(self, meta: ContainerMeta) -> None:
        self._set_meta(meta)

    def run_ended(self, died_at_ns: int) -> None:
        """The container's run ended (a "die" event): decide on later lines before shipping."""
        if self._select is not None:
            self._died_at_ns = died_at_ns

    async def _next_run_checked(self, records: list[LogRecord]) -> list[LogRecord]:
        """Lines stamped after the run's "die" event are a later run's: Docker emits "die"
        only once it has copied (and stamped) all of the dying run's output. If the
        container, as it is now (renamed, say), is no longer selected, they are dropped and
        reading stops; otherwise they are shipped as ever."""
        died_at = self._died_at_ns
        if died_at is None or max(r.timestamp_ns for r in records) <= died_at:
            return records
        try:
            meta = await self._docker.inspect(self.container_id)
        except (ContainerGone, DockerError):
            return records  # cannot tell: shipping a line too many beats losing one
        self._died_at_ns = None
        self._set_meta(meta)
        if self._select is None or self._select(meta):
            return records
        self._until_ns = died_at + 1
        self._deselected = True
        self._say_deselected(meta)
        return [r for r in records if r.timestamp_ns <= died_at]

    def _say_deselected(self, meta: ContainerMeta) -> None:
        events.docker.container_deselected(container_id=self.container_id, container_name=meta.name)

    def _deselected_on_restart(self, meta: ContainerMeta) -> bool:
        restarted = bool(self._run_started_at) and meta.started_at != self._run_started_at
        return restarted and self._select is not None and not self._select(meta)

    def _set_meta(self, meta: ContainerMeta) -> None:
        if meta != self.meta:
            self.meta = meta
            self._intake.container_changed(meta)

    async def _read_once(self, meta: ContainerMeta) -> bool:
        """One logs request from the checkpoint; True when the container has stopped."""
        processor = build_processor(self._settings.processing(), meta)
        start = self.delivery.begin(processor)
        decoder, chunks_source = self._log_source(meta, start.since_ns)
        follow = meta.running
        chunks = 0
        stream = with_flush_ticks(chunks_source, processor)
        async with contextlib.aclosing(stream), contextlib.aclosing(chunks_source):
            async for chunk in stream:
                if chunk is None:  # a tick: events of a quiet container whose time has come
                    await self.delivery.flush_due(self.meta or meta)
                    continue
                chunks += 1
                records = decoder.feed(chunk)
                if decoder.spans:
                    self.delivery.position.note_spans(decoder.take_spans())
                if records:
                    await self._deliver(meta, records)
                # Let the output's callbacks run between two chunks: a busy follower finds
                # data ready at every await and would otherwise starve the sink of turns,
                # so that reading ran far ahead while shipping crawled (measured: files-mode
                # throughput 77k → 124k lines/s).
                await asyncio.sleep(0)
                if self._deselected:
                    break  # the next run is not ours: what is left of this one was delivered
        if follow:
            # Whether the container stopped or the connection broke, read again from the
            # checkpoint: a follow stream can end before it delivered a stopped container's
            # last lines, and the next read, plain when the container has stopped, returns
            # everything its log holds.
            if chunks == 0:
                await asyncio.sleep(0.1)  # a stream that ends at once must not spin
            return False
        # A plain read returned the whole log: its last line may lack a newline, and it is
        # still a record; events still held are complete now.
        tail = decoder.finish()
        if decoder.spans:
            self.delivery.position.note_spans(decoder.take_spans())
        if tail:
            await self._deliver(meta, tail)
        await self.delivery.finish(self.meta or meta)
        return True

    def _log_source(
        self, meta: ContainerMeta, since_ns: int
    ) -> tuple[LogStreamDecoder, AsyncGenerator[bytes, None]]:
        """The json-file logs read directly when allowed and visible, else the logs API."""
        max_line_bytes = self._settings.max_line_bytes
        path = self._choose_read_mode(meta)
        if path is None:
            api_decoder = LogStreamDecoder(
                self.container_id,
                tty=meta.tty,
                max_line_bytes=max_line_bytes,
                since_ns=since_ns,
                dialect=stream_dialect(meta.runtime),
            )
            chunks = self._docker.logs(self.container_id, since_ns=since_ns, follow=meta.running)
            return api_decoder, chunks
        file_decoder = JsonFileDecoder(
            self.container_id, tty=meta.tty, since_ns=since_ns, max_line_bytes=max_line_bytes
        )
        tail = JsonFileTail(
            path,
            since_ns=since_ns,
            follow=meta.running,
            still_running=self._still_running,
            watcher=shared_watcher(),
        )
        return file_decoder, tail.chunks()

    def _choose_read_mode(self, meta: ContainerMeta) -> Path | None:
        """The json-file log to read, or None for the logs API; says which and why when it
        is first chosen and whenever it changes."""
        mode = self._settings.read_mode
        if mode == "api":
            path, why = None, "docker.read_mode is api"
        elif meta.runtime != DOCKER:
            # Podman's inspect says json-file whatever its driver, and its k8s-file log is
            # another format: only Docker's json-file logs are read as files.
            path, why = None, f"{meta.runtime} containers are read through its API only"
        else:
            path, why = log_file_choice(meta, self._settings.containers_path)
        chosen: Literal["files", "api"] = "files" if path is not None else "api"
        if chosen != self._read_mode:
            self._read_mode = chosen
            if chosen == "api" and mode == "files" and not self._warned_fallback:
                self._warned_fallback = True
                events.docker.log_files_not_readable(
                    container_id=self.container_id, log_driver=meta.log_driver, reason=why
                )
            events.docker.read_mode_chosen(
                container_id=self.container_id,
                container_name=meta.name,
                read_mode=chosen,
                reason=why,
            )
        return path

    async def _still_running(self) -> bool:
        try:
            meta = await self._docker.inspect(self.container_id)
        except ContainerGone:
            return False
        except DockerError:
            return True  # cannot tell: keep following; a later check will know
        self._set_meta(meta)
        return meta.running

    async def _deliver(self, meta: ContainerMeta, records: list[LogRecord]) -> None:
        """Drops what is not this run's (see `_next_run_checked`), delivers the rest."""
        if self._died_at_ns is not None:
            records = await self._next_run_checked(records)
        if self._until_ns is not None:
            until = self._until_ns
            records = [r for r in records if r.timestamp_ns < until]
            if not records:
                return
        await self.delivery.deliver(self.meta or meta, records)

    async def _pause(self, backoff: Backoff, kind: ReadFailure, exc: Exception) -> None:
        delay = backoff.next_delay_s()
        events.docker.read_failed(
            kind=kind, container_id=self.container_id, error=exc, delay_s=delay
        )
        await asyncio.sleep(delay)


def _read_failure(
    exc: DockerError, unavailable: Literal["docker_unavailable", "log_stream_broken"]
) -> ReadFailure:
    """The kind a Docker error is counted under: a refused version or an error answer is
    not a daemon that went away."""
    if isinstance(exc, ApiVersionRefused):
        return "docker_api_version_refused"
    if isinstance(exc, DockerRequestFailed):
        return "docker_request_failed"
    return unavailable


def _parse_started_at(started_at: str) -> int:
    """Docker's State.StartedAt (RFC 3339) in ns; 0 when absent or not a time."""
    try:
        return parse_timestamp(started_at.encode("ascii", "replace"))
    except TimestampError:
        return 0
