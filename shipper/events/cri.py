"""Events of the CRI source: the runtime's CRI API and each pod container's log files."""

from __future__ import annotations

from pathlib import Path

from shipper import telemetry


def connected(
    *, runtime: str, runtime_version: str, cri_api: str, socket: str, log_directory: Path
) -> None:
    """The container runtime answered its CRI API (said once, at the first answer)."""
    telemetry.info(
        "Connected to the container runtime's CRI API.",
        runtime=runtime,
        runtime_version=runtime_version,
        cri_api=cri_api,
        socket=socket,
        log_directory=str(log_directory),
    )


def lost(*, socket: str, error: BaseException) -> None:
    """The runtime's CRI API stopped answering; followers go on reading their files."""
    telemetry.warning(
        "cri_unavailable",
        "Lost the container runtime's CRI API; listing again when it "
        "answers (followers keep reading their files).",
        socket=socket,
        error=str(error),
    )


def checkpoint_state_unreadable(*, container_id: str, error: BaseException) -> None:
    """The metadata saved with a container's position cannot be read: it is not resumed."""
    telemetry.warning(
        "checkpoint_state_unreadable",
        "The metadata kept with a container's position is unreadable; its remaining "
        "lines are not read.",
        container_id=container_id[:12],
        error=repr(error),
    )


def log_files_unreadable(
    *, container_id: str, container_name: str, path: Path, error: BaseException, delay_s: float
) -> None:
    """Reading a container's log files failed (permissions, I/O); read again from its
    checkpoint."""
    telemetry.warning(
        "log_files_unreadable",
        "Reading a container's CRI log files failed; retrying from its checkpoint.",
        container_id=container_id[:12],
        container_name=container_name,
        path=str(path),
        error=str(error),
        delay_s=round(delay_s, 2),
    )


def log_file_lost(*, container_id: str, container_name: str, file: str) -> None:
    """Kubelet's rotation deleted a log file before it was read to its end: its unread
    lines are lost. Counted each time; the log is rate-limited per container."""
    telemetry.log_files_lost.inc()
    telemetry.warning_per(
        "log_file_lost",
        container_id,
        "A container's log file was deleted by its rotation before it was read to its end: "
        "the lines in it that were not read are lost (the shipper fell behind, or was "
        "stopped, for longer than kubelet keeps rotated logs).",
        container_id=container_id[:12],
        container_name=container_name,
        file=file,
    )


def invalid_log_lines(*, container_id: str, path: Path, lines: int) -> None:
    """Lines of a container's log file are not in the CRI format: they are skipped."""
    telemetry.warning(
        "invalid_log_lines",
        "Lines of a container's CRI log file are not in the CRI log format; they are skipped.",
        container_id=container_id[:12],
        path=str(path),
        lines=lines,
    )
