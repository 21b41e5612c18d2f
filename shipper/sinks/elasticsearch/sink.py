"""Disk buffer → bulk requests → Elasticsearch, acknowledging only what is settled.

Start: connect (learn the server's major), install the templates of the streams known from the
config, retrying without limit while the buffer holds the data; `last_error` says why not yet.
`failure_store: on` against a cluster without failure stores is a configuration error
(raised, so the shipper stops with exit code 2 naming the key and the cluster's version).

Then N workers each gather buffer batches (up to `batch_max_docs` / `batch_max_bytes`, waiting
at most `flush_interval_s` after the first for more), make sure every target stream has its
template, and send the blocks' entries, as they lie in the buffer, as one `_bulk`.

* The common answer, `errors: false`: every item is stored; the batches are acknowledged at
  once, with no per-item work.
* Otherwise every item is decided on its own (see `retry.py`):
  - stored, or already stored (409 on `create`): settled;
  - stored in the data stream's failure store (201 with `failure_store: used`, Elasticsearch
    8.19/9.1+, `elasticsearch.failure_store`): settled, but counted apart from the records
    shipped (`shipper_bulk_items_total{failure_store="used"}`, `status`) and logged: it is
    kept, not as a log record;
  - rejected for now (429/5xx, or 401/403 for want of a privilege): parked in the retry queue
    (`retry_queue.py`), and the worker goes on with the next batch at once; a separate task
    sends parked items again after their own backoff;
  - can never be indexed (mapping conflict, parse error, a missing or failing ingest
    pipeline... that no failure store kept): its dead letter (`dead_letter.py`) is parked
    the same way, bound for the dead-letter stream; if that stream can never take it either,
    it goes to the dead-letter file.
  A batch is acknowledged (and its disk space freed) when all its entries are settled.

A whole-request failure (unreachable, timeout, 429/502/503/504) is retried without limit with
capped backoff; 413 splits the request in halves (one document alone that is too large is
dead-lettered); 401/403 and other 4xx answers to the request as a whole are logged with their
cause, retried with a long backoff, and surfaced in `/readyz` through `last_error`.

Fairness: a worker never waits for one container's rejected documents (they wait in the retry
queue) nor writes dead letters itself, so another container's lines are delayed by at most
the batch in flight plus `flush_interval_s`, unless the retry queue is full
(`retry_queue_max_docs` rejected documents), when workers wait for room and everyone waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shipper import events, telemetry
from shipper.accounting import (
    ALREADY_STORED,
    DEAD_LETTERED,
    FAILURE_STORED,
    STORED,
    Ledger,
    Outcomes,
)
from shipper.backoff import Backoff
from shipper.config import ElasticsearchConfig
from shipper.errors import ConfigError
from shipper.pipeline.encoder import container_key_of, index_of
from shipper.sinks.base import BatchSource
from shipper.sinks.elasticsearch.client import (
    ElasticsearchConnection,
    RequestFailed,
    UnsupportedCluster,
)
from shipper.sinks.elasticsearch.dead_letter import DeadLetters
from shipper.sinks.elasticsearch.response import CREATED_ITEM
from shipper.sinks.elasticsearch.retry import (
    AUTH_STATUSES,
    ItemAction,
    ItemOutcome,
    RequestAction,
    classify_bulk_response,
    classify_request_failure,
    item_result,
)
from shipper.sinks.elasticsearch.retry_queue import RetryQueue, Ticket
from shipper.sinks.elasticsearch.templates import TemplateManager, supports_failure_store

AUTH_MIN_DELAY_S = 5.0  # 401/403 need an operator: do not hammer the cluster meanwhile
NOT_CONNECTED = "not connected to Elasticsearch yet"
# While idle, the cluster is asked whether it answers this often, and waited for this long.
PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 5.0
_TOO_LARGE = ItemOutcome(
    ItemAction.DEAD_LETTER,
    413,
    "request_entity_too_large",
    "document exceeds the cluster's http.max_content_length",
)


def _tally(item: _Item, outcome: str) -> None:
    """Notes what became of an entry on its batch's ticket (per-item: the slow path only)."""
    item.ticket.outcomes[(container_key_of(item.entry), outcome)] += 1


class _Split(Exception):
    """The request was too large (413): send it in halves."""


@dataclass(slots=True)
class _Item:
    """One entry on the slow path, where items are decided one by one."""

    entry: bytes
    ticket: Ticket
    attempt: int = 0  # times it was rejected so far
    fallback: dict[str, Any] | None = None  # set: a dead letter; the file takes it if need be


class ElasticsearchSink:
    def __init__(
        self,
        connection: ElasticsearchConnection,
        source: BatchSource[Any],
        config: ElasticsearchConfig,
        dead_letters: DeadLetters,
        templates: TemplateManager | None = None,
        static_targets: Sequence[str] = (),
        ledger: Ledger | None = None,
    ) -> None:
        self._connection = connection
        # Told what became of each acknowledged batch (per-container accounting).
        self._ledger = ledger
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
        self._request_error: str | None = NOT_CONNECTED  # why requests fail, if they do
        # Documents refused for want of a privilege (401/403 items), and when last.
        self._item_auth_error: str | None = None
        self._item_auth_at = 0.0
        self.last_success_monotonic = 0.0
        # Why the cluster seems unwell while nothing was sent for a while (see _probe_idle).
        self._idle_problem: str | None = None
        # Streams that answered failure_store "not_enabled" while it is on (said once each).
        self._failure_store_off: set[str] = set()

    @property
    def last_error(self) -> str | None:
        """Why writes are not (all) accepted, for /readyz; None when they are."""
        if self._request_error is not None:
            return self._request_error
        # Refused documents are retried at least every AUTH_MIN_DELAY_S: with no refusal for
        # a few of those intervals, the privilege was granted (or nothing needs it any more).
        if time.monotonic() - self._item_auth_at < 3 * AUTH_MIN_DELAY_S:
            return self._item_auth_error
        return self._idle_problem

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
            group.create_task(self._probe_idle(), name="es-sink-probe")

    async def prepare(self) -> bool:
        """Connects and installs the known templates; False if stopped before that."""
        backoff = Backoff(base_s=0.5, cap_s=min(10.0, self._config.retry_max_backoff_s))
        targets = list(self._static_targets)
        if self._dead_letters.data_stream:
            targets.append(self._dead_letters.data_stream)
        while not self._stopping.is_set():
            try:
                major = await self._connection.connect()
                self._check_failure_store()
                await self._templates.ensure(targets)
            except RequestFailed as exc:
                delay = self._request_failed(exc, backoff, "connect")
                await self._sleep(delay)
                continue
            except UnsupportedCluster as exc:
                # Nothing we send would be right for it; an upgrade (or a fixed hosts list)
                # is an operator's job. Keep the data, say why, look again now and then.
                self._request_error = str(exc)
                events.elasticsearch.unsupported(error=exc)
                await self._sleep(max(AUTH_MIN_DELAY_S, backoff.next_delay_s()))
                continue
            self._request_error = None
            self._prepared = True
            events.elasticsearch.connected(version=self._connection.version, major=major)
            return True
        return False

    def _check_failure_store(self) -> None:
        version = self._connection.version
        if self._config.failure_store == "on" and not supports_failure_store(version):
            raise ConfigError(
                "elasticsearch.failure_store",
                f"is on, but the cluster is Elasticsearch {version}, which has no data stream "
                "failure store (8.19, 9.1 and later have one); set it to off or upgrade",
            )

    async def _probe_idle(self) -> None:
        """Keeps `last_error` true while no bulk request is in flight: when nothing was sent
        successfully for a while, asks the cluster whether it answers at all."""
        while not self._stopping.is_set():
            await self._sleep(PROBE_INTERVAL_S)
            if self._stopping.is_set():
                return
            if time.monotonic() - self.last_success_monotonic < PROBE_INTERVAL_S:
                self._idle_problem = None
                continue
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    await self._connection.request("GET", "/")
                self._idle_problem = None
            except TimeoutError:
                self._idle_problem = f"Elasticsearch did not answer within {PROBE_TIMEOUT_S:.0f} s"
            except RequestFailed as exc:
                self._idle_problem = str(exc)

    # -- the main path ---------------------------------------------------------------------

    async def _worker(self) -> None:
        while not self._stopping.is_set():
            await self._retry_queue.wait_for_room()
            batches = await self._gather()
            if batches:
                await self._deliver_batches(batches)

    async def _gather(self) -> list[Any]:
        """Buffer batches by documents, bytes and age: after the first one, wait at most
        `flush_interval_s` for more, unless the request is full before."""
        config = self._config
        first = await self._source.read(config.batch_max_docs, config.batch_max_bytes, 0.25)
        if first is None:
            return []
        batches = [first]
        docs, size = first.count, first.size
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.flush_interval_s
        while not self._stopping.is_set():
            room_docs = config.batch_max_docs - docs
            room_bytes = config.batch_max_bytes - size
            remaining = deadline - loop.time()
            # A read returns at least one block even if larger than asked: stop when little
            # room is left rather than overshoot by a whole block.
            if room_docs <= 0 or room_bytes < config.batch_max_bytes // 16 or remaining <= 0:
                break
            batch = await self._source.read(room_docs, room_bytes, remaining)
            if batch is None:
                break
            batches.append(batch)
            docs += batch.count
            size += batch.size
        return batches

    async def _deliver_batches(self, batches: list[Any]) -> None:
        bodies = [body for batch in batches for body in batch.bodies]
        count = sum(batch.count for batch in batches)
        # Every entry of a block has the target of the block's first entry: a block is one
        # container's append, and a container has one data stream.
        targets = {index_of(body) for body in bodies}
        try:
            response = await self._send_until_answered(bodies, targets)
        except _Split:
            await self._deliver(self._items_of(batches))
            return
        items = response.get("items")
        if (
            response.get("errors") is False
            and isinstance(items, list)
            and len(items) == count
            and _all_plain_successes(items)
        ):
            # Every item succeeded, and a successful `create` is 201 Created.
            telemetry.bulk_items.labels("201", "none", "none").inc(count)
            telemetry.records_shipped.inc(count)
            for batch in batches:
                self._acknowledge(batch, None)
            return
        outcomes = classify_bulk_response(response, count).outcomes
        await self._settle(self._items_of(batches), outcomes)

    def _acknowledge(self, batch: Any, outcomes: Outcomes | None) -> None:
        """`outcomes`: what became of each entry, gathered on its ticket; None: all stored."""
        if self._ledger is not None:
            self._ledger.acknowledged(batch, outcomes)
        self._source.ack(batch)

    def _items_of(self, batches: list[Any]) -> list[_Item]:
        items: list[_Item] = []
        for batch in batches:
            ticket = self._ticket(batch)
            items.extend(_Item(entry, ticket) for entry in batch.entries)
        return items

    def _ticket(self, batch: Any) -> Ticket:
        def acknowledge() -> None:
            self._acknowledge(batch, ticket.outcomes)

        ticket = Ticket(batch.count, acknowledge)
        return ticket

    async def _deliver(self, items: list[_Item]) -> None:
        """Sends items until each is settled or parked for a later retry."""
        try:
            response = await self._send_until_answered(
                [b"".join(item.entry for item in items)], {index_of(i.entry) for i in items}
            )
        except _Split:
            if len(items) == 1:
                # One document larger than the cluster accepts: it can never be indexed as is.
                await self._settle(items, [_TOO_LARGE])
                return
            telemetry.retries.labels("request_too_large").inc()
            middle = len(items) // 2
            await self._deliver(items[:middle])
            await self._deliver(items[middle:])
            return
        await self._settle(items, classify_bulk_response(response, len(items)).outcomes)

    async def _settle(self, items: list[_Item], outcomes: list[ItemOutcome]) -> None:
        counts: Counter[tuple[int, str, str]] = Counter()
        stored = parked = 0
        to_file: list[tuple[_Item, ItemOutcome]] = []
        auth_problem: ItemOutcome | None = None
        failure_stored: Counter[str] = Counter()  # by target stream
        for item, outcome in zip(items, outcomes, strict=True):
            counts[
                (outcome.status, outcome.error_type or "none", outcome.failure_store or "none")
            ] += 1
            if outcome.failure_store == "not_enabled" and self._config.failure_store == "on":
                self._failure_store_not_enabled(index_of(item.entry))
            if outcome.action is ItemAction.DONE:
                if outcome.in_failure_store:
                    failure_stored[index_of(item.entry)] += 1
                    _tally(item, FAILURE_STORED)
                elif item.fallback is None:
                    stored += 1
                    _tally(item, ALREADY_STORED if outcome.status == 409 else STORED)
                else:
                    _tally(item, DEAD_LETTERED)  # its dead letter is in the stream now
                item.ticket.settle()
            elif outcome.action is ItemAction.RETRY:
                parked += 1
                slow = outcome.status in AUTH_STATUSES
                if slow:
                    auth_problem = outcome
                self._retry_queue.park(
                    item.entry,
                    item.ticket,
                    item.attempt + 1,
                    min_delay_s=AUTH_MIN_DELAY_S if slow else 0.0,
                    fallback=item.fallback,
                )
            elif item.fallback is not None:
                to_file.append((item, outcome))  # the dead-letter stream refused it too
            else:
                dead_entry, document = self._dead_letters.dead_letter(item.entry, outcome)
                if dead_entry is None:
                    to_file.append((item, outcome))
                    item.fallback = document
                else:
                    # Sent with the next retry batch: this worker moves on.
                    self._retry_queue.park(dead_entry, item.ticket, 0, fallback=document)
        for (status, error_type, failure_store), number in counts.items():
            telemetry.bulk_items.labels(str(status), error_type, failure_store).inc(number)
        telemetry.records_shipped.inc(stored)
        for stream, number in failure_stored.items():
            events.elasticsearch.failure_store_used(data_stream=stream, records=number)
        if parked:
            events.elasticsearch.items_retried(items=parked, retry_queue=len(self._retry_queue))
        if auth_problem is not None:
            self._item_auth_at = time.monotonic()
            self._item_auth_error = (
                "Elasticsearch denied the shipper's user a privilege on an index "
                f"(HTTP {auth_problem.status} {auth_problem.error_type}: "
                f"{auth_problem.reason[:300]}); the documents are kept and retried"
            )
            events.elasticsearch.item_auth_denied(
                status=auth_problem.status,
                error_type=auth_problem.error_type,
                reason=auth_problem.reason,
            )
        for item, outcome in to_file:
            assert item.fallback is not None
            await self._dead_letters.to_file([item.fallback], outcome)
            _tally(item, DEAD_LETTERED)
            item.ticket.settle()

    def _failure_store_not_enabled(self, stream: str) -> None:
        if stream in self._failure_store_off:
            return
        self._failure_store_off.add(stream)
        events.elasticsearch.failure_store_not_enabled(data_stream=stream)

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
                await self._deliver([_Item(p.entry, p.ticket, p.attempt, p.fallback) for p in due])

    async def _send_until_answered(
        self, parts: Sequence[bytes], targets: set[str]
    ) -> dict[str, Any]:
        """The bulk response (filtered to statuses and errors) to the body `parts` make;
        retries whole-request failures without limit; raises _Split on 413."""
        backoff = Backoff(base_s=0.2, cap_s=self._config.retry_max_backoff_s)
        while True:
            started = time.monotonic()
            try:
                await self._templates.ensure(targets)
                response = await self._connection.bulk(parts)
            except RequestFailed as exc:
                telemetry.bulk_requests.labels("failed", str(exc.status or "none")).inc()
                if classify_request_failure(exc.status) is RequestAction.SPLIT:
                    raise _Split from exc
                delay = self._request_failed(exc, backoff, "bulk")
                telemetry.retries.labels("request_failed").inc()
                await asyncio.sleep(delay)
                continue
            telemetry.bulk_duration.observe(time.monotonic() - started)
            telemetry.bulk_requests.labels("answered", "200").inc()
            self._request_error = None
            self.last_success_monotonic = time.monotonic()
            return dict(response)

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
            elif exc.status == 403:
                cause = (
                    "Elasticsearch denied the shipper's user a privilege it needs (create_doc "
                    "and auto_configure on its data streams, manage_index_templates to install "
                    "templates)"
                )
            else:
                cause = (
                    f"Elasticsearch (or a proxy in front of it) refused the request as a whole "
                    f"with HTTP {exc.status}; check elasticsearch.hosts (scheme, host, path)"
                )
            self._request_error = f"{cause}: {exc}"
            events.elasticsearch.request_refused(
                auth=exc.status in AUTH_STATUSES,
                cause=cause,
                status=exc.status,
                error=exc,
                during=during,
                delay_s=delay,
            )
        else:
            self._request_error = str(exc)
            events.elasticsearch.request_failed(
                status=exc.status, error=exc, during=during, delay_s=delay
            )
        return delay

    async def _sleep(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)


def _all_plain_successes(items: list[Any]) -> bool:
    """No item of an `errors: false` answer went to a failure store. The usual all-created
    answer is recognised without parsing (every item is `CREATED_ITEM`, see `response.py`);
    any other is looked at item by item."""
    if not items or items[0] is CREATED_ITEM:
        return True
    return not any("failure_store" in item_result(item) for item in items)
