"""Disk buffer → bulk requests → Elasticsearch, acknowledging only what is settled.

N workers each take a batch from the buffer, send it as one `_bulk`, and decide per item
(see `retry.py`): stored and already-stored items are done; busy-cluster items are sent
again, alone, after a backoff; items that can never be indexed go to the dead letter
destination with their reason. Only when every item of a batch is settled is the batch
acknowledged, so the buffer can delete it. A whole-request failure (cluster unreachable,
429/503, 401) is retried without limit: the buffer holds the data meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from shipper import telemetry
from shipper.backoff import Backoff
from shipper.config import ElasticsearchConfig
from shipper.sinks.base import BatchSource
from shipper.sinks.elasticsearch.client import ElasticsearchConnection, RequestFailed
from shipper.sinks.elasticsearch.dead_letter import DeadLetters
from shipper.sinks.elasticsearch.retry import (
    ItemAction,
    ItemOutcome,
    RequestAction,
    classify_bulk_response,
    classify_request_failure,
)


class ElasticsearchSink:
    def __init__(
        self,
        connection: ElasticsearchConnection,
        source: BatchSource[Any],
        config: ElasticsearchConfig,
        dead_letters: DeadLetters,
    ) -> None:
        self._connection = connection
        self._source = source
        self._config = config
        self._dead_letters = dead_letters
        self._stopping = asyncio.Event()
        self.last_error: str | None = None  # why the cluster is not accepting writes, for /readyz
        self.last_success_monotonic = 0.0

    def stop(self) -> None:
        """Finish the batches in hand, take no new ones."""
        self._stopping.set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for index in range(self._config.max_concurrent_requests):
                group.create_task(self._worker(), name=f"es-sink-{index}")

    async def _worker(self) -> None:
        while not self._stopping.is_set():
            batch = await self._source.read(
                self._config.batch_max_docs, self._config.batch_max_bytes, timeout_s=0.25
            )
            if batch is None:
                continue
            await self.ship(batch.entries)
            self._source.ack(batch)
            telemetry.records_shipped.inc(len(batch.entries))

    async def ship(self, entries: Sequence[bytes]) -> None:
        """Returns once every entry is stored, already stored, or dead-lettered."""
        pending = list(entries)
        item_backoff = Backoff(base_s=0.2, cap_s=self._config.retry_max_backoff_s)
        while pending:
            outcome = await self._send_until_answered(pending)
            if outcome is None:  # 413 handled by splitting inside
                return
            retry: list[bytes] = []
            dead: list[tuple[bytes, ItemOutcome]] = []
            for entry, item in zip(pending, outcome, strict=True):
                telemetry.bulk_items.labels(str(item.status), item.error_type or "none").inc()
                if item.action is ItemAction.RETRY:
                    retry.append(entry)
                elif item.action is ItemAction.DEAD_LETTER:
                    dead.append((entry, item))
            if dead:
                await self._dead_letters.write(dead)
            if retry:
                telemetry.retries.labels("item_rejected").inc(len(retry))
                delay = item_backoff.next_delay_s()
                telemetry.warning(
                    "bulk_items_retried",
                    "Elasticsearch rejected items for now; sending them again.",
                    items=len(retry),
                    delay_s=round(delay, 2),
                )
                await asyncio.sleep(delay)
            pending = retry

    async def _send_until_answered(self, entries: list[bytes]) -> list[ItemOutcome] | None:
        backoff = Backoff(base_s=0.2, cap_s=self._config.retry_max_backoff_s)
        body = b"".join(entries)
        while True:
            started = time.monotonic()
            try:
                response = await self._connection.bulk(body)
            except RequestFailed as exc:
                telemetry.bulk_requests.labels("failed").inc()
                self.last_error = str(exc)
                action = classify_request_failure(exc.status)
                if action is RequestAction.SPLIT:
                    await self._split(entries)
                    return None
                delay = backoff.next_delay_s()
                if action is RequestAction.RETRY_SLOWLY:
                    delay = max(delay, 10.0)
                    telemetry.error(
                        "elasticsearch_auth",
                        "Elasticsearch refused our credentials; check elasticsearch.username/"
                        "password/api_key. Data is kept and sending is retried.",
                        status=exc.status,
                        error=str(exc),
                    )
                else:
                    telemetry.warning(
                        "elasticsearch_request_failed",
                        "Bulk request failed; it will be retried.",
                        status=exc.status,
                        error=str(exc),
                        delay_s=round(delay, 2),
                    )
                telemetry.retries.labels("request_failed").inc()
                await asyncio.sleep(delay)
                continue
            telemetry.bulk_duration.observe(time.monotonic() - started)
            telemetry.bulk_requests.labels("answered").inc()
            self.last_error = None
            self.last_success_monotonic = time.monotonic()
            return classify_bulk_response(response, len(entries)).outcomes

    async def _split(self, entries: list[bytes]) -> None:
        if len(entries) == 1:
            # One document larger than the cluster accepts: it can never be indexed as is.
            too_large = ItemOutcome(
                ItemAction.DEAD_LETTER,
                413,
                "request_entity_too_large",
                "document exceeds the cluster's http.max_content_length",
            )
            await self._dead_letters.write([(entries[0], too_large)])
            return
        telemetry.retries.labels("request_too_large").inc()
        middle = len(entries) // 2
        await self.ship(entries[:middle])
        await self.ship(entries[middle:])
