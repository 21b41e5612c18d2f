"""Where records that Elasticsearch can never index go, so nothing is silently dropped.

First choice: the dead-letter **data stream** (`elasticsearch.dead_letter.data_stream`, default
`logs-shipper.deadletter-default`, its own template), one document per record holding the
original document serialised as a string (`event.original`), the error type and reason, the
HTTP status and the index it was meant for. Its `_id` is the original `_id`, so dead-lettering
the same record again (a retry, a re-read after a crash) answers 409 and stores nothing twice.

If that bulk fails for good, or still fails after a few quick attempts (the cluster is going
away), the records are appended (and fsynced) to `<storage.path>/dead-letter/dead-letter.ndjson`,
one JSON object per line in the same shape, so an operator can replay them. The batch they came
from is acknowledged only after one of the two holds them.
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

from shipper import telemetry
from shipper.backoff import Backoff
from shipper.sinks.elasticsearch.client import ElasticsearchConnection, RequestFailed
from shipper.sinks.elasticsearch.encoder import index_of
from shipper.sinks.elasticsearch.retry import (
    ItemAction,
    ItemOutcome,
    classify_bulk_response,
)
from shipper.sinks.elasticsearch.routing import split_data_stream

STREAM_ATTEMPTS = 3  # quick tries of the dead-letter stream before the file takes over


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
        "@timestamp": _now_rfc3339(),
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
        directory: Path,
        connection: ElasticsearchConnection | None = None,
        data_stream: str | None = None,
        *,
        retry_base_s: float = 0.2,
    ) -> None:
        self._directory = directory
        self._path = directory / "dead-letter.ndjson"
        self._connection = connection
        self.data_stream = data_stream if connection is not None else None
        self._retry_base_s = retry_base_s
        self.count = 0  # records dead-lettered (either destination)
        self.file_count = 0  # of which only the file holds them

    @property
    def path(self) -> Path:
        return self._path

    async def write(self, items: Sequence[tuple[bytes, ItemOutcome]]) -> None:
        """Returns once every item is in the dead-letter stream or in the file."""
        if not items:
            return
        for entry, outcome in items:
            telemetry.dead_lettered.labels(outcome.error_type or str(outcome.status)).inc()
            telemetry.error(
                "dead_letter",
                "Elasticsearch can never index a record; it was dead-lettered with the reason.",
                error_type=outcome.error_type,
                reason=outcome.reason[:300],
                status=outcome.status,
                target_index=index_of(entry),
                destination=self.data_stream or str(self._path),
            )
        documents = [
            dead_letter_document(entry, outcome, self.data_stream) for entry, outcome in items
        ]
        left = await self._to_stream(documents) if self.data_stream else documents
        if left:
            if self.data_stream:
                telemetry.error(
                    "dead_letter_file",
                    "The dead-letter data stream did not take some records; they were written "
                    "to the dead-letter file.",
                    records=len(left),
                    path=str(self._path),
                )
            await asyncio.to_thread(
                self._append, b"".join(orjson.dumps(d) + b"\n" for _, d in left)
            )
            self.file_count += len(left)
        self.count += len(items)

    async def _to_stream(
        self, documents: list[tuple[str, dict[str, Any]]]
    ) -> list[tuple[str, dict[str, Any]]]:
        """Sends to the dead-letter stream; returns what it did not store."""
        assert self._connection is not None and self.data_stream is not None
        prefix = b'{"create":{"_index":' + orjson.dumps(self.data_stream) + b',"_id":'
        pending = documents
        backoff = Backoff(base_s=self._retry_base_s, cap_s=2.0)
        for attempt in range(STREAM_ATTEMPTS):
            if attempt:
                await asyncio.sleep(backoff.next_delay_s())
            body = b"".join(
                prefix + orjson.dumps(doc_id) + b"}}\n" + orjson.dumps(doc) + b"\n"
                for doc_id, doc in pending
            )
            try:
                response = await self._connection.bulk(body)
            except RequestFailed as exc:
                if exc.status == 413 and len(pending) > 1:
                    middle = len(pending) // 2
                    return [
                        *await self._to_stream(pending[:middle]),
                        *await self._to_stream(pending[middle:]),
                    ]
                if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                    return pending  # 401/403/413...: the file, at once
                continue
            outcomes = classify_bulk_response(response, len(pending)).outcomes
            retry = []
            for document, outcome in zip(pending, outcomes, strict=True):
                telemetry.bulk_items.labels(str(outcome.status), outcome.error_type or "none").inc()
                if outcome.action is ItemAction.RETRY:
                    retry.append(document)
                elif outcome.action is ItemAction.DEAD_LETTER:
                    self._lost_to_file(document, outcome)
            failed = [
                d
                for d, o in zip(pending, outcomes, strict=True)
                if o.action is ItemAction.DEAD_LETTER
            ]
            if failed:
                await asyncio.to_thread(
                    self._append, b"".join(orjson.dumps(d) + b"\n" for _, d in failed)
                )
                self.file_count += len(failed)
            pending = retry
            if not pending:
                return []
        return pending

    def _lost_to_file(self, document: tuple[str, dict[str, Any]], outcome: ItemOutcome) -> None:
        telemetry.error(
            "dead_letter_refused",
            "The dead-letter data stream refused a record; it goes to the dead-letter file.",
            error_type=outcome.error_type,
            reason=outcome.reason[:300],
            path=str(self._path),
        )

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
