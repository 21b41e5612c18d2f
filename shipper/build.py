"""Builders of the parts, shared by the agent (`app.py`) and `shipper backfill`, so both
build the same runtime client, intake, output and buffer."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from shipper import events
from shipper.accounting import Ledger
from shipper.backoff import Backoff
from shipper.buffer import DiskBuffer
from shipper.config import Config, CriConfig, DockerConfig, ProcessingConfig
from shipper.cri.runtime import CriRuntimeClient
from shipper.docker.api import DockerClient, DockerError
from shipper.errors import DiskFullError
from shipper.layout import StorageLayout
from shipper.sinks.elasticsearch.client import ElasticsearchConnection
from shipper.sinks.elasticsearch.dead_letter import DeadLetters
from shipper.sinks.elasticsearch.routing import Router
from shipper.sinks.elasticsearch.sink import ElasticsearchSink
from shipper.sources.checkpoint import LimiterState
from shipper.sources.intake import BufferIntake

RuntimeClient = DockerClient | CriRuntimeClient


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
