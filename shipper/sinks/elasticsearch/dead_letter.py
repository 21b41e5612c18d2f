"""Where records that Elasticsearch can never index go, so nothing is silently dropped.

First choice: the dead-letter **data stream** (`elasticsearch.dead_letter.data_stream`, default
`logs-shipper.deadletter-default`, its own template), one document per record holding the
original document serialised as a string (`event.original`), the error type and reason, the
HTTP status and the index it was meant for. Its `_id` is the original `_id`, so dead-lettering
the same record again (a retry, a re-read after a crash) answers 409 and stores nothing twice.

The sink sends dead letters like any other document: they join the retry queue and go out
with its next batch, are retried with the same backoff while the cluster rejects them for now
(429/5xx), and do not hold up the worker that found them. Only when the dead-letter stream
itself can never take one (its own mapping refuses it, it is too large for any request) is it
appended (and fsynced) to `<storage.path>/dead-letter/dead-letter.ndjson`, one JSON object per
line in the same shape, so an operator can replay it. Without a dead-letter stream
(`data_stream: null`) the file is the only destination. The batch a record came from is
acknowledged only after one of the two holds it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from shipper import events
from shipper.durable import write_all
from shipper.lines.timestamps import format_timestamp
from shipper.pipeline.encoder import index_of
from shipper.sinks.elasticsearch.client import ElasticsearchConnection
from shipper.sinks.elasticsearch.retry import ItemOutcome
from shipper.sinks.elasticsearch.routing import split_data_stream


def _target(entry: bytes) -> tuple[str, str, str]:
    """(index, _id, original document) of a buffered bulk entry, however damaged it is."""
    action_line, _, document_line = entry.partition(b"\n")
    try:
        action = orjson.loads(action_line)
        target = next(iter(action.values()))
        index, doc_id = str(target.get("_index", "")), str(target.get("_id", ""))
    except (orjson.JSONDecodeError, StopIteration, AttributeError):
        index, doc_id = "", ""
    if not doc_id:
        digest = hashlib.blake2b(entry, digest_size=15).digest()
        doc_id = base64.urlsafe_b64encode(digest).decode()
    return index, doc_id, document_line.rstrip(b"\n").decode("utf-8", "replace")


def dead_letter_document(
    entry: bytes, outcome: ItemOutcome, data_stream: str | None = None
) -> tuple[str, dict[str, Any]]:
    """(_id, document) of the dead letter for `entry`; pure but for the current time."""
    index, doc_id, original = _target(entry)
    document: dict[str, Any] = {
        "@timestamp": format_timestamp(time.time_ns()),
        "message": f"{outcome.error_type or outcome.status}: {outcome.reason}"[:2000],
        "error": {"type": outcome.error_type, "message": outcome.reason},
        "http": {"response": {"status_code": outcome.status}},
        "shipper": {"target_index": index, "document_id": doc_id},
        "event": {"original": original, "kind": "pipeline_error"},
    }
    if data_stream is not None:
        dataset, namespace = split_data_stream(data_stream)
        document["data_stream"] = {"type": "logs", "dataset": dataset, "namespace": namespace}
    return doc_id, document


class DeadLetters:
    def __init__(
        self,
        path: Path,
        connection: ElasticsearchConnection | None = None,
        data_stream: str | None = None,
        *,
        retry_base_s: float = 0.2,
    ) -> None:
        self._path = path  # StorageLayout.dead_letter_file
        # Without a connection there is nothing to send to: the file is the only destination.
        self.data_stream = data_stream if connection is not None else None
        self.retry_base_s = retry_base_s
        self.count = 0  # records dead-lettered (either destination)
        self.file_count = 0  # of which only the file holds them

    @property
    def path(self) -> Path:
        return self._path

    def dead_letter(
        self, entry: bytes, outcome: ItemOutcome
    ) -> tuple[bytes | None, dict[str, Any]]:
        """Counts and logs a record that can never be indexed; returns the bulk entry that
        sends its dead letter to the stream (None: no stream) and the document for the file."""
        self.count += 1
        events.elasticsearch.dead_lettered(
            error_type=outcome.error_type,
            reason=outcome.reason,
            status=outcome.status,
            target_index=index_of(entry),
            destination=self.data_stream or str(self._path),
        )
        doc_id, document = dead_letter_document(entry, outcome, self.data_stream)
        if self.data_stream is None:
            return None, document
        action = {"create": {"_index": self.data_stream, "_id": doc_id}}
        return orjson.dumps(action) + b"\n" + orjson.dumps(document) + b"\n", document

    async def to_file(self, documents: Sequence[dict[str, Any]], outcome: ItemOutcome) -> None:
        """Appends dead letters the stream can never take (or that have no stream) durably."""
        if not documents:
            return
        if self.data_stream is not None:
            events.elasticsearch.dead_letters_to_file(
                records=len(documents),
                error_type=outcome.error_type,
                reason=outcome.reason,
                path=self._path,
            )
        data = b"".join(orjson.dumps(document) + b"\n" for document in documents)
        await asyncio.to_thread(self._append, data)
        self.file_count += len(documents)

    def _append(self, data: bytes) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
