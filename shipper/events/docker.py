"""Events of the Docker source: the daemon (or Podman's API) and each container's reading."""

from __future__ import annotations

from typing import Literal

from shipper import telemetry

# The kinds a failed read of a container's logs is counted under: a refused version or an
# error answer is not a daemon that went away.
ReadFailure = Literal[
    "docker_api_version_refused", "docker_request_failed", "docker_unavailable", "log_stream_broken"
]


def engine_connected(
    *, engine_version: str, engine: str, api_version: str, containers_path: str | None, runtime: str
) -> None:
    """Connected to a Docker Engine (or Podman, `runtime`): said at the first connection and
    whenever it changed (a restart is often an upgrade)."""
    telemetry.docker_engine.clear()
    telemetry.docker_engine.labels(engine_version, api_version).set(1)
    telemetry.info(
        "Connected to the Docker Engine.",
        engine_version=engine_version,
        engine=engine,
        runtime=runtime,
        api_version=api_version,
        containers_path=containers_path,
    )


def reconnected() -> None:
    """The daemon answers again after it was lost."""
    telemetry.docker_reconnects.inc()
    telemetry.info("Reconnected to the Docker daemon.")


def api_version_refused(*, error: BaseException, delay_s: float) -> None:
    """The daemon answers, but refuses every API version we speak."""
    telemetry.error(
        "docker_api_version_refused",
        "The Docker Engine answers but refuses the API version; retrying "
        "(shipping starts by itself once the engine accepts one).",
        error=str(error),
        delay_s=round(delay_s, 2),
    )


def request_failed(*, error: BaseException, status: int, delay_s: float) -> None:
    """The daemon answered a listing or the event stream with an error status."""
    telemetry.warning(
        "docker_request_failed",
        "The Docker daemon answered with an error; retrying.",
        error=str(error),
        status=status,
        delay_s=round(delay_s, 2),
    )


def lost(*, error: BaseException, delay_s: float) -> None:
    """The daemon does not answer (socket gone, connection cut, event stream ended)."""
    telemetry.warning(
        "docker_unavailable",
        "Lost the Docker daemon; reconnecting.",
        error=str(error),
        delay_s=round(delay_s, 2),
    )


def read_failed(
    *, kind: ReadFailure, container_id: str, error: BaseException, delay_s: float
) -> None:
    """Reading one container's logs failed; it is read again from its checkpoint."""
    telemetry.warning(
        kind,
        "Reading a container's logs failed; retrying from its checkpoint.",
        container_id=container_id[:12],
        error=str(error),
        delay_s=round(delay_s, 2),
    )


def logs_not_readable(*, container_id: str, log_driver: str, error: BaseException) -> None:
    """A container's log driver keeps nothing the logs API can read: it is skipped."""
    telemetry.warning(
        "logs_not_readable",
        "A container's log driver keeps no logs the Docker API can read; it is "
        "skipped (use the json-file or local driver, or enable dual logging).",
        container_id=container_id[:12],
        log_driver=log_driver,
        error=str(error),
    )


def log_files_not_readable(*, container_id: str, log_driver: str, reason: str) -> None:
    """`docker.read_mode: files`, but a container's json-file logs are not visible here."""
    telemetry.warning(
        "log_files_not_readable",
        "A container's json-file logs are not visible here (other driver, "
        "compressed rotation, or docker.containers_path not mounted); its logs "
        "are read through the Docker API.",
        container_id=container_id[:12],
        log_driver=log_driver,
        reason=reason,
    )


def read_mode_chosen(
    *, container_id: str, container_name: str, read_mode: Literal["files", "api"], reason: str
) -> None:
    """How a container's logs are read (its json-file log or the API), when first chosen
    and whenever it changes."""
    telemetry.info(
        "Reading a container's logs from its json-file log."
        if read_mode == "files"
        else "Reading a container's logs through the Docker API.",
        container_id=container_id[:12],
        container_name=container_name,
        read_mode=read_mode,
        reason=reason,
    )


def container_deselected(*, container_id: str, container_name: str) -> None:
    """A container started again, no longer selected: its new run is not shipped."""
    telemetry.info(
        "A container started again but is no longer selected (renamed or relabelled); "
        "its new run is not shipped.",
        container_id=container_id[:12],
        container_name=container_name,
    )
