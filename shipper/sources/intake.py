"""Where every source's records go: quotas applied, encoded once, appended to the disk buffer.

`BufferIntake` is the `Intake` a follower hands its records to (see `follower.py`); every
source (Docker's follower, the CRI source next) goes through it, so what is done here is
done for all of them:

* `put` returns once the records are in the buffer (a full buffer or a full disk makes it
  wait, and reading pauses with it: the runtime keeps the logs), so a follower counts lines
  as taken only after this. It holds reading while checkpoints cannot be saved.
* A container's rate limit (`quota.py`) is applied here: `pause` makes `put` wait for the
  container's quota (its follower then reads no further), `drop` filters the records and
  adds the interval's summary record to the container's stream.
* It watches each container's write rate against how far behind reading is (rotation
  risk), and says when a rate limit is what holds a container back.
* Sources report what they read and what processing did with it (`read`, `processed`), and
  `put` what went into the buffer: the per-container accounting (`accounting.py`) and the
  metrics are kept here, once for every source.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from shipper import events, telemetry
from shipper.accounting import ContainerCounts, Ledger
from shipper.backoff import Backoff
from shipper.buffer import DiskBuffer
from shipper.buffer.format import JoinedEntries
from shipper.config import RATE_LIMIT_DROP_REASON, ProcessingConfig, RateLimitConfig
from shipper.errors import DiskFullError
from shipper.model import ContainerMeta, Destination, LogRecord, record_field
from shipper.pipeline.encoder import ContainerDocument, container_document, encode_joined
from shipper.pipeline.metadata import container_fields
from shipper.pipeline.stats import ProcessorStats
from shipper.sources.batch_facts import BatchFacts
from shipper.sources.checkpoint import LimiterState
from shipper.sources.quota import (
    ContainerQuota,
    DropLimiter,
    DropSummary,
    PauseGate,
    QuotaSpec,
    resolve_quota,
    summary_entry,
)
from shipper.sources.rotation import RotationWatch

_SIZE_FIELD = record_field("size")
# A quiet container's last interval is summed up once the clock is this far past its end and
# nothing was put for the container for as long: lines stamped in it may still be on their
# way (Docker's stdout/stderr jitter, a slow read, a reconnection). The interval's length,
# within these bounds: a summary written too early cannot be written again (its _id exists),
# so lines of its interval read after it would be counted in metrics but in no summary.
SUMMARY_GRACE_MIN_S = 2.0
SUMMARY_GRACE_MAX_S = 60.0


@dataclass(slots=True)
class _QuotaEntry:
    config: RateLimitConfig
    meta: ContainerMeta
    quota: ContainerQuota | None


class BufferIntake:
    """Applies quotas, encodes a container's records once and appends them to the buffer."""

    def __init__(
        self,
        buffer: DiskBuffer,
        route: Callable[[ContainerMeta], Destination],
        host_name: str,
        processing: Callable[[], ProcessingConfig],
        *,
        ledger: Ledger | None = None,
        rate_limits: bool = True,
        limiter_states: Mapping[str, LimiterState] | None = None,
    ) -> None:
        self._buffer = buffer
        # The container's data stream and ingest pipeline (labels, routing rules, defaults).
        self._route = route
        self._host_name = host_name
        self._processing = processing
        self._documents: dict[str, ContainerDocument] = {}
        self._metas: dict[str, ContainerMeta] = {}
        # Per-container accounting; a throwaway ledger when nobody reads one (backfill).
        self.ledger = ledger if ledger is not None else Ledger()
        self._counts: dict[str, ContainerCounts] = {}
        # Rate limits (off for `shipper backfill`, which is run on purpose).
        self._rate_limits = rate_limits
        self._quotas: dict[str, _QuotaEntry] = {}
        self._saved_states = dict(limiter_states or {})  # until each container is seen
        self._putting: set[str] = set()  # a put is under way
        # Held from a drop limiter's decision to its commit (a put, or a summary written by
        # the clock), so the two never interleave on one container's limiter.
        self._limiter_locks: dict[str, asyncio.Lock] = {}
        # When records were last put for a container, or its source said it had read all:
        # a summary waits until the container was quiet for the grace.
        self._last_put: dict[str, float] = {}
        self._gone: set[str] = set()  # destroyed, their last summary still to write
        # Sees each container's write rate and how far behind reading is (rotation risk).
        self.rotation = RotationWatch()
        # Cleared while checkpoints cannot be saved (disk full): reading pauses then, as it
        # does when the buffer cannot be written, instead of running ever further ahead of
        # the last saved position.
        self.open = asyncio.Event()
        self.open.set()

    def container_changed(self, meta: ContainerMeta) -> None:
        self.rotation.container_changed(meta)
        self._metas[meta.id] = meta
        self._gone.discard(meta.id)
        destination = self._route(meta)
        self._documents[meta.id] = container_document(
            meta,
            index=destination.index,
            pipeline=destination.pipeline,
            host_name=self._host_name,
            extra_fields=container_fields(meta, self._processing()),
        )

    def container_names(self) -> dict[str, str]:
        """Names of the containers records were handed over for (followed or not any more)."""
        return {cid: meta.name for cid, meta in self._metas.items()}

    # -- what sources report ---------------------------------------------------------------

    def counts(self, container_id: str) -> ContainerCounts:
        counts = self._counts.get(container_id)
        if counts is None:
            counts = self._counts[container_id] = self.ledger.of(container_id)
        return counts

    def read(self, container_id: str, facts: BatchFacts) -> None:
        """Lines a source read (not those it skipped as covered by its checkpoint)."""
        if facts.stdout_lines:
            telemetry.lines_read.labels("stdout").inc(facts.stdout_lines)
            telemetry.bytes_read.labels("stdout").inc(facts.stdout_bytes)
        if facts.stderr_lines:
            telemetry.lines_read.labels("stderr").inc(facts.stderr_lines)
            telemetry.bytes_read.labels("stderr").inc(facts.stderr_bytes)
        self.counts(container_id).lines_read += len(facts.timestamps)

    def processed(self, container_id: str, stats: ProcessorStats, held_lines: int) -> None:
        """What processing did since the last report, and how many lines the source holds
        now (an open multiline event, lines to read again). Report before the `put` of the
        records processed, so the accounting adds up while that `put` waits."""
        counts = self.counts(container_id)
        for rule, count in stats.dropped.items():
            telemetry.records_dropped.labels(rule).inc(count)
            counts.dropped_by_rule += count
        for rule, count in stats.redacted.items():
            telemetry.records_redacted.labels(rule).inc(count)
        for reason, count in stats.json_errors.items():
            telemetry.json_errors.labels(reason).inc(count)
        if stats.json_parsed:
            telemetry.json_parsed.inc(stats.json_parsed)
        if stats.multiline_events:
            telemetry.multiline_events.inc(stats.multiline_events)
            counts.joined += stats.multiline_lines - stats.multiline_events
        counts.held_lines = held_lines

    # -- into the buffer -------------------------------------------------------------------

    async def put(self, meta: ContainerMeta, records: list[LogRecord]) -> None:
        document = self._documents.get(meta.id)
        if document is None:
            self.container_changed(meta)
            document = self._documents[meta.id]
        counts = self.counts(meta.id)
        before = counts.in_flight  # 0: a source puts one batch of a container at a time
        counts.in_flight += len(records)
        self._putting.add(meta.id)
        try:
            quota = self._quota(meta)
            if quota is not None and quota.gate is not None:
                await self._put_paced(meta, document, quota.gate, records, counts)
            elif quota is not None and quota.limiter is not None:
                await self._put_limited(meta, document, quota.limiter, records, counts)
            else:
                entries = encode_joined(records, document)
                await self._ready(meta)
                await self._append(meta, entries)
                self._buffered(counts, len(records), len(records))
                self.rotation.put_finished(meta.id, records, time.monotonic())
        finally:
            # Records not in the buffer (the put was cancelled) are not in flight any more.
            counts.in_flight = before
            self._putting.discard(meta.id)
            self._last_put[meta.id] = time.monotonic()

    async def _ready(self, meta: ContainerMeta) -> None:
        if not self.open.is_set():
            await self.open.wait()
        self.rotation.put_started(meta.id, time.monotonic())

    async def _append(self, meta: ContainerMeta, entries: JoinedEntries) -> None:
        """Appends, waiting while the disk is full: nothing was taken then, and reading stays
        paused (the runtime keeps the logs) until there is space again."""
        backoff = Backoff(base_s=0.5, cap_s=10.0)
        while True:
            try:
                await self._buffer.append(entries)
                return
            except DiskFullError as exc:
                events.storage.disk_full(container_id=meta.id, error=exc)
                await asyncio.sleep(backoff.next_delay_s())

    def _buffered(
        self, counts: ContainerCounts, handed: int, entries: int, summaries: int = 0
    ) -> None:
        """`handed` records of a put are settled: `entries` went into the buffer."""
        counts.in_flight -= handed
        counts.buffered += entries
        counts.summaries += summaries
        counts.dropped_by_quota += handed - (entries - summaries)
        telemetry.records_buffered.inc(entries)

    async def _put_paced(
        self,
        meta: ContainerMeta,
        document: ContainerDocument,
        gate: PauseGate,
        records: list[LogRecord],
        counts: ContainerCounts,
    ) -> None:
        """`pause`: the records go in as fast as the container's quota admits them."""
        sizes = list(map(_SIZE_FIELD, records))
        start = 0
        while start < len(records):
            await self._ready(meta)
            admitted, wait = gate.admit(sizes[start:], time.monotonic())
            if not admitted:
                await self._held_back(meta, gate, wait)
                continue
            end = start + admitted
            try:
                await self._append(meta, encode_joined(records[start:end], document))
            except BaseException:
                gate.refund(admitted, sum(sizes[start:end]))
                raise
            self._buffered(counts, admitted, admitted)
            # Taken piece by piece: the write rate and the lag behind show while held back.
            self.rotation.put_finished(meta.id, records[start:end], time.monotonic())
            start = end

    async def _held_back(self, meta: ContainerMeta, gate: PauseGate, wait: float) -> None:
        events.sources.rate_limit_pause(
            container_id=meta.id, container_name=meta.name, rate_limit=gate.spec.describe()
        )
        self.rotation.throttled(meta.id, True)
        started = time.monotonic()
        try:
            await asyncio.sleep(wait)
        finally:
            self.rotation.throttled(meta.id, False)
            telemetry.rate_limit_pause_seconds.inc(time.monotonic() - started)

    async def _put_limited(
        self,
        meta: ContainerMeta,
        document: ContainerDocument,
        limiter: DropLimiter,
        records: list[LogRecord],
        counts: ContainerCounts,
    ) -> None:
        """`drop`: what is over the quota is dropped; the summaries of intervals that closed
        go in with the records kept."""
        await self._ready(meta)
        async with self._limiter_lock(meta.id):
            decision = limiter.decide(records)
            kept = decision.kept
            entries = _with_summaries(
                encode_joined(kept, document) if kept else None, document, decision.summaries
            )
            try:
                if entries.lengths:
                    await self._append(meta, entries)
            except BaseException:
                limiter.rollback()  # a retry of the same records decides the same
                raise
            limiter.commit()
        self._dropped(meta, len(records) - len(kept))
        self._buffered(counts, len(records), len(entries.lengths), len(decision.summaries))
        self.rotation.put_finished(meta.id, records, time.monotonic())

    def _quota(self, meta: ContainerMeta) -> ContainerQuota | None:
        """The container's quota in force: resolved again when the config (a reload) or the
        container's metadata changed; a drop limiter keeps its state across that."""
        if not self._rate_limits:
            return None
        config = self._processing().rate_limit
        entry = self._quotas.get(meta.id)
        if entry is not None and entry.config is config and entry.meta is meta:
            return entry.quota
        spec, warning = resolve_quota(config, meta)
        if warning and (entry is None or entry.meta.hints != meta.hints):
            events.sources.container_label_ignored(container_id=meta.id, reason=warning)
        quota = entry.quota if entry is not None else None
        if quota is None or quota.spec != spec:
            quota = self._new_quota(meta, spec, quota, config)
        self._quotas[meta.id] = _QuotaEntry(config, meta, quota)
        return quota

    def _new_quota(
        self,
        meta: ContainerMeta,
        spec: QuotaSpec | None,
        old: ContainerQuota | None,
        config: RateLimitConfig,
    ) -> ContainerQuota | None:
        state = self._saved_states.pop(meta.id, None)
        if old is not None and old.limiter is not None:
            state = old.limiter.committed
        if spec is None:
            return None
        events.sources.rate_limit_applies(
            container_id=meta.id,
            container_name=meta.name,
            rate_limit=spec.describe(),
            action=spec.action,
        )
        interval_ns = int(config.summary_interval_s * 1e9)
        return ContainerQuota(spec, interval_ns, time.monotonic(), state)

    def _dropped(self, meta: ContainerMeta, dropped: int) -> None:
        if not dropped:
            return
        events.sources.rate_limit_dropped(
            container_id=meta.id,
            container_name=meta.name,
            dropped=dropped,
            reason=RATE_LIMIT_DROP_REASON,
        )

    # -- summaries of quiet and removed containers -----------------------------------------

    def caught_up(self, container_id: str) -> None:
        """The source handed over everything the runtime holds of the container's run (a
        stopped container read to its end): an interval left open by an earlier run of the
        shipper may be summed up once the grace is over, although nothing was put now."""
        self._last_put[container_id] = time.monotonic()

    async def write_due_summaries(self, now_ns: int, *, removed_only: bool = False) -> int:
        """Writes the summary records of intervals that are over for containers that went
        quiet (or were removed); returns how many. Called now and then, and at shutdown
        (`removed_only`: the others' counts are saved with their checkpoints)."""
        written = 0
        grace_s = min(
            SUMMARY_GRACE_MAX_S,
            max(SUMMARY_GRACE_MIN_S, self._processing().rate_limit.summary_interval_s),
        )
        grace_ns = int(grace_s * 1e9)
        now = time.monotonic()
        # Containers put for by this process, and those whose source read everything while
        # the limiter state an earlier process saved still waits (nothing was put now).
        restored = [cid for cid in self._saved_states if cid in self._last_put]
        for container_id in [*self._limited(), *restored]:
            if container_id in self._putting or self._limiter_lock(container_id).locked():
                continue
            gone = container_id in self._gone
            if removed_only and not gone:
                continue
            meta = self._metas.get(container_id)
            document = self._documents.get(container_id)
            if meta is None or document is None:
                continue
            quota = self._quota(meta)  # restores a saved state; the quota in force
            limiter = quota.limiter if quota is not None else None
            if limiter is None:
                continue
            if not gone and now - self._last_put.get(container_id, now) < grace_s:
                continue
            async with self._limiter_lock(container_id):
                summary = limiter.due_summary(now_ns if not gone else 1 << 62, grace_ns)
                if summary is not None:
                    await self._write_summary(container_id, document, limiter, summary)
                    written += 1
            if gone:
                self._forget(container_id)
        return written

    def _limited(self) -> Iterator[str]:
        for container_id, entry in self._quotas.items():
            if entry.quota is not None and entry.quota.limiter is not None:
                yield container_id

    def _limiter_lock(self, container_id: str) -> asyncio.Lock:
        lock = self._limiter_locks.get(container_id)
        if lock is None:
            lock = self._limiter_locks[container_id] = asyncio.Lock()
        return lock

    async def _write_summary(
        self,
        container_id: str,
        document: ContainerDocument,
        limiter: DropLimiter,
        summary: DropSummary,
    ) -> None:
        """One append (no waiting for disk space: the caller comes back later)."""
        try:
            await self._buffer.append(JoinedEntries.of([summary_entry(document, summary)]))
        except BaseException:
            limiter.rollback()
            raise
        limiter.commit()
        counts = self.counts(container_id)
        telemetry.records_buffered.inc(1)
        counts.buffered += 1
        counts.summaries += 1

    def rate_limits(self) -> dict[str, dict[str, object]]:
        """Per container id, the quota in force (for /status)."""
        report: dict[str, dict[str, object]] = {}
        for container_id, entry in self._quotas.items():
            quota = entry.quota
            if quota is None:
                continue
            item: dict[str, object] = {
                "rule": quota.spec.rule,
                "limit": quota.spec.describe(),
                "action": quota.spec.action,
            }
            if quota.limiter is not None:
                item["dropped_since_summary"] = quota.limiter.dropped_since_summary
            report[container_id] = item
        return report

    def limiter_state(self, container_id: str) -> LimiterState | None:
        """A container's drop limiter as of the records in the buffer, to save with its
        checkpoint (`CheckpointBook.keep_limiter_states`)."""
        entry = self._quotas.get(container_id)
        if entry is None:
            return self._saved_states.get(container_id)
        if entry.quota is None or entry.quota.limiter is None:
            return None
        return entry.quota.limiter.committed

    def forget(self, container_id: str) -> None:
        """The container was destroyed: drop what is kept for it (once its last summary is
        written, if it has one to write)."""
        self._saved_states.pop(container_id, None)
        entry = self._quotas.get(container_id)
        if entry is not None and entry.quota is not None and entry.quota.limiter is not None:
            self._gone.add(container_id)  # write_due_summaries writes it, then forgets
            return
        self._forget(container_id)

    def _forget(self, container_id: str) -> None:
        self.ledger.container_gone(container_id)
        self._gone.discard(container_id)
        self._documents.pop(container_id, None)
        self._metas.pop(container_id, None)
        self._quotas.pop(container_id, None)
        self._limiter_locks.pop(container_id, None)
        self._last_put.pop(container_id, None)
        self._counts.pop(container_id, None)
        self.rotation.forget(container_id)


def _with_summaries(
    entries: JoinedEntries | None, document: ContainerDocument, summaries: list[DropSummary]
) -> JoinedEntries:
    """The kept records' entries, with the summaries that closed before them added."""
    if not summaries:
        return entries if entries is not None else JoinedEntries(b"", [])
    extra = [summary_entry(document, summary) for summary in summaries]
    if entries is None:
        return JoinedEntries.of(extra)
    return JoinedEntries(b"".join([entries.data, *extra]), [*entries.lengths, *map(len, extra)])
