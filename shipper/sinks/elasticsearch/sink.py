"""Disk buffer → bulk requests → Elasticsearch, acknowledging only what is settled.

Start: connect (learn the server's major), install the templates of the streams known from the
config, retrying without limit while the buffer holds the data; `last_error` says why not yet.

Then N workers each gather a batch from the buffer (up to `batch_max_docs` / `batch_max_bytes`,
waiting at most `flush_interval_s` after its first entry for more), make sure every target
stream has its template, send it as one `_bulk`, and decide per item (see `retry.py`):

* stored, or already stored (409 on `create`): settled;
* can never be indexed (mapping conflict, parse error...): dead-lettered with the reason
  (`dead_letter.py`), then settled;
* rejected for now (429/5xx item): parked in the retry queue (`retry_queue.py`), and the worker
  goes on with the next batch at once; a separate task sends parked items again after their
  own backoff, and they are settled when stored or dead-lettered.

A buffer batch is acknowledged (and its disk space freed) when all its entries are settled.
A whole-request failure (unreachable, timeout, 429/502/503/504) is retried without limit with
capped backoff; 413 splits the request in halves (one document alone that is too large is
dead-lettered); 401/403 are logged with their cause, retried with a long backoff, and
surfaced in `/readyz` through `last_error`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Sequence
from typing import Any

from shipper import telemetry
from shipper.backoff import Backoff
from shipper.config import ElasticsearchConfig
from shipper.sinks.base import BatchSource
from shipper.sinks.elasticsearch.client import ElasticsearchConnection, RequestFailed
from shipper.sinks.elasticsearch.dead_letter import DeadLetters
from shipper.sinks.elasticsearch.encoder import index_of
from shipper.sinks.elasticsearch.retry import (
    ItemAction,
    ItemOutcome,
    RequestAction,
    classify_bulk_response,
    classify_request_failure,
)
from shipper.sinks.elasticsearch.retry_queue import RetryQueue, Ticket
from shipper.sinks.elasticsearch.templates import TemplateManager

AUTH_MIN_DELAY_S = 5.0  # 401/403 need an operator: do not hammer the cluster meanwhile
NOT_CONNECTED = "not connected to Elasticsearch yet"


class _Split(Exception):
    """The request was too large (413): send it in halves."""


class ElasticsearchSink:
    def __init__(
        self,
        connection: ElasticsearchConnection,
        source: BatchSource[Any],
        config: ElasticsearchConfig,
        dead_letters: DeadLetters,
        templates: TemplateManager | None = None,
        static_targets: Sequence[str] = (),
    ) -> None:
        self._connection = connection
        self._source = source
        self._config = config
        self._dead_letters = dead_letters
        self._templates = templates or TemplateManager(connection, config)
        self._static_targets = list(static_targets)
        self._retry_queue = RetryQueue(
            config.retry_queue_max_docs, base_s=0.2, cap_s=config.retry_max_backoff_s
        )
        self._stopping = asyncio.Event()
        self._prepared = False
        self.last_error: str | None = NOT_CONNECTED  # why writes are not accepted, for /readyz
        self.last_success_monotonic = 0.0

    def stop(self) -> None:
        """Finish the batches in hand, take no new ones."""
        self._stopping.set()

    @property
    def retry_queue_size(self) -> int:
        return len(self._retry_queue)

    async def run(self) -> None:
        if not self._prepared and not await self.prepare():
            return
        async with asyncio.TaskGroup() as group:
            for index in range(self._config.max_concurrent_requests):
                group.create_task(self._worker(), name=f"es-sink-{index}")
            group.create_task(self._retry_rejected(), name="es-sink-retries")

    async def prepare(self) -> bool:
        """Connects and installs the known templates; False if stopped before that."""
        backoff = Backoff(base_s=0.5, cap_s=min(10.0, self._config.retry_max_backoff_s))
        targets = list(self._static_targets)
        if self._dead_letters.data_stream:
            targets.append(self._dead_letters.data_stream)
        while not self._stopping.is_set():
            try:
                major = await self._connection.connect()
                await self._templates.ensure(targets)
            except RequestFailed as exc:
                delay = self._request_failed(exc, backoff, "connect")
                await self._sleep(delay)
                continue
            self.last_error = None
            self._prepared = True
            telemetry.info(
                "Connected to Elasticsearch.", version=self._connection.version, major=major
            )
            return True
        return False

    # -- the main path ---------------------------------------------------------------------

    async def _worker(self) -> None:
        while not self._stopping.is_set():
            await self._retry_queue.wait_for_room()
            entries, tickets = await self._gather()
            if entries:
                await self._deliver(entries, tickets, None)

    async def _gather(self) -> tuple[list[bytes], list[Ticket]]:
        """A batch by documents, bytes and age: after the first entry, wait at most
        `flush_interval_s` for more, unless the batch is full before."""
        config = self._config
        first = await self._source.read(config.batch_max_docs, config.batch_max_bytes, 0.25)
        if first is None:
            return [], []
        entries: list[bytes] = []
        tickets: list[Ticket] = []
        size = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.flush_interval_s
        batch: Any = first
        while batch is not None:
            got = batch.entries
            ticket = Ticket(len(got), functools.partial(self._source.ack, batch))
            entries.extend(got)
            tickets.extend([ticket] * len(got))
            size += sum(map(len, got))
            room_docs = config.batch_max_docs - len(entries)
            room_bytes = config.batch_max_bytes - size
            remaining = deadline - loop.time()
            # A read returns at least one entry even if larger than asked: stop when little
            # room is left rather than overshoot by a whole long line.
            if room_docs <= 0 or room_bytes < config.batch_max_bytes // 16 or remaining <= 0:
                break
            if self._stopping.is_set():
                break
            batch = await self._source.read(room_docs, room_bytes, remaining)
        return entries, tickets

    async def _deliver(
        self, entries: list[bytes], tickets: list[Ticket], attempts: list[int] | None
    ) -> None:
        """Sends until every entry is settled or parked for a later retry."""
        try:
            outcomes = await self._send_until_answered(entries)
        except _Split:
            if len(entries) == 1:
                # One document larger than the cluster accepts: it can never be indexed as is.
                too_large = ItemOutcome(
                    ItemAction.DEAD_LETTER,
                    413,
                    "request_entity_too_large",
                    "document exceeds the cluster's http.max_content_length",
                )
                await self._dead_letters.write([(entries[0], too_large)])
                tickets[0].settle()
                return
            telemetry.retries.labels("request_too_large").inc()
            middle = len(entries) // 2
            first_attempts = attempts[:middle] if attempts else None
            rest_attempts = attempts[middle:] if attempts else None
            await self._deliver(entries[:middle], tickets[:middle], first_attempts)
            await self._deliver(entries[middle:], tickets[middle:], rest_attempts)
            return
        dead: list[tuple[bytes, ItemOutcome]] = []
        dead_tickets: list[Ticket] = []
        stored = parked = 0
        for position, (entry, item) in enumerate(zip(entries, outcomes, strict=True)):
            telemetry.bulk_items.labels(str(item.status), item.error_type or "none").inc()
            if item.action is ItemAction.DONE:
                stored += 1
                tickets[position].settle()
            elif item.action is ItemAction.RETRY:
                parked += 1
                attempt = (attempts[position] if attempts else 0) + 1
                self._retry_queue.park(entry, tickets[position], attempt)
            else:
                dead.append((entry, item))
                dead_tickets.append(tickets[position])
        telemetry.records_shipped.inc(stored)
        if parked:
            telemetry.retries.labels("item_rejected").inc(parked)
            telemetry.warning(
                "bulk_items_retried",
                "Elasticsearch rejected items for now; they are sent again after a backoff.",
                items=parked,
                retry_queue=len(self._retry_queue),
            )
        if dead:
            await self._dead_letters.write(dead)
            for ticket in dead_tickets:
                ticket.settle()

    async def _retry_rejected(self) -> None:
        config = self._config
        while not self._stopping.is_set():
            due = []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):  # look at _stopping now and then
                    due = await self._retry_queue.take_due(
                        config.batch_max_docs, config.batch_max_bytes
                    )
            if due:
                await self._deliver(
                    [p.entry for p in due], [p.ticket for p in due], [p.attempt for p in due]
                )

    async def _send_until_answered(self, entries: list[bytes]) -> list[ItemOutcome]:
        """The per-item outcomes; retries whole-request failures without limit."""
        backoff = Backoff(base_s=0.2, cap_s=self._config.retry_max_backoff_s)
        body = b"".join(entries)
        while True:
            started = time.monotonic()
            try:
                await self._templates.ensure({index_of(e) for e in entries})
                response = await self._connection.bulk(body)
            except RequestFailed as exc:
                telemetry.bulk_requests.labels("failed").inc()
                if classify_request_failure(exc.status) is RequestAction.SPLIT:
                    raise _Split from exc
                delay = self._request_failed(exc, backoff, "bulk")
                telemetry.retries.labels("request_failed").inc()
                await asyncio.sleep(delay)
                continue
            telemetry.bulk_duration.observe(time.monotonic() - started)
            telemetry.bulk_requests.labels("answered").inc()
            self.last_error = None
            self.last_success_monotonic = time.monotonic()
            return classify_bulk_response(response, len(entries)).outcomes

    def _request_failed(self, exc: RequestFailed, backoff: Backoff, during: str) -> float:
        """Logs a whole-request failure with its cause, records it for /readyz; the delay."""
        delay = backoff.next_delay_s()
        if classify_request_failure(exc.status) is RequestAction.RETRY_SLOWLY:
            delay = max(delay, AUTH_MIN_DELAY_S)
            if exc.status == 401:
                cause = (
                    "Elasticsearch rejected the shipper's credentials; check "
                    "elasticsearch.username/password(_file), api_key(_file) or bearer_token(_file)"
                )
            else:
                cause = (
                    "Elasticsearch denied the shipper's user a privilege it needs (create_doc "
                    "and auto_configure on its data streams, manage_index_templates to install "
                    "templates)"
                )
            self.last_error = f"{cause}: {exc}"
            telemetry.error(
                "elasticsearch_auth",
                cause + ". Data is kept in the buffer and sending is retried.",
                status=exc.status,
                error=str(exc),
                during=during,
                delay_s=round(delay, 2),
            )
        else:
            self.last_error = str(exc)
            telemetry.warning(
                "elasticsearch_request_failed",
                "Elasticsearch request failed; it will be retried, the buffer keeps the data.",
                status=exc.status,
                error=str(exc),
                during=during,
                delay_s=round(delay, 2),
            )
        return delay

    async def _sleep(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)
