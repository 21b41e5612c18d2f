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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.registry import Collector

from shipper import __version__, status, telemetry
from shipper.backoff import Backoff
from shipper.buffer import DiskBuffer
from shipper.config import Config, ProcessingConfig, changed_keys
from shipper.docker.api import DockerClient, DockerUnavailable
from shipper.docker.own_container import detect_own_container, own_pod_uid
from shipper.errors import ConfigError, DiskFullError
from shipper.http import HttpServer
from shipper.model import ContainerMeta, LogRecord
from shipper.native import ACTIVE as NATIVE_HOT_PATH
from shipper.pipeline.encoder import (
    ContainerDocument,
    container_document,
    encode_joined,
)
from shipper.pipeline.metadata import container_fields
from shipper.sinks.console.sink import ConsoleSink
from shipper.sinks.elasticsearch.client import ElasticsearchConnection, RequestFailed
from shipper.sinks.elasticsearch.dead_letter import DeadLetters
from shipper.sinks.elasticsearch.routing import Router
from shipper.sinks.elasticsearch.sink import ElasticsearchSink
from shipper.sinks.kibana import KibanaSetup
from shipper.sources.checkpoint import CheckpointBook, CheckpointFileError, CheckpointStore
from shipper.sources.discovery import Discovery
from shipper.sources.follower import FollowerSettings
from shipper.sources.rotation import RotationWatch
from shipper.sources.selection import should_ship


class BufferIntake:
    """Encodes a container's records once and appends them to the disk buffer."""

    def __init__(
        self,
        buffer: DiskBuffer,
        route: Callable[[ContainerMeta], str],
        host_name: str,
        processing: Callable[[], ProcessingConfig],
    ) -> None:
        self._buffer = buffer
        self._route = route  # the container's data stream (labels, routing rules, default)
        self._host_name = host_name
        self._processing = processing
        self._documents: dict[str, ContainerDocument] = {}
        # Sees each container's write rate and how far behind reading is (rotation risk).
        self.rotation = RotationWatch()
        # Cleared while checkpoints cannot be saved (disk full): reading pauses then, as it
        # does when the buffer cannot be written, instead of running ever further ahead of
        # the last saved position.
        self.open = asyncio.Event()
        self.open.set()

    def container_changed(self, meta: ContainerMeta) -> None:
        self.rotation.container_changed(meta)
        self._documents[meta.id] = container_document(
            meta,
            index=self._route(meta),
            host_name=self._host_name,
            extra_fields=container_fields(meta, self._processing()),
        )

    async def put(self, meta: ContainerMeta, records: list[LogRecord]) -> None:
        document = self._documents.get(meta.id)
        if document is None:
            self.container_changed(meta)
            document = self._documents[meta.id]
        entries = encode_joined(records, document)
        if not self.open.is_set():
            await self.open.wait()
        self.rotation.put_started(meta.id, time.monotonic())
        await self._buffer.append(entries)
        self.rotation.put_finished(meta.id, records, time.monotonic())
        telemetry.records_buffered.inc(len(entries.lengths))

    def forget(self, container_id: str) -> None:
        self._documents.pop(container_id, None)
        self.rotation.forget(container_id)


class Shipper:
    def __init__(self, config: Config, reload_config: Callable[[], Config] | None = None) -> None:
        self.config = config
        # Re-reads the config as it was loaded at start (file, environment, flags): SIGHUP.
        self._reload_config = reload_config
        self.storage = Path(config.storage.path)
        # Selection and processing rules in force; followers and discovery read this at each
        # container (re)start, so replacing it (reload) applies from the next start on.
        self.processing: ProcessingConfig = config.processing
        self.http: HttpServer | None = None
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._output_problem: str | None = None  # why the output is not ready, if known
        self._rotation: RotationWatch | None = None
        self._intake: BufferIntake | None = None
        self._stop_checkpoints = asyncio.Event()
        # Set when making the buffer or checkpoints durable failed for another reason than a
        # full disk (EIO, say): see _save_checkpoints.
        self._storage_failure: OSError | None = None

    def request_stop(self) -> None:
        if self._stop.is_set():
            self._force.set()
        self._stop.set()

    def reload(self) -> bool:
        """SIGHUP: re-reads the config and applies its `processing` rules; True if applied.

        Discovery and followers read `self.processing` whenever they open a container's
        log stream, so new rules apply to containers started from now on, and to a followed
        container when its stream is opened again (it restarts, or the stream reconnects);
        until then it keeps the rules it started with (a running container the new
        selection excludes is followed until it stops). Positions, buffer and connections
        are untouched, so nothing is lost or sent twice. A config that does not validate is
        logged, naming the key, and the rules in force stay. Other sections need a restart;
        a change to them is logged as a warning.
        """
        if self._reload_config is None:
            telemetry.info("SIGHUP ignored: there is no config to reload.")
            return False
        try:
            new = self._reload_config()
        except ConfigError as exc:
            telemetry.config_reloads.labels("rejected").inc()
            telemetry.error(
                "config_reload_rejected",
                "The reloaded config is not valid; the rules in force stay.",
                key=exc.key,
                problem=exc.problem,
            )
            return False
        changed = changed_keys(self.processing, new.processing, "processing")
        restart_keys = [
            key for key in changed_keys(self.config, new, "") if not key.startswith("processing.")
        ]
        if new.processing.max_line_bytes != self.processing.max_line_bytes:
            restart_keys.append("processing.max_line_bytes")
        if restart_keys:
            telemetry.warning(
                "config_reload_needs_restart",
                "These keys changed but only take effect after a restart.",
                keys=restart_keys,
            )
        if not changed:
            telemetry.config_reloads.labels("unchanged").inc()
            telemetry.info("Config reloaded; the processing rules are unchanged.")
            return False
        self.processing = new.processing
        telemetry.config_reloads.labels("applied").inc()
        telemetry.info(
            "Config reloaded: the new processing rules apply to each container from its "
            "next start or reconnection.",
            changed=changed,
        )
        return True

    async def _open_buffer(self) -> DiskBuffer | None:
        """Opens (and recovers) the disk buffer; on a full disk waits for space, saying so.
        None if asked to stop meanwhile."""
        config = self.config
        backoff = Backoff(base_s=1.0, cap_s=30.0)
        while True:
            try:
                return DiskBuffer.open(
                    self.storage / "buffer",
                    max_bytes=config.storage.max_bytes,
                    segment_max_bytes=config.storage.segment_max_bytes,
                    fsync=config.storage.fsync,
                    on_corrupt=_on_corrupt_segment,
                    # The output reads whole blocks: keep each within half a bulk request.
                    block_max_entries=max(1, config.elasticsearch.batch_max_docs // 2),
                    block_max_bytes=max(1, config.elasticsearch.batch_max_bytes // 2),
                )
            except DiskFullError as exc:
                delay = backoff.next_delay_s()
                telemetry.disk_full.labels("buffer").inc()
                telemetry.error(
                    "disk_full_at_start",
                    "No space left to open the disk buffer; waiting for space before reading.",
                    storage_path=str(self.storage),
                    error=str(exc),
                    delay_s=round(delay, 2),
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=delay)
                if self._stop.is_set():
                    return None

    async def run(self) -> int:
        config = self.config
        _prepare_storage(self.storage)
        self._install_signal_handlers()
        opened = await self._open_buffer()
        if opened is None:
            return 0
        buffer = opened
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
        per_container: Collector | None = None
        buffer_reads = telemetry.enable_buffer_reads(lambda: buffer.blocks_read)
        try:
            host_name = config.host_name or await _docker_host_name(docker)
            router = Router(config.elasticsearch.data_stream, config.elasticsearch.routing)
            intake = BufferIntake(buffer, router.route, host_name, lambda: self.processing)
            self._rotation = intake.rotation
            self._intake = intake
            own = detect_own_container()
            own_id = own.id if own is not None else None
            pod_uid = own_pod_uid()
            if own is not None and own.source == "network_files":
                telemetry.warning(
                    "own_container_uncertain",
                    "The shipper's own container id was found only in its network files; if "
                    "it shares another container's network, that container is taken for it "
                    "(label the shipper's container shipper.enable=false to be sure).",
                    container_id=own.id[:12],
                )
            discovery = Discovery(
                docker,
                intake,
                book,
                FollowerSettings(
                    max_line_bytes=config.processing.max_line_bytes,
                    max_backoff_s=config.docker.reconnect_max_backoff_s,
                    read_mode=config.docker.read_mode,
                    containers_path=config.docker.containers_path,
                    processing=lambda: self.processing,
                ),
                select=lambda meta: should_ship(meta, self.processing.selection, own_id, pod_uid),
            )
            sink: ElasticsearchSink | ConsoleSink
            if config.output == "elasticsearch":
                connection = ElasticsearchConnection(config.elasticsearch)
                sink = ElasticsearchSink(
                    connection,
                    buffer,
                    config.elasticsearch,
                    DeadLetters(
                        self.storage / "dead-letter",
                        connection,
                        config.elasticsearch.dead_letter.data_stream,
                    ),
                    static_targets=router.static_targets(),
                )
            else:
                sink = ConsoleSink(buffer)
            # Credentials files are read now, so a bad one fails the start (exit 2).
            kibana = KibanaSetup(config.kibana) if config.kibana.url else None

            def readiness() -> list[str]:
                problems = []
                if not discovery.connected:
                    problems.append("Docker API not reachable")
                if sink.last_error is not None:
                    problems.append(f"output not accepting writes: {sink.last_error}")
                elif self._output_problem is not None:
                    problems.append(f"output not accepting writes: {self._output_problem}")
                return problems

            def status_report() -> dict[str, Any]:
                names = {cid: f.meta.name for cid, f in discovery.followers.items() if f.meta}
                return {
                    "source": "agent",
                    "storage_path": str(self.storage),
                    "generated_at": status.rfc3339(time.time_ns()),
                    "buffer": {
                        "records": buffer.records_held,
                        "bytes": buffer.bytes_held,
                        "oldest_record_age_s": round(buffer.oldest_unacked_age_s, 3),
                    },
                    "containers": status.container_rows(
                        book.snapshot(), names, discovery.followers.keys()
                    ),
                    "dead_letters": {
                        **status.dead_letter_counts(self.storage),
                        "since_start": int(telemetry.counter_total(telemetry.dead_lettered)),
                    },
                }

            telemetry.build_info.labels(__version__).set(1)
            telemetry.buffer_bytes.set_function(lambda: buffer.bytes_held)
            telemetry.buffer_records.set_function(lambda: buffer.records_held)
            telemetry.oldest_unshipped_age.set_function(lambda: buffer.oldest_unacked_age_s)
            if config.metrics.per_container:
                per_container = telemetry.enable_per_container(
                    lambda: _container_samples(discovery)
                )
            if config.metrics.listen:
                self.http = HttpServer(config.metrics.listen, readiness, status_report)
                await self.http.start()
            telemetry.info(
                "Shipper started.",
                output=config.output,
                docker_host=config.docker.host,
                storage_path=str(self.storage),
                host_name=host_name,
                native_hot_path=NATIVE_HOT_PATH,  # False: built without a C compiler, or off
            )

            async def run_sink() -> None:
                if connection is not None:
                    assert isinstance(sink, ElasticsearchSink)
                    # Connects and installs templates; sink.last_error says why not yet.
                    if not await sink.prepare():
                        return
                    probe = asyncio.create_task(self._watch_output(connection, sink))
                    try:
                        await sink.run()
                    finally:
                        probe.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await probe
                    return
                await sink.run()

            async with asyncio.TaskGroup() as group:
                # Reading starts at once; while the output is not there yet, the buffer holds.
                sink_task = group.create_task(run_sink(), name="sink")
                discovery_task = group.create_task(discovery.run(), name="discovery")
                checkpointer = group.create_task(
                    self._checkpoint_loop(buffer, book), name="checkpoints"
                )
                kibana_task = group.create_task(kibana.run(), name="kibana") if kibana else None
                await self._stop.wait()
                if kibana_task is not None:
                    kibana_task.cancel()
                # 1. stop reading
                discovery_task.cancel()
                await discovery.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await discovery_task
                # Not cancelled: a save in flight runs in a thread that cancelling would
                # not stop, and the final save below would race it on the same tmp file.
                self._stop_checkpoints.set()
                await checkpointer
                # 2. everything read is in the buffer: make it durable, then save positions
                await self._save_checkpoints(buffer, book)
                # 3. let the output drain within the timeout
                await self._drain(buffer, sink_task)
                sink.stop()
                await asyncio.wait({sink_task}, timeout=5)
                sink_task.cancel()
            if self._storage_failure is not None:
                return 1
            telemetry.info("Shipper stopped.", buffered_records=buffer.records_held)
            return 0
        finally:
            telemetry.REGISTRY.unregister(buffer_reads)
            if per_container is not None:
                telemetry.REGISTRY.unregister(per_container)
            if connection is not None:
                await connection.close()
            await docker.close()
            try:
                await buffer.close()
            except OSError:
                if self._storage_failure is None:
                    raise
                # The same disk failing again as the buffer closes: reported already.
            if self.http is not None:
                await self.http.stop()

    async def _checkpoint_loop(self, buffer: DiskBuffer, book: CheckpointBook) -> None:
        interval = self.config.storage.checkpoint_interval_s
        while not self._stop_checkpoints.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_checkpoints.wait(), timeout=interval)
            if self._stop_checkpoints.is_set():
                return
            await self._save_checkpoints(buffer, book)
            self._check_rotation()

    def _check_rotation(self) -> None:
        if self._rotation is None:
            return
        newly, at_risk = self._rotation.check(time.time_ns(), time.monotonic())
        for risk in newly:
            telemetry.rotation_risk(
                risk.container_id,
                risk.container_name,
                risk.backlog_bytes,
                risk.capacity_bytes,
                risk.lag_s,
            )
        telemetry.containers_at_rotation_risk.set(at_risk)

    async def _watch_output(
        self, connection: ElasticsearchConnection, sink: ElasticsearchSink
    ) -> None:
        """Keeps /readyz true while no bulk request is in flight: when nothing was sent
        successfully for a while, asks the cluster whether it answers at all."""
        while True:
            await asyncio.sleep(_OUTPUT_PROBE_INTERVAL_S)
            if time.monotonic() - sink.last_success_monotonic < _OUTPUT_PROBE_INTERVAL_S:
                self._output_problem = None
                continue
            try:
                async with asyncio.timeout(_OUTPUT_PROBE_TIMEOUT_S):
                    await connection.request("GET", "/")
                self._output_problem = None
            except TimeoutError:
                self._output_problem = "Elasticsearch did not answer within 5 s"
            except RequestFailed as exc:
                self._output_problem = str(exc)

    async def _save_checkpoints(self, buffer: DiskBuffer, book: CheckpointBook) -> None:
        if self._storage_failure is not None:
            return
        snapshot = book.snapshot()
        intake = self._intake
        try:
            await buffer.sync()
            if await asyncio.to_thread(book.save, snapshot):
                telemetry.checkpoint_writes.inc()
        except DiskFullError as exc:
            telemetry.disk_full.labels("checkpoints").inc()
            telemetry.error(
                # Its own kind: logs are rate-limited per kind, and this line must not hide
                # the follower's "reading is paused" one (kind disk_full), nor the reverse.
                "checkpoint_disk_full",
                "No space left to save checkpoints; the previous ones stay valid and reading "
                "is paused until they can be saved again.",
                error=str(exc),
            )
            if intake is not None:
                intake.open.clear()
            return
        except OSError as exc:
            # After a failed fsync the kernel may have dropped the dirty pages and reports the
            # error once: a later fsync can succeed over lost data. So no checkpoint is saved
            # again by this process; the last saved one stays valid, and the next start
            # re-reads from Docker whatever it covers no longer (the buffer's checksums drop
            # what did not reach the disk). Stopping loudly is the only safe answer.
            self._storage_failure = exc
            telemetry.error(
                "storage_failed",
                "Making the disk buffer or checkpoints durable failed; stopping without "
                "saving checkpoints again. Check the disk, then start the shipper again: it "
                "resumes from the last saved checkpoints and loses nothing.",
                error=str(exc),
                path=str(self.storage),
            )
            if intake is not None:
                intake.open.clear()
            self.request_stop()
            return
        if intake is not None and not intake.open.is_set():
            telemetry.info("Checkpoints saved again; reading resumes.")
            intake.open.set()

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
        loop.add_signal_handler(signal.SIGHUP, self.reload)


_OUTPUT_PROBE_INTERVAL_S = 1.0
_OUTPUT_PROBE_TIMEOUT_S = 5.0


def _container_samples(discovery: Discovery) -> list[telemetry.ContainerSample]:
    now_ns, now = time.time_ns(), time.monotonic()
    samples = []
    for follower in list(discovery.followers.values()):
        if follower.meta is None:
            continue
        since = follower.checkpoint().since_ns
        last = follower.last_read_monotonic
        samples.append(
            telemetry.ContainerSample(
                follower.meta.name,
                max(0.0, (now_ns - since) / 1e9) if since else 0.0,
                now - last if last else None,
            )
        )
    return samples


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
