"""The shipper's status report: buffer, per-container checkpoints and lag, dead letters.

One shape for both sources `shipper status` reads: the running agent (`GET /status`,
built from its live state by `app.py`) and the files under `storage.path` (read-only, no
agent needed: `from_storage`). As JSON::

    {"source": "agent" | "storage", "storage_path": "...", "generated_at": "<RFC 3339>",
     "buffer": {"records": 0, "bytes": 0, "oldest_record_age_s": null, ...},
     "containers": [{"id": "...", "name": "web-1" | null, "following": true,
                     "since_ns": 1700000000123456789, "skip": 3,
                     "checkpoint_time": "<RFC 3339>" | null, "lag_s": 1.5 | null}],
     "dead_letters": {"path": "...", "total": 0, "by_error_type": {"mapper_parsing_exception": 2},
                      "since_start": 0},                # since_start: the agent's own count
     "failure_store": {"since_start": 0},             # the agent only: records Elasticsearch
                                                      # kept in a data stream's failure store
     "ready": true, "not_ready_reasons": []}          # the last two from the agent only

`lag_s` is now minus the checkpoint's time: how far behind "now" a restart would resume
reading that container. It also grows while a container writes nothing.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from shipper.buffer.inspect import inspect_buffer
from shipper.layout import StorageLayout
from shipper.lines.timestamps import format_timestamp
from shipper.sources.checkpoint import Checkpoint, CheckpointFileError, CheckpointStore


def container_rows(
    checkpoints: Mapping[str, Checkpoint],
    names: Mapping[str, str],
    following: Iterable[str] = (),
    now_ns: int | None = None,
) -> list[dict[str, Any]]:
    now_ns = time.time_ns() if now_ns is None else now_ns
    live = set(following)
    rows = []
    for container_id in sorted(set(checkpoints) | live):
        checkpoint = checkpoints.get(container_id, Checkpoint(0, 0))
        since = checkpoint.since_ns
        rows.append(
            {
                "id": container_id,
                "name": names.get(container_id),
                "following": container_id in live,
                "since_ns": since,
                "skip": checkpoint.skip,
                "checkpoint_time": format_timestamp(since) if since else None,
                "lag_s": round(max(0, now_ns - since) / 1e9, 3) if since else None,
            }
        )
    return rows


def saved_names(checkpoints: Mapping[str, Checkpoint]) -> dict[str, str]:
    """The names a source kept with its positions (the CRI source's `ns/pod/container`)."""
    names = {}
    for container_id, checkpoint in checkpoints.items():
        name = (checkpoint.source_state or {}).get("name")
        if isinstance(name, str) and name:
            names[container_id] = name
    return names


def dead_letter_counts(storage: Path) -> dict[str, Any]:
    """Counts the dead-letter file's records by error type (read-only, streaming)."""
    path = StorageLayout(storage).dead_letter_file
    by_type: Counter[str] = Counter()
    try:
        with open(path, "rb") as file:
            for line in file:
                if not line.strip():
                    continue
                try:
                    error_type = str((orjson.loads(line).get("error") or {}).get("type") or "")
                except (orjson.JSONDecodeError, AttributeError):
                    error_type = "unreadable_line"
                by_type[error_type or "unknown"] += 1
    except FileNotFoundError:
        pass
    return {"path": str(path), "total": sum(by_type.values()), "by_error_type": dict(by_type)}


def from_storage(storage: Path) -> dict[str, Any]:
    """The report from the files alone; changes nothing, takes no lock."""
    buffer = inspect_buffer(StorageLayout(storage).buffer_dir)
    problems = list(buffer.problems)
    try:
        checkpoints = CheckpointStore(storage).load()
    except CheckpointFileError as exc:
        checkpoints = {}
        problems.append(str(exc))
    return {
        "source": "storage",
        "storage_path": str(storage),
        "generated_at": format_timestamp(time.time_ns()),
        "buffer": {
            "records": buffer.records,
            "bytes": buffer.bytes,
            "segments": buffer.segments,
            "disk_bytes": buffer.disk_bytes,
            "oldest_record_age_s": _round(buffer.oldest_record_age_s),
            "corrupt_files": buffer.corrupt_files,
        },
        "containers": container_rows(checkpoints, saved_names(checkpoints)),
        "dead_letters": dead_letter_counts(storage),
        "problems": problems,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
