"""Composition root: builds every part, runs them together, shuts them down in order.

Data flows one way: runtime → followers → intake (encode) → disk buffer → output. The
checkpointer (`sources/checkpointer.py`) persists each container's position only after the
buffer holding its lines is synced. `Shipper.run` reads as the table of contents:

* `startup`: choose the source (Docker's API or the CRI log files, `sources/choice.py`),
  decide once per storage where containers without a position begin
  (`sources/first_start.py`), open the disk buffer and count what it holds
  (`accounting.at_start`), build the checkpoints, the intake, the source and the output (the
  builders in `build.py` are shared with `shipper backfill`), then serve the metrics and the
  HTTP endpoints (`live_status.py`);
* `main_loop`: run discovery, the output and the checkpointer (which also writes the
  rate-limit summaries of quiet containers) until a signal; SIGHUP applies new processing
  rules (`reload.py`);
* `shutdown`: stop reading, sync the buffer, save checkpoints, give the output
  `shutdown_timeout_s` to drain (a second signal skips the drain), then `close` everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.registry import Collector

from shipper import accounting, build, events, live_status, telemetry
from shipper.buffer import DiskBuffer
from shipper.build import RuntimeClient
from shipper.config import Config, ProcessingConfig
from shipper.cri.runtime import CriRuntimeClient, NotCriV1, RuntimeUnavailable
from shipper.docker.api import DockerError
from shipper.errors import ConfigError
from shipper.http import HttpServer
from shipper.layout import StorageLayout
from shipper.native import ACTIVE as NATIVE_HOT_PATH
from shipper.reload import reloaded_processing
from shipper.sinks.elasticsearch.client import ElasticsearchConnection
from shipper.sinks.kibana import KibanaSetup
from shipper.sources import history
from shipper.sources.checkpoint import CheckpointBook
from shipper.sources.checkpointer import Checkpointer
from shipper.sources.choice import SourceChoice, choose_source, source_fields
from shipper.sources.cri import history as cri_history
from shipper.sources.cri.discovery import CriDiscovery
from shipper.sources.docker import history as docker_history
from shipper.sources.docker.discovery import Discovery
from shipper.sources.first_start import FirstStart, decide_at_start, say_start_position
from shipper.sources.intake import BufferIntake


@dataclass(slots=True)
class _Parts:
    """Everything `startup` built, for `main_loop`, `shutdown` and `close`."""

    client: RuntimeClient  # the source's: Docker's API, or the CRI runtime's
    buffer: DiskBuffer
    decision: FirstStart
    first_start: bool  # the decision was made by this start
    host_name: str
    book: CheckpointBook
    intake: BufferIntake
    source: build.Source
    checkpointer: Checkpointer
    output: build.Output
    connection: ElasticsearchConnection | None
    kibana: KibanaSetup | None
    collectors: list[Collector] = field(default_factory=list)

    @property
    def discovery(self) -> Discovery | CriDiscovery:
        return self.source.discovery


class Shipper:
    def __init__(
        self,
        config: Config,
        reload_config: Callable[[], Config] | None = None,
        *,
        start_at_from_flag: bool = False,
    ) -> None:
        self.config = config
        self._start_at_from_flag = start_at_from_flag
        # Re-reads the config as it was loaded at start (file, environment, flags): SIGHUP.
        self._reload_config = reload_config
        self.layout = StorageLayout(Path(config.storage.path))
        # Selection and processing rules in force; followers and discovery read this at each
        # container (re)start, so replacing it (reload) applies from the next start on.
        self.processing: ProcessingConfig = config.processing
        self.http: HttpServer | None = None
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        # Set when the output finds the config wrong for the cluster it reached (a failure
        # store it does not have): the shipper stops in order, then exits 2 naming the key.
        self._config_error: ConfigError | None = None

    @property
    def storage(self) -> Path:
        return self.layout.root

    async def run(self) -> int:
        self.layout.prepare()
        self._install_signal_handlers()
        parts = await self.startup()
        if parts is None:
            return 0  # asked to stop while waiting for disk space to open the buffer
        try:
            await self.main_loop(parts)
        finally:
            await self.close(parts)
        if self._config_error is not None:
            raise self._config_error  # exit 2 in `shipper run`, naming the key
        if parts.checkpointer.storage_failure is not None:
            return 1
        events.lifecycle.stopped(buffered_records=parts.buffer.records_held)
        return 0

    def request_stop(self) -> None:
        if self._stop.is_set():
            self._force.set()
        self._stop.set()

    # -- startup -------------------------------------------------------------------------------

    async def startup(self) -> _Parts | None:
        """Builds every part; None if asked to stop before the buffer could be opened."""
        opened = await self._open_storage()
        if opened is None:
            return None
        choice, client, (decision, first), buffer = opened
        try:
            parts = await self._build(client, buffer, decision, first)
        except BaseException:
            await client.close()
            await buffer.close()
            raise
        try:
            await self._serve_telemetry(parts)
        except BaseException:
            await self.close(parts)
            raise
        events.lifecycle.started(
            source=choice.kind,
            source_chosen_because=choice.why,
            source_fields=source_fields(self.config, choice),
            output=self.config.output,
            storage_path=self.storage,
            host_name=parts.host_name,
            native_hot_path=NATIVE_HOT_PATH,
        )
        say_start_position(decision, first, self.config.start_at)
        return parts

    async def _open_storage(
        self,
    ) -> tuple[SourceChoice, RuntimeClient, tuple[FirstStart, bool], DiskBuffer] | None:
        """Chooses the source, decides the first start with its runtime's clock, then opens
        the disk buffer; None if asked to stop while waiting for disk space."""
        config = self.config
        docker = build.docker_client(config.docker)
        client: RuntimeClient = docker
        try:
            choice = await choose_source(config, docker)
            if choice.kind == "cri":
                await docker.close()
                client = build.cri_client(config.cri, choice.socket)
            # Before the buffer is opened (which creates it) and before anything is read.
            decided = await decide_at_start(
                self.layout, config, client, self._stop, start_at_from_flag=self._start_at_from_flag
            )
            buffer = None
            if decided is not None:
                buffer = await build.open_buffer(config, self.layout, self._stop)
        except BaseException:
            await client.close()
            raise
        if decided is None or buffer is None:
            await client.close()
            return None
        return choice, client, decided, buffer

    async def _build(
        self, client: RuntimeClient, buffer: DiskBuffer, decision: FirstStart, first: bool
    ) -> _Parts:
        """The accounting, positions, intake, source, checkpointer and output."""
        config = self.config
        ledger = accounting.at_start(self.layout.buffer_dir, buffer.records_held)
        book = build.checkpoint_book(self.storage, decision.start_without_position())
        host_name = await build.host_name_of(config, client)
        intake, router = build.buffer_intake(
            config,
            buffer,
            host_name,
            lambda: self.processing,
            ledger=ledger,
            limiter_states=book.saved_limiter_states(),
        )
        book.keep_limiter_states(intake.limiter_state)
        source = build.source(config, client, intake, book, lambda: self.processing)
        connection, output = build.output(config, self.layout, buffer, router, ledger)
        # Credentials files are read now, so a bad one fails the start (exit 2).
        kibana = KibanaSetup(config.kibana) if config.kibana.url else None
        checkpointer = Checkpointer(
            book,
            buffer,
            intake,
            interval_s=config.storage.checkpoint_interval_s,
            storage_path=self.storage,
            on_storage_failure=self.request_stop,
        )
        return _Parts(
            client,
            buffer,
            decision,
            first,
            host_name,
            book,
            intake,
            source,
            checkpointer,
            output,
            connection,
            kibana,
        )

    async def _serve_telemetry(self, parts: _Parts) -> None:
        """Metrics that read the parts' live state, and the HTTP endpoints."""
        live_status.watch(parts, parts.collectors, per_container=self.config.metrics.per_container)
        if self.config.metrics.listen:
            self.http = HttpServer(
                self.config.metrics.listen,
                lambda: live_status.not_ready_reasons(parts),
                lambda: live_status.report(self.storage, parts),
            )
            await self.http.start()

    # -- main loop -----------------------------------------------------------------------------

    async def main_loop(self, parts: _Parts) -> None:
        """Runs reading, output and checkpoints until a stop is asked, then shuts down."""
        async with asyncio.TaskGroup() as group:
            # Reading starts at once; while the output is not there yet, the buffer holds.
            output = group.create_task(self._run_output(parts), name="output")
            discovery = group.create_task(parts.discovery.run(), name="discovery")
            checkpointer = group.create_task(parts.checkpointer.run(), name="checkpoints")
            kibana = group.create_task(parts.kibana.run(), name="kibana") if parts.kibana else None
            if (history_report := _history_report(parts, self.config)) is not None:
                group.create_task(history_report, name="history")
            await self._stop.wait()
            if kibana is not None:
                kibana.cancel()
            await self.shutdown(parts, discovery, checkpointer, output)

    async def _run_output(self, parts: _Parts) -> None:
        try:
            await parts.output.run()
        except ConfigError as exc:
            # Known only once the cluster answered. Reading stops and positions are saved as
            # on SIGTERM; what is buffered stays for the next start with a fixed config.
            self._config_error = exc
            events.lifecycle.config_does_not_fit_cluster(key=exc.key, problem=exc.problem)
            self.request_stop()

    # -- shutdown ------------------------------------------------------------------------------

    async def shutdown(
        self,
        parts: _Parts,
        discovery: asyncio.Task[None],
        checkpointer: asyncio.Task[None],
        output: asyncio.Task[None],
    ) -> None:
        # 1. Stop reading.
        discovery.cancel()
        await parts.discovery.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await discovery
        parts.checkpointer.stop()
        await checkpointer  # not cancelled: see Checkpointer.stop
        # The last summaries of removed containers (the others' are saved with their
        # positions and continued by the next start).
        await parts.checkpointer.write_summaries(removed_only=True)
        # 2. Everything read is in the buffer: make it durable, then save positions.
        await parts.checkpointer.save()
        # 3. Let the output drain within the timeout.
        await self._drain(parts.buffer, output)
        parts.output.stop()
        await asyncio.wait({output}, timeout=5)
        output.cancel()

    async def _drain(self, buffer: DiskBuffer, output: asyncio.Task[None]) -> None:
        deadline = asyncio.get_running_loop().time() + self.config.shutdown_timeout_s
        while buffer.records_held > 0 and not self._force.is_set() and not output.done():
            if asyncio.get_running_loop().time() >= deadline:
                events.lifecycle.shutdown_timeout(buffered_records=buffer.records_held)
                return
            await asyncio.sleep(0.05)

    async def close(self, parts: _Parts) -> None:
        for collector in parts.collectors:
            telemetry.REGISTRY.unregister(collector)
        if parts.connection is not None:
            await parts.connection.close()
        await parts.client.close()
        try:
            await parts.buffer.close()
        except OSError:
            if parts.checkpointer.storage_failure is None:
                raise
            # The same disk failing again as the buffer closes: reported already.
        if self.http is not None:
            await self.http.stop()

    # -- signals -------------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)

    def reload(self) -> bool:
        """SIGHUP: applies the re-read config's `processing` rules (`shipper/reload.py`);
        True if applied. Discovery and followers read `self.processing` at each container
        (re)start, so they apply from the next one on."""
        processing = reloaded_processing(self.config, self.processing, self._reload_config)
        if processing is None:
            return False
        self.processing = processing
        return True


def _history_report(parts: _Parts, config: Config) -> Coroutine[Any, Any, None] | None:
    """At the first start on a new storage: how much history the containers hold, and what
    start_at skips, measured by the source's own files."""
    client, source, decision = parts.client, parts.source, parts.decision
    if not (parts.first_start and decision.storage_was_new):
        return None
    if isinstance(client, CriRuntimeClient):
        cri = client
        return history.report(
            lambda: cri_history.measure(
                cri,
                Path(config.cri.log_directory),
                source.select,
                annotations=config.cri.annotations,
                node_name=build.node_name(),
            ),
            decision,
            (RuntimeUnavailable, NotCriV1),
        )
    docker = client
    return history.report(
        lambda: docker_history.measure(docker, source.containers_path, source.select),
        decision,
        (DockerError,),
    )
