"""Events of what the shipper keeps on disk: the disk buffer, checkpoints, the first-start
record, and the disk filling up or failing under them."""

from __future__ import annotations

import logging
from pathlib import Path

from shipper import telemetry

# The buffer's own lines keep the logger of the module they describe (`log.logger` in the
# JSON lines), as they had before they were defined here.
_RECOVERY_LOG = "shipper.buffer.recovery"
_SEGMENT_LOG = "shipper.buffer.segment_file"
_DISK_LOG = "shipper.buffer.disk"


def disk_full(*, container_id: str, error: BaseException) -> None:
    """The disk buffer cannot take a container's records: reading pauses until there is
    space (the runtime keeps the logs meanwhile)."""
    telemetry.disk_full.labels("buffer").inc()
    telemetry.error(
        "disk_full",
        "The disk buffer is full (no space left on device); reading is paused.",
        container_id=container_id[:12],
        error=str(error),
    )


def disk_full_opening_buffer(*, storage_path: Path, error: BaseException, delay_s: float) -> None:
    """No space to open (recover) the disk buffer at start; waiting before reading."""
    telemetry.disk_full.labels("buffer").inc()
    telemetry.error(
        "disk_full_at_start",
        "No space left to open the disk buffer; waiting for space before reading.",
        storage_path=str(storage_path),
        error=str(error),
        delay_s=round(delay_s, 2),
    )


def disk_full_at_first_start(*, storage_path: Path, delay_s: float) -> None:
    """No space to record the first start on this storage; waiting before reading."""
    telemetry.disk_full.labels("first_start").inc()
    telemetry.error(
        "disk_full_at_start",
        "No space left to record the first start on this storage; waiting for "
        "space before reading.",
        storage_path=str(storage_path),
        delay_s=round(delay_s, 2),
    )


def disk_full_saving_checkpoints(*, error: BaseException) -> None:
    """No space to save checkpoints: the previous ones stay valid, reading pauses.

    Its own kind: logs are rate-limited per kind, and this line must not hide the
    intake's "reading is paused" one (kind disk_full), nor the reverse."""
    telemetry.disk_full.labels("checkpoints").inc()
    telemetry.error(
        "checkpoint_disk_full",
        "No space left to save checkpoints; the previous ones stay valid and reading "
        "is paused until they can be saved again.",
        error=str(error),
    )


def checkpoints_saved_again() -> None:
    """Checkpoints could be saved again after a full disk; reading resumes."""
    telemetry.info("Checkpoints saved again; reading resumes.")


def storage_failed(*, error: BaseException, path: Path) -> None:
    """Making the buffer or checkpoints durable failed (fsync, I/O): the shipper stops
    without saving checkpoints again."""
    telemetry.error(
        "storage_failed",
        "Making the disk buffer or checkpoints durable failed; stopping without "
        "saving checkpoints again. Check the disk, then start the shipper again: it "
        "resumes from the last saved checkpoints and loses nothing.",
        error=str(error),
        path=str(path),
    )


def checkpoint_unreadable(*, error: BaseException) -> None:
    """The checkpoint file cannot be read: containers are read from their start."""
    telemetry.error(
        "checkpoint_unreadable",
        "The checkpoint file is unreadable; containers are read from their start "
        "(lines already stored are recognised by their ids and not stored twice).",
        error=str(error),
    )


def first_start_unreadable(*, error: BaseException) -> None:
    """The first-start record cannot be read: containers without a position are read from
    their first line."""
    telemetry.error(
        "first_start_unreadable",
        "The record of the first start on this storage is unreadable; containers "
        "without a position are read from their first line (lines already stored are "
        "recognised by their ids and not stored twice).",
        error=str(error),
    )


def buffer_corrupt(*, path: Path, reason: str) -> None:
    """The running shipper's disk buffer moved a corrupt segment aside (the buffer's own
    `buffer_file_set_aside` line names both files); the rest flows on."""
    telemetry.buffer_corrupt_segments.inc()
    telemetry.error(
        "buffer_corrupt",
        "A corrupt disk buffer segment was moved aside; the rest flows on.",
        path=str(path),
        reason=reason,
    )


def recovered_count_differs(*, counted: int, buffer_records: int) -> None:
    """The buffer's records counted per container do not add up to its own count."""
    telemetry.warning(
        "recovered_count_differs",
        "The disk buffer's records counted per container do not add up to its "
        "own count; the accounting will show the difference.",
        counted=counted,
        buffer_records=buffer_records,
    )


def buffer_file_set_aside(*, path: Path, target: Path, reason: str) -> None:
    """A corrupt buffer file (segment or acks) was moved or linked into corrupt/."""
    telemetry.every_time(
        _RECOVERY_LOG,
        logging.ERROR,
        "buffer_file_set_aside",
        "Set aside the corrupt disk buffer file %s as %s: %s.",
        path,
        target,
        reason,
    )


def buffer_recovered_with_damage(
    *, records: int, segments: int, torn_bytes: int, corrupt_files: int
) -> None:
    """Recovery at start found torn writes or corrupt files (after a crash, say): what it
    kept and what it cut."""
    telemetry.every_time(
        _RECOVERY_LOG,
        logging.WARNING,
        "buffer_recovered_with_damage",
        "Recovered the disk buffer: %d records held in %d segments, %d torn bytes "
        "truncated, %d segments set aside as corrupt.",
        records,
        segments,
        torn_bytes,
        corrupt_files,
    )


def buffer_segment_torn_at_creation(*, path: Path) -> None:
    """The newest segment never got its header (a crash as it was created): removed."""
    telemetry.every_time(
        _RECOVERY_LOG,
        logging.WARNING,
        "buffer_torn_segment",
        "Removed the disk buffer segment %s torn at creation.",
        path,
    )


def buffer_torn_tail_truncated(*, path: Path, torn_bytes: int, problem: str) -> None:
    """The last segment ends in a write cut by kill -9 or power loss: the torn tail is cut
    (its lines were never checkpointed, so they are read again)."""
    telemetry.every_time(
        _RECOVERY_LOG,
        logging.WARNING,
        "buffer_torn_tail",
        "Truncated a torn tail of %d bytes from the disk buffer segment %s (%s).",
        torn_bytes,
        path,
        problem,
    )


def buffer_truncate_failed(*, path: Path, error: BaseException) -> None:
    """A failed append could not be cut off the segment, which is sealed instead."""
    telemetry.every_time(
        _SEGMENT_LOG,
        logging.ERROR,
        "buffer_truncate_failed",
        "Could not truncate %s after a failed write.",
        path,
        exc=error,
    )


def buffer_segment_not_deleted(*, path: Path, error: BaseException) -> None:
    """An acknowledged segment could not be deleted (delivered again after a restart:
    duplicates, not loss)."""
    telemetry.every_time(
        _SEGMENT_LOG,
        logging.ERROR,
        "buffer_delete_failed",
        "Could not delete the acknowledged segment %s.",
        path,
        exc=error,
    )


def buffer_acks_not_saved(*, error: BaseException) -> None:
    """The buffer's acknowledgements could not be saved now (only costs duplicates after a
    crash); the next sync or read tries again."""
    telemetry.every_time(
        _DISK_LOG,
        logging.WARNING,
        "buffer_acks_not_saved",
        "Could not persist disk buffer acks, will retry: %s",
        error,
    )
