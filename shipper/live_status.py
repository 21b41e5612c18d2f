"""What the running agent tells of itself, read from its live parts: the gauges and
per-container metrics (`/metrics`), why it is not ready (`/readyz`) and its status report
(`/status`, which `shipper status` reads; its shape and sections: `shipper.status`).

Each is a function of the parts `app.py` built (`AgentParts`), called when asked: nothing
here runs on its own or changes what it reads.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from prometheus_client.registry import Collector

from shipper import __version__, status, telemetry
from shipper.buffer import DiskBuffer
from shipper.lines.timestamps import format_timestamp
from shipper.model import ContainerMeta
from shipper.pipeline.encoder import container_key
from shipper.sources.checkpoint import Checkpoint, CheckpointBook
from shipper.sources.cri.discovery import CriDiscovery
from shipper.sources.docker.discovery import Discovery
from shipper.sources.first_start import FirstStart
from shipper.sources.intake import BufferIntake


class _Output(Protocol):
    @property
    def last_error(self) -> str | None: ...


class AgentParts(Protocol):
    """What is read of the parts the agent built (`app._Parts`)."""

    @property
    def buffer(self) -> DiskBuffer: ...

    @property
    def book(self) -> CheckpointBook: ...

    @property
    def intake(self) -> BufferIntake: ...

    @property
    def discovery(self) -> Discovery | CriDiscovery: ...

    @property
    def output(self) -> _Output: ...

    @property
    def decision(self) -> FirstStart: ...


class _Followed(Protocol):
    """What the status and the per-container metrics read of any source's follower."""

    @property
    def meta(self) -> ContainerMeta | None: ...

    @property
    def last_read_monotonic(self) -> float: ...

    def checkpoint(self) -> Checkpoint: ...


def watch(parts: AgentParts, collectors: list[Collector], *, per_container: bool) -> None:
    """Points the gauges at the parts' live state; the collectors it registers are added to
    `collectors`, for the caller to unregister."""
    buffer = parts.buffer
    telemetry.build_info.labels(__version__).set(1)
    telemetry.buffer_bytes.set_function(lambda: buffer.bytes_held)
    telemetry.buffer_records.set_function(lambda: buffer.records_held)
    telemetry.oldest_unshipped_age.set_function(lambda: buffer.oldest_unacked_age_s)
    collectors.append(telemetry.enable_buffer_reads(lambda: buffer.blocks_read))
    if per_container:
        discovery, intake = parts.discovery, parts.intake
        collectors.append(telemetry.enable_per_container(lambda: _container_samples(discovery)))
        collectors.append(
            telemetry.enable_container_accounting(lambda: _accounting_samples(intake))
        )


def not_ready_reasons(parts: AgentParts) -> list[str]:
    """For /readyz: why the shipper cannot do its job right now (empty: ready)."""
    problems = []
    docker_problem = parts.discovery.not_ready_reason
    if docker_problem is not None:
        problems.append(docker_problem)
    if parts.output.last_error is not None:
        problems.append(f"output not accepting writes: {parts.output.last_error}")
    return problems


def report(storage: Path, parts: AgentParts) -> dict[str, Any]:
    """For /status and `shipper status` (shape: `shipper.status`)."""
    buffer, followers = parts.buffer, _followers(parts.discovery)
    checkpoints = parts.book.snapshot()
    # Names of containers records were handed over for, those kept with positions (a
    # CRI container read to its end), then the live ones.
    names = parts.intake.container_names()
    names.update(status.saved_names(checkpoints))
    names.update({cid: f.meta.display_name for cid, f in followers.items() if f.meta})
    ledger = parts.intake.ledger
    rows = status.container_rows(checkpoints, names, followers.keys())
    return {
        "source": "agent",
        "storage_path": str(storage),
        "generated_at": format_timestamp(time.time_ns()),
        "buffer": {
            "records": buffer.records_held,
            "bytes": buffer.bytes_held,
            "oldest_record_age_s": round(buffer.oldest_unacked_age_s, 3),
        },
        "first_start": status.first_start_section(parts.decision),
        "accounting": status.accounting_section(ledger, buffer.records_held),
        "containers": status.with_accounting(rows, ledger, parts.intake.rate_limits()),
        "dead_letters": {
            **status.dead_letter_counts(storage),
            "since_start": int(telemetry.counter_total(telemetry.dead_lettered)),
        },
        # Kept by Elasticsearch in a data stream's failure store, not as log records.
        "failure_store": {
            "since_start": int(
                telemetry.counter_total_where(telemetry.bulk_items, failure_store="used")
            ),
        },
    }


def _followers(discovery: Discovery | CriDiscovery) -> Mapping[str, _Followed]:
    return discovery.followers


def _container_samples(discovery: Discovery | CriDiscovery) -> list[telemetry.ContainerSample]:
    now_ns, now = time.time_ns(), time.monotonic()
    samples = []
    for follower in list(_followers(discovery).values()):
        if follower.meta is None:
            continue
        since = follower.checkpoint().since_ns
        last = follower.last_read_monotonic
        samples.append(
            telemetry.ContainerSample(
                follower.meta.display_name,
                max(0.0, (now_ns - since) / 1e9) if since else 0.0,
                now - last if last else None,
            )
        )
    return samples


def _accounting_samples(intake: BufferIntake) -> list[tuple[str, dict[str, int]]]:
    names = {container_key(cid): name for cid, name in intake.container_names().items()}
    return [(names.get(key, key), counts.as_dict()) for key, counts in intake.ledger.rows().items()]
