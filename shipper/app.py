"""Composition root: builds every part, runs them together, shuts them down in order.

Data flows one way: Docker → followers → intake (encode) → disk buffer → output. The
checkpointer persists each container's position only after the buffer holding its lines is
synced. Shutdown order: stop reading, sync the buffer, save checkpoints, give the output
`shutdown_timeout_s` to drain, close everything. A second signal skips the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

from shipper import telemetry
from shipper.buffer import DiskBuffer
from shipper.config import Config, ProcessingConfig
from shipper.docker.api import DockerClient, DockerUnavailable
from shipper.docker.own_container import own_container_id
from shipper.errors import ConfigError, DiskFullError
from shipper.http import HttpServer
from shipper.model import ContainerMeta, LogRecord
from shipper.pipeline.metadata import container_fields
from shipper.sinks.console.sink import ConsoleSink
from shipper.sinks.elasticsearch import templates
from shipper.sinks.elasticsearch.client import ElasticsearchConnection, RequestFailed
from shipper.sinks.elasticsearch.dead_letter import DeadLetters
from shipper.sinks.elasticsearch.encoder import (
    ContainerDocument,
    container_document,
    encode_records,
)
from shipper.sinks.elasticsearch.sink import ElasticsearchSink
from shipper.sources.checkpoint import CheckpointBook, CheckpointFileError, CheckpointStore
from shipper.sources.discovery import Discovery
from shipper.sources.follower import FollowerSettings
from shipper.sources.selection import should_ship


class BufferIntake:
    """Encodes a container's records once and appends them to the disk buffer."""

    def __init__(
        self,
        buffer: DiskBuffer,
        index: str,
        host_name: str,
        processing: Callable[[], ProcessingConfig],
    ) -> None:
        self._buffer = buffer
        self._index = index
        self._host_name = host_name
        self._processing = processing
        self._documents: dict[str, ContainerDocument] = {}

    def container_changed(self, meta: ContainerMeta) -> None:
        self._documents[meta.id] = container_document(
            meta,
            index=self._index,
            host_name=self._host_name,
            extra_fields=container_fields(meta, self._processing()),
        )

    async def put(self, meta: ContainerMeta, records: list[LogRecord]) -> None:
        document = self._documents.get(meta.id)
        if document is None:
            self.container_changed(meta)
            document = self._documents[meta.id]
        entries = encode_records(records, document)
        await self._buffer.append(entries)
        telemetry.records_buffered.inc(len(entries))

    def forget(self, container_id: str) -> None:
        self._documents.pop(container_id, None)


class Shipper:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.storage = Path(config.storage.path)
        # Selection and processing rules in force; followers and discovery read this at each
        # container (re)start, so replacing it (reload) applies from the next start on.
        self.processing: ProcessingConfig = config.processing
        self.http: HttpServer | None = None
        self._stop = asyncio.Event()
        self._force = asyncio.Event()

    def request_stop(self) -> None:
        if self._stop.is_set():
            self._force.set()
        self._stop.set()

    async def run(self) -> int:
        config = self.config
        _prepare_storage(self.storage)
        buffer = DiskBuffer.open(
            self.storage / "buffer",
            max_bytes=config.storage.max_bytes,
            segment_max_bytes=config.storage.segment_max_bytes,
            fsync=config.storage.fsync,
            on_corrupt=_on_corrupt_segment,
        )
        store = CheckpointStore(self.storage)
        try:
            saved = store.load()
        except CheckpointFileError as exc:
            telemetry.error(
                "checkpoint_unreadable",
                "The checkpoint file is unreadable; containers are read from their start "
                "(lines already stored are recognised by their ids and not stored twice).",
                error=str(exc),
            )
            saved = {}
        book = CheckpointBook(store, saved)
        docker = DockerClient(
            config.docker.host,
            api_version=config.docker.api_version,
            tls_verify=config.docker.tls_verify,
            cert_path=config.docker.cert_path,
        )
        connection: ElasticsearchConnection | None = None
        try:
            host_name = config.host_name or await _docker_host_name(docker)
            intake = BufferIntake(
                buffer, config.elasticsearch.data_stream, host_name, lambda: self.processing
            )
            own_id = own_container_id()
            discovery = Discovery(
                docker,
                intake,
                book,
                FollowerSettings(
                    max_line_bytes=config.processing.max_line_bytes,
                    max_backoff_s=config.docker.reconnect_max_backoff_s,
                    processing=lambda: self.processing,
                ),
                select=lambda meta: should_ship(meta, self.processing.selection, own_id),
            )
            sink: ElasticsearchSink | ConsoleSink
            if config.output == "elasticsearch":
                connection = ElasticsearchConnection(config.elasticsearch)
                sink = ElasticsearchSink(
                    connection,
                    buffer,
                    config.elasticsearch,
                    DeadLetters(self.storage / "dead-letter"),
                )
            else:
                sink = ConsoleSink(buffer)

            def readiness() -> list[str]:
                problems = []
                if not discovery.connected:
                    problems.append("Docker API not reachable")
                if sink.last_error is not None:
                    problems.append(f"output not accepting writes: {sink.last_error}")
                return problems

            if config.metrics.listen:
                self.http = HttpServer(config.metrics.listen, readiness)
                await self.http.start()
            self._install_signal_handlers()
            telemetry.info(
                "Shipper started.",
                output=config.output,
                docker_host=config.docker.host,
                storage_path=str(self.storage),
                host_name=host_name,
            )

            async def run_sink() -> None:
                if connection is not None:
                    await self._prepare_elasticsearch(connection)
                await sink.run()

            async with asyncio.TaskGroup() as group:
                # Reading starts at once; while the output is not there yet, the buffer holds.
                sink_task = group.create_task(run_sink(), name="sink")
                discovery_task = group.create_task(discovery.run(), name="discovery")
                checkpointer = group.create_task(
                    self._checkpoint_loop(buffer, book), name="checkpoints"
                )
                await self._stop.wait()
                # 1. stop reading
                discovery_task.cancel()
                await discovery.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await discovery_task
                checkpointer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await checkpointer
                # 2. everything read is in the buffer: make it durable, then save positions
                await self._save_checkpoints(buffer, book)
                # 3. let the output drain within the timeout
                await self._drain(buffer, sink_task)
                sink.stop()
                await asyncio.wait({sink_task}, timeout=5)
                sink_task.cancel()
            telemetry.info("Shipper stopped.", buffered_records=buffer.records_held)
            return 0
        finally:
            if connection is not None:
                await connection.close()
            await docker.close()
            await buffer.close()
            if self.http is not None:
                await self.http.stop()

    async def _prepare_elasticsearch(self, connection: ElasticsearchConnection) -> None:
        """Waits for the cluster (data is buffered meanwhile) and installs the template."""
        attempt = 0
        while not self._stop.is_set():
            try:
                major = await connection.connect()
                if self.config.elasticsearch.install_template:
                    await templates.install(connection, self.config.elasticsearch.data_stream)
                telemetry.info(
                    "Connected to Elasticsearch.", version=connection.version, major=major
                )
                return
            except RequestFailed as exc:
                attempt += 1
                telemetry.warning(
                    "elasticsearch_unavailable",
                    "Elasticsearch is not reachable yet; logs are buffered meanwhile.",
                    error=str(exc),
                    attempt=attempt,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=min(10.0, 0.5 * attempt))

    async def _checkpoint_loop(self, buffer: DiskBuffer, book: CheckpointBook) -> None:
        interval = self.config.storage.checkpoint_interval_s
        while True:
            await asyncio.sleep(interval)
            await self._save_checkpoints(buffer, book)
            telemetry.buffer_bytes.set(buffer.bytes_held)
            telemetry.buffer_records.set(buffer.records_held)
            telemetry.oldest_unshipped_age.set(buffer.oldest_unacked_age_s)

    async def _save_checkpoints(self, buffer: DiskBuffer, book: CheckpointBook) -> None:
        snapshot = book.snapshot()
        try:
            await buffer.sync()
            if await asyncio.to_thread(book.save, snapshot):
                telemetry.checkpoint_writes.inc()
        except DiskFullError as exc:
            telemetry.disk_full.labels("checkpoints").inc()
            telemetry.error(
                "disk_full",
                "No space left to save checkpoints; the previous ones stay valid.",
                error=str(exc),
            )

    async def _drain(self, buffer: DiskBuffer, sink_task: asyncio.Task[None]) -> None:
        deadline = asyncio.get_running_loop().time() + self.config.shutdown_timeout_s
        while buffer.records_held > 0 and not self._force.is_set() and not sink_task.done():
            if asyncio.get_running_loop().time() >= deadline:
                telemetry.info(
                    "Shutdown timeout reached; the rest stays in the disk buffer for next start.",
                    buffered_records=buffer.records_held,
                )
                return
            await asyncio.sleep(0.05)

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)


async def _docker_host_name(docker: DockerClient) -> str:
    try:
        name = str((await docker.info()).get("Name") or "")
    except DockerUnavailable:
        name = ""
    return name or os.uname().nodename


def _prepare_storage(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            "storage.path", f"{str(path)!r} is not writable: {exc.strerror}"
        ) from None


def _on_corrupt_segment(path: Path, reason: str) -> None:
    telemetry.buffer_corrupt_segments.inc()
    telemetry.error(
        "buffer_corrupt",
        "A corrupt disk buffer segment was moved aside; the rest flows on.",
        path=str(path),
        reason=reason,
    )
