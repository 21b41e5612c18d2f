"""The shipper's status report: buffer, per-container checkpoints, lag and accounting.

One shape for both sources `shipper status` reads: the running agent (`GET /status`,
built from its live state by `live_status.py`) and the files under `storage.path`
(read-only, no agent needed: `from_storage`). As JSON::

    {"source": "agent" | "storage", "storage_path": "...", "generated_at": "<RFC 3339>",
     "buffer": {"records": 0, "bytes": 0, "oldest_record_age_s": null, ...},
     "first_start": {"start_at": "now", "chosen_by": "--start-at",
                     "decided_at": "<RFC 3339>", "start_time": "<RFC 3339>" | null,
                     "storage_was_new": true} | null,          # null: no agent ran yet
     "accounting": {"since": "<RFC 3339>", "recovered_at_start": 0,
                    "totals": {<counts>}, "problems": []} | null,   # null: from storage
     "containers": [{"id": "...", "name": "web-1" | null, "following": true,
                     "since_ns": 1700000000123456789, "skip": 3,
                     "checkpoint_time": "<RFC 3339>" | null, "lag_s": 1.5 | null,
                     "accounting": {<counts>},                  # accounting: agent only
                     "rate_limit": {"rule": "noisy", "limit": "...", "action": "drop",
                                    "dropped_since_summary": 12}}],   # with a quota only
     "dead_letters": {"path": "...", "total": 0, "by_error_type": {"mapper_parsing_exception": 2},
                      "since_start": 0},                # since_start: the agent's own count
     "failure_store": {"since_start": 0},             # the agent only: records Elasticsearch
                                                      # kept in a data stream's failure store
     "ready": true, "not_ready_reasons": []}          # the last two from the agent only

`<counts>` are `shipper.accounting.ContainerCounts.as_dict()`: lines_read, joined,
dropped_by_rule, dropped_by_quota, held, buffered, summaries, recovered, stored,
already_stored, failure_stored, dead_lettered, waiting, since the agent started (their meaning, and how they
add up, is in `shipper/accounting.py`). `problems` lists every invariant that does not hold.

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

from shipper.accounting import Ledger
from shipper.buffer.inspect import inspect_buffer
from shipper.layout import StorageLayout
from shipper.lines.timestamps import format_timestamp
from shipper.pipeline.encoder import container_key
from shipper.sources.checkpoint import Checkpoint, CheckpointFileError, CheckpointStore
from shipper.sources.first_start import FirstStart, FirstStartFileError, FirstStartStore


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


def first_start_section(decision: FirstStart | None) -> dict[str, Any] | None:
    if decision is None:
        return None
    return {
        "start_at": decision.start_at,
        "chosen_by": decision.chosen_by,
        "decided_at": format_timestamp(decision.decided_at_ns) if decision.decided_at_ns else None,
        "start_time": None if decision.start_ns is None else format_timestamp(decision.start_ns),
        "storage_was_new": decision.storage_was_new,
    }


def accounting_section(ledger: Ledger, buffer_records: int) -> dict[str, Any]:
    return {
        "since": format_timestamp(ledger.started_at_ns),
        "recovered_at_start": ledger.recovered_total,
        "totals": ledger.totals().as_dict(),
        "problems": ledger.check(buffer_records),
    }


def with_accounting(
    rows: list[dict[str, Any]],
    ledger: Ledger,
    rate_limits: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The rows with each container's counts and rate limit; containers known only to the
    accounting (gone, records still waiting) get a row of their own, named by their key."""
    counts = ledger.rows()
    for row in rows:
        found = counts.pop(container_key(row["id"]), None)
        if found is not None:
            row["accounting"] = found.as_dict()
        quota = (rate_limits or {}).get(row["id"])
        if quota is not None:
            row["rate_limit"] = dict(quota)
    for key, found in sorted(counts.items()):
        rows.append(
            {
                "id": key,
                "name": None,
                "following": False,
                "since_ns": 0,
                "skip": 0,
                "checkpoint_time": None,
                "lag_s": None,
                "accounting": found.as_dict(),
            }
        )
    return rows


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
    try:
        decision = FirstStartStore(StorageLayout(storage)).load()
    except FirstStartFileError as exc:
        decision = None
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
        "first_start": first_start_section(decision),
        "accounting": None,
        "containers": container_rows(checkpoints, saved_names(checkpoints)),
        "dead_letters": dead_letter_counts(storage),
        "problems": problems,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
