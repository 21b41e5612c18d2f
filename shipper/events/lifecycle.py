"""Events of the shipper as a whole: start and stop, the first start's decision, config
reloads, and which hot path runs."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shipper import telemetry
from shipper.lines.timestamps import format_timestamp
from shipper.sizes import size_text


def effective_config(*, masked_config: Mapping[str, Any]) -> None:
    """The configuration in force (`shipper.config.masked`: secrets replaced), at
    `log.level: debug` only."""
    telemetry.debug("Effective configuration (secrets masked).", config=masked_config)


def native_hot_path_unfit(*, problem: str) -> None:
    """The built C module does not fit this code: the pure-Python path runs instead. Said
    at import (before logging is set up), on the logger of `shipper.native`, every time."""
    telemetry.every_time(
        "shipper.native",
        logging.WARNING,
        "native_hot_path_unfit",
        "The C hot path (shipper/_native) does not fit this code, so the pure-Python path "
        "runs instead (the same records, only slower): %s.",
        problem,
    )


def started(
    *,
    source: str,
    source_chosen_because: str,
    source_fields: Mapping[str, str],
    output: str,
    storage_path: Path,
    host_name: str,
    native_hot_path: bool,
) -> None:
    """Everything is built and serving: what reads, from where, to where.
    `native_hot_path` False: built without a C compiler, or turned off."""
    telemetry.info(
        "Shipper started.",
        source=source,
        source_chosen_because=source_chosen_because,
        **source_fields,
        output=output,
        storage_path=str(storage_path),
        host_name=host_name,
        native_hot_path=native_hot_path,
    )


def stopped(*, buffered_records: int) -> None:
    """Stopped cleanly; what is still buffered ships at the next start."""
    telemetry.info("Shipper stopped.", buffered_records=buffered_records)


def shutdown_timeout(*, buffered_records: int) -> None:
    """The output did not drain the buffer within `shutdown_timeout_s`."""
    telemetry.info(
        "Shutdown timeout reached; the rest stays in the disk buffer for next start.",
        buffered_records=buffered_records,
    )


def own_container_uncertain(*, container_id: str) -> None:
    """The shipper's own container was recognised only by its network files."""
    telemetry.warning(
        "own_container_uncertain",
        "The shipper's own container id was found only in its network files; if it "
        "shares another container's network, that container is taken for it (label "
        "the shipper's container shipper.enable=false to be sure).",
        container_id=container_id[:12],
    )


def config_does_not_fit_cluster(*, key: str, problem: str) -> None:
    """A setting the cluster cannot honour, known once it answered: the shipper stops."""
    telemetry.error(
        "config_error",
        "The configuration does not fit the Elasticsearch cluster; stopping.",
        key=key,
        problem=problem,
    )


def _where(start_ns: int | None) -> str:
    return "from their first line" if start_ns is None else f"at {format_timestamp(start_ns)}"


def first_start(*, start_ns: int | None, start_at: str, chosen_by: str) -> None:
    """The first start on this storage: where containers without a position begin."""
    telemetry.info(
        f"First start on this storage: containers without a position are read "
        f"{_where(start_ns)} (start_at {start_at}, set by {chosen_by}); containers "
        "started later are read from their first line. `shipper backfill --since` "
        "fetches older lines on purpose.",
        start_at=start_at,
        chosen_by=chosen_by,
        start_time=None if start_ns is None else format_timestamp(start_ns),
    )


def start_at_stands(
    *,
    start_ns: int | None,
    start_at_now: str,
    start_at_then: str | None,
    decided_at_ns: int,
) -> None:
    """A later start: `start_at` is not applied again, the first start's decision stands.
    `start_at_then` None: the storage predates the decision's record."""
    telemetry.info(
        "start_at applies only at the first start on a storage; the decision made "
        f"then stands: containers without a position are read {_where(start_ns)}.",
        start_at_now=start_at_now,
        start_at_then=start_at_then,
        decided_at=format_timestamp(decided_at_ns) if decided_at_ns else None,
    )


def history_not_measured(*, error: BaseException) -> None:
    """At the first start, Docker could not tell the containers' log sizes."""
    telemetry.info("The containers' log sizes could not be measured.", error=str(error))


def history_measured(
    *,
    containers: int,
    log_bytes: int,
    containers_measured: int,
    start_ns: int | None,
    start_at: str,
    chosen_by: str,
) -> None:
    """At the first start: how much history the containers hold, and how much of it ships."""
    if start_ns is None:
        fate = "all of it is shipped (start_at beginning)"
    elif start_at == "now":
        fate = "none of it is shipped (start_at now)"
    else:
        fate = f"only its last {start_at} is shipped"
    telemetry.info(
        f"History at the first start on this storage: {containers} container(s) "
        f"hold {size_text(log_bytes)} of logs (measured for {containers_measured} of them); "
        f"{fate}, as {chosen_by} chose.",
        containers=containers,
        log_bytes=log_bytes,
        containers_measured=containers_measured,
        start_at=start_at,
        chosen_by=chosen_by,
    )


def reload_ignored() -> None:
    """SIGHUP, but the shipper runs without a config file to read again."""
    telemetry.info("SIGHUP ignored: there is no config to reload.")


def config_reload_rejected(*, key: str, problem: str) -> None:
    """The config read again on SIGHUP does not validate: the rules in force stay."""
    telemetry.config_reloads.labels("rejected").inc()
    telemetry.error(
        "config_reload_rejected",
        "The reloaded config is not valid; the rules in force stay.",
        key=key,
        problem=problem,
    )


def config_reload_needs_restart(*, keys: Sequence[str]) -> None:
    """Keys outside `processing` changed on SIGHUP: they apply only after a restart."""
    telemetry.warning(
        "config_reload_needs_restart",
        "These keys changed but only take effect after a restart.",
        keys=list(keys),
    )


def config_reload_unchanged() -> None:
    """SIGHUP read the config again; its processing rules are the same."""
    telemetry.config_reloads.labels("unchanged").inc()
    telemetry.info("Config reloaded; the processing rules are unchanged.")


def config_reloaded(*, changed: Sequence[str]) -> None:
    """SIGHUP applied new processing rules (to each container from its next stream)."""
    telemetry.config_reloads.labels("applied").inc()
    telemetry.info(
        "Config reloaded: the new processing rules apply to each container from its "
        "next start or reconnection.",
        changed=list(changed),
    )
