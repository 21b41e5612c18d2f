"""Where records that Elasticsearch can never index go, so nothing is silently dropped.

A dead letter keeps the original record serialised as a string, the error type and reason,
and the index it was meant for. They are appended (and fsynced) to
`<storage.path>/dead-letter/dead-letter.ndjson`, one JSON object per line.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from shipper import telemetry
from shipper.sinks.elasticsearch.retry import ItemOutcome


def dead_letter_document(entry: bytes, outcome: ItemOutcome) -> dict[str, Any]:
    action_line, _, document_line = entry.partition(b"\n")
    try:
        action = orjson.loads(action_line)
        target = next(iter(action.values()))
        index, doc_id = str(target.get("_index", "")), str(target.get("_id", ""))
    except (orjson.JSONDecodeError, StopIteration, AttributeError):
        index, doc_id = "", ""
    return {
        "@timestamp": _now_rfc3339(),
        "error": {"type": outcome.error_type, "message": outcome.reason},
        "http": {"response": {"status_code": outcome.status}},
        "shipper": {"target_index": index, "document_id": doc_id},
        "event": {"original": document_line.rstrip(b"\n").decode("utf-8", "replace")},
    }


class DeadLetters:
    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._path = directory / "dead-letter.ndjson"
        self.count = 0

    @property
    def path(self) -> Path:
        return self._path

    async def write(self, items: Sequence[tuple[bytes, ItemOutcome]]) -> None:
        lines = []
        for entry, outcome in items:
            telemetry.dead_lettered.labels(outcome.error_type or str(outcome.status)).inc()
            lines.append(orjson.dumps(dead_letter_document(entry, outcome)) + b"\n")
            telemetry.error(
                "dead_letter",
                "Elasticsearch can never index a record; it was written to the dead letter file.",
                error_type=outcome.error_type,
                reason=outcome.reason[:300],
                status=outcome.status,
                path=str(self._path),
            )
        await asyncio.to_thread(self._append, b"".join(lines))
        self.count += len(items)

    def _append(self, data: bytes) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)


def _now_rfc3339() -> str:
    now = time.time_ns()
    seconds, nanos = divmod(now, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"
