"""Builders of the parts, shared by the agent (`app.py`) and `shipper backfill`, so both
build the same runtime client, intake, output and buffer."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shipper import events
from shipper.accounting import Ledger
from shipper.backoff import Backoff
from shipper.buffer import DiskBuffer
from shipper.config import Config, CriConfig, DockerConfig, ProcessingConfig
from shipper.cri.runtime import CriRuntimeClient
from shipper.docker.api import DockerClient, DockerError
from shipper.docker.own_container import detect_own_container, own_pod_uid
from shipper.errors import DiskFullError
from shipper.layout import StorageLayout
from shipper.model import ContainerMeta
from shipper.sinks.console.sink import ConsoleSink
from shipper.sinks.elasticsearch.client import ElasticsearchConnection
from shipper.sinks.elasticsearch.dead_letter import DeadLetters
from shipper.sinks.elasticsearch.routing import Router
from shipper.sinks.elasticsearch.sink import ElasticsearchSink
from shipper.sources.checkpoint import (
    Checkpoint,
    CheckpointBook,
    CheckpointFileError,
    CheckpointStore,
    LimiterState,
)
from shipper.sources.cri.discovery import CriDiscovery
from shipper.sources.cri.follower import CriFollowerSettings
from shipper.sources.docker.discovery import Discovery
from shipper.sources.docker.follower import FollowerSettings
from shipper.sources.intake import BufferIntake
from shipper.sources.selection import should_ship

RuntimeClient = DockerClient | CriRuntimeClient
Output = ElasticsearchSink | ConsoleSink


def docker_client(config: DockerConfig) -> DockerClient:
    return DockerClient(
        config.host,
        api_version=config.api_version,
        pinned_by=config.api_version_source,
        tls_verify=config.tls_verify,
        cert_path=config.cert_path,
    )


def cri_client(config: CriConfig, socket: str) -> CriRuntimeClient:
    return CriRuntimeClient(socket, timeout_s=config.timeout_s)


def buffer_intake(
    config: Config,
    buffer: DiskBuffer,
    host_name: str,
    processing: Callable[[], ProcessingConfig],
    *,
    ledger: Ledger | None = None,
    rate_limits: bool = True,
    limiter_states: dict[str, LimiterState] | None = None,
) -> tuple[BufferIntake, Router]:
    """The intake, and the router that decides each container's data stream for it."""
    es = config.elasticsearch
    router = Router(es.data_stream, es.routing, es.pipeline)
    intake = BufferIntake(
        buffer,
        router.route,
        host_name,
        processing,
        ledger=ledger,
        rate_limits=rate_limits,
        limiter_states=limiter_states,
    )
    return intake, router


def elasticsearch_output(
    config: Config,
    layout: StorageLayout,
    buffer: DiskBuffer,
    router: Router,
    ledger: Ledger | None = None,
) -> tuple[ElasticsearchConnection, ElasticsearchSink]:
    connection = ElasticsearchConnection(config.elasticsearch)
    dead_letters = DeadLetters(
        layout.dead_letter_file, connection, config.elasticsearch.dead_letter.data_stream
    )
    sink = ElasticsearchSink(
        connection,
        buffer,
        config.elasticsearch,
        dead_letters,
        static_targets=router.static_targets(),
        ledger=ledger,
    )
    return connection, sink


def output(
    config: Config, layout: StorageLayout, buffer: DiskBuffer, router: Router, ledger: Ledger
) -> tuple[ElasticsearchConnection | None, Output]:
    """The configured output (`output`), and its connection if it has one."""
    if config.output == "elasticsearch":
        return elasticsearch_output(config, layout, buffer, router, ledger)
    return None, ConsoleSink(buffer, ledger=ledger)


async def host_name_of(config: Config, client: RuntimeClient) -> str:
    """`host_name` from the config, else the Docker host's name (Kubernetes: the node's,
    NODE_NAME), else this machine's."""
    if config.host_name:
        return config.host_name
    if isinstance(client, CriRuntimeClient):
        return node_name() or os.uname().nodename
    try:
        name = str((await client.info()).get("Name") or "")
    except DockerError:
        name = ""
    return name or os.uname().nodename


def node_name() -> str:
    """The Kubernetes node this runs on, as the chart passes it (downward API)."""
    return os.environ.get("NODE_NAME", "")


async def open_buffer(
    config: Config, layout: StorageLayout, stop: asyncio.Event
) -> DiskBuffer | None:
    """The agent's disk buffer, opened (and recovered); on a full disk waits for space,
    saying so. None if `stop` was set meanwhile."""
    backoff = Backoff(base_s=1.0, cap_s=30.0)
    while True:
        try:
            return DiskBuffer.open(
                layout.buffer_dir,
                max_bytes=config.storage.max_bytes,
                segment_max_bytes=config.storage.segment_max_bytes,
                fsync=config.storage.fsync,
                on_corrupt=lambda path, reason: events.storage.buffer_corrupt(
                    path=path, reason=reason
                ),
                # The output reads whole blocks: keep each within half a bulk request.
                block_max_entries=max(1, config.elasticsearch.batch_max_docs // 2),
                block_max_bytes=max(1, config.elasticsearch.batch_max_bytes // 2),
            )
        except DiskFullError as exc:
            delay = backoff.next_delay_s()
            events.storage.disk_full_opening_buffer(
                storage_path=layout.root, error=exc, delay_s=delay
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            if stop.is_set():
                return None


def checkpoint_book(storage: Path, unknown_start: Checkpoint | None) -> CheckpointBook:
    """The positions saved by the last run (none if the file is unreadable, which is
    reported: those containers are read from `unknown_start`)."""
    store = CheckpointStore(storage)
    try:
        saved = store.load()
    except CheckpointFileError as exc:
        events.storage.checkpoint_unreadable(error=exc)
        saved = {}
    return CheckpointBook(store, saved, unknown_start=unknown_start)


@dataclass(frozen=True, slots=True)
class Source:
    """The source's discovery (a follower per container), and how it sees containers."""

    discovery: Discovery | CriDiscovery
    select: Callable[[ContainerMeta], bool]  # whether a container is shipped
    # Where this process sees Docker's containers directory; None: the engine says.
    containers_path: str | None


def source(
    config: Config,
    client: RuntimeClient,
    intake: BufferIntake,
    book: CheckpointBook,
    processing: Callable[[], ProcessingConfig],
) -> Source:
    """The chosen source, reading with the `processing` rules in force at each container
    (re)start (a SIGHUP may replace them)."""
    own = detect_own_container()
    own_id = own.id if own is not None else None
    pod_uid = own_pod_uid()
    containers_path = config.docker.containers_path_here(in_container=own is not None)
    if own is not None and own.source == "network_files":
        events.lifecycle.own_container_uncertain(container_id=own.id)

    def select(meta: ContainerMeta) -> bool:
        return should_ship(meta, processing().selection, own_id, pod_uid)

    discovery: Discovery | CriDiscovery
    if isinstance(client, CriRuntimeClient):
        discovery = CriDiscovery(
            client,
            Path(config.cri.log_directory),
            intake,
            book,
            CriFollowerSettings(
                max_line_bytes=config.processing.max_line_bytes, processing=processing
            ),
            annotations=config.cri.annotations,
            node_name=node_name(),
            select=select,
        )
    else:
        discovery = Discovery(
            client,
            intake,
            book,
            FollowerSettings(
                max_line_bytes=config.processing.max_line_bytes,
                max_backoff_s=config.docker.reconnect_max_backoff_s,
                read_mode=config.docker.read_mode,
                containers_path=containers_path,
                processing=processing,
            ),
            select=select,
        )
    return Source(discovery, select, containers_path)
