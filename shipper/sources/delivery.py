"""What every source does with a container's records once it has decoded them.

Every follower, whatever runtime it reads (Docker's logs API or json-file logs, the CRI log
files), ends in the same thing: a container's records in stream order, read from a
checkpoint. From there on the handling is this one, shared:

1. skip the lines the checkpoint counts (they were taken before the read began);
2. run the container's processor (multiline, JSON, drop, redact);
3. hand the result to the intake, which returns once it is in the disk buffer (a full buffer
   or disk makes it wait, and reading pauses with it);
4. only then count the lines as taken in the container's `StreamPosition`, and with a
   multiline processor only up to the first line an event still holds (`_take_settled`):
   after a crash those lines are read again and the same event (same first line, same `_id`)
   is rebuilt;
5. report what was read (`Intake.read`) and what processing made of it (`Intake.processed`,
   before the records it describes are put), where metrics and accounting live; and when a
   stream ended, that everything the runtime held of it was handed over (`caught_up`).

A follower makes one `Delivery` per container and calls `begin` at every (re)read: the read
starts from the checkpoint with a fresh decoder and processor, exactly as after a restart of
the shipper, so a broken stream, a runtime restart and a shipper restart all resume the same
way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Protocol, TypeVar

from shipper import events, telemetry
from shipper.model import ContainerMeta, LogRecord, record_field
from shipper.pipeline.processor import ContainerProcessor
from shipper.pipeline.stats import ProcessorStats
from shipper.sources.batch_facts import BatchFacts, batch_facts, python_batch_facts
from shipper.sources.checkpoint import DEFAULT_SLACK_NS, Checkpoint, StreamPosition

# LogRecord's fields by position (it is a tuple): getters that run in C.
_FLAGS_FIELD = record_field("flags")

_Chunk = TypeVar("_Chunk")


class Intake(Protocol):
    """Where a follower's records go; `put` returns once they are durable enough to count.

    Every source reports to it what it read (`read`) and what processing made of it
    (`processed`, before the `put` of those records): metrics and accounting live there.
    """

    async def put(self, meta: ContainerMeta, records: list[LogRecord]) -> None: ...

    def read(self, container_id: str, facts: BatchFacts) -> None: ...

    def processed(self, container_id: str, stats: ProcessorStats, held_lines: int) -> None: ...

    def caught_up(self, container_id: str) -> None:
        """Everything the runtime holds of the container's run was handed over."""
        ...

    def container_changed(self, meta: ContainerMeta) -> None: ...

    def forget(self, container_id: str) -> None:
        """The container was destroyed: drop what is kept for it."""
        ...


class Delivery:
    """One container's records from its decoder to the intake, and its position."""

    def __init__(
        self,
        container_id: str,
        intake: Intake,
        start: Checkpoint | None,
        slack_ns: int = DEFAULT_SLACK_NS,
    ) -> None:
        self.container_id = container_id
        self._intake = intake
        self._slack_ns = slack_ns
        self.position = StreamPosition(start, slack_ns)
        self.processor: ContainerProcessor | None = None
        self.last_read_monotonic = 0.0
        # (timestamp_ns, stream, seq) of lines read but not yet counted as taken, in stream
        # order: only ever non-empty while a multiline event holds lines.
        self._untaken: list[tuple[int, str, int]] = []
        # Lines an earlier read's multiline events held when it ended: counted as read
        # then, read again now, and not counted again (by identity: lines of the other
        # stream in between were sent, and are sent, and counted, again).
        self._held_ahead: set[tuple[int, str, int]] = set()
        self._to_skip = 0  # lines of this read the checkpoint counts as taken already
        self._warned_hints = False

    def checkpoint(self) -> Checkpoint:
        return self.position.checkpoint()

    def begin(self, processor: ContainerProcessor) -> Checkpoint:
        """A new read from the checkpoint, through `processor`; returns where it starts."""
        start = self.position.checkpoint()
        # A fresh position from the checkpoint: the lines it skips are re-read and counted
        # again, exactly as after a restart of the shipper. Held multiline lines are re-read
        # too (they were never counted), so the processor starts afresh as well.
        self.position = StreamPosition(start, self._slack_ns)
        # Lines a multiline event held were counted as read but not taken: they are read
        # again now, and must not be counted twice.
        if self.processor is not None:
            self._held_ahead.update(self.processor.held_identities())
        self._untaken = []
        self._to_skip = start.skip
        self.processor = processor
        if processor.warnings and not self._warned_hints:
            self._warned_hints = True
            for warning in processor.warnings:
                events.sources.container_hint_ignored(
                    container_id=self.container_id, reason=warning
                )
        return start

    def skip_nothing(self) -> None:
        """The lines the checkpoint counts are not where this read starts (the files that
        held them are gone): skip none, rather than lines never taken. Those it counted, if
        read again, have the same `_id`s and are stored once."""
        self._to_skip = 0

    async def deliver(self, meta: ContainerMeta, records: list[LogRecord]) -> None:
        """The next records of the read, in stream order (see the module docstring)."""
        processor = self.processor
        assert processor is not None, "begin() first"
        if self._to_skip:
            skipped = records[: self._to_skip]
            records = records[self._to_skip :]
            self._to_skip -= len(skipped)
            self.position.take([record.timestamp_ns for record in skipped])
            if not records:
                return
        facts = batch_facts(records)
        assert facts is not None  # records is not empty here
        had_held = bool(self._held_ahead)
        self._count(records, facts)
        if processor.active:
            if processor.multiline is not None:
                self._untaken.extend((r.timestamp_ns, r.stream, r.seq) for r in records)
            out = processor.process(records)
            self._report(processor)
            if out:
                # A stage that changed nothing hands the very list back: its flags are known.
                flagged = facts.flagged if out is records else None
                await self._put_durably(meta, out, flagged)
            if processor.multiline is not None:
                self._take_settled(processor)
            else:
                self.position.take(facts.timestamps, facts.oldest, facts.newest)
        else:
            if had_held:
                self._report(processor)  # lines held before a reload turned joining off
            await self._put_durably(meta, records, facts.flagged)
            self.position.take(facts.timestamps, facts.oldest, facts.newest)
        self.last_read_monotonic = time.monotonic()

    async def flush_due(self, meta: ContainerMeta) -> None:
        """Multiline events whose time has come (a tick of `with_flush_ticks`)."""
        processor = self.processor
        assert processor is not None, "begin() first"
        out = processor.flush_due(time.monotonic())
        self._report(processor)
        if out:
            await self._put_durably(meta, out)
        self._take_settled(processor)

    async def finish(self, meta: ContainerMeta) -> None:
        """The container's stream ended, and all of it was delivered: events still held are
        complete now."""
        processor = self.processor
        assert processor is not None, "begin() first"
        held = processor.flush_all()
        self._report(processor)
        if held:
            await self._put_durably(meta, held)
        self._take_settled(processor)
        self._intake.caught_up(self.container_id)

    def _take_settled(self, processor: ContainerProcessor) -> None:
        """Counts as taken every read line before the first one a multiline event holds."""
        if not self._untaken:
            return
        heads = set(processor.pending_heads())
        cut = len(self._untaken)
        if heads:
            for index, identity in enumerate(self._untaken):
                if identity in heads:
                    cut = index
                    break
        if cut:
            self.position.take([ts for ts, _, _ in self._untaken[:cut]])
            del self._untaken[:cut]

    async def _put_durably(
        self, meta: ContainerMeta, records: list[LogRecord], flagged: bool | None = None
    ) -> None:
        """`flagged`: whether some record has flags, when the caller knows it already."""
        # Flags are counted on what is shipped: processing adds some (redacted, multiline).
        if any(map(_FLAGS_FIELD, records)) if flagged is None else flagged:
            by_flag: Counter[str] = Counter()
            for record in records:
                by_flag.update(record.flags)
            for flag, count in by_flag.items():
                telemetry.records_flagged.labels(flag).inc(count)
        # A full disk makes it wait (and reading with it) until there is space again.
        await self._intake.put(meta, records)

    def _count(self, records: list[LogRecord], facts: BatchFacts) -> None:
        if self._held_ahead:
            held = self._held_ahead
            fresh = []
            for record in records:
                identity = (record.timestamp_ns, record.stream, record.seq)
                if identity in held:
                    held.discard(identity)
                else:
                    fresh.append(record)
            if len(fresh) < len(records):
                if not fresh:
                    return
                facts = python_batch_facts(fresh)
        self._intake.read(self.container_id, facts)

    def _report(self, processor: ContainerProcessor) -> None:
        """Hands processing's counts on, with the lines held now: before the records they
        describe are put, so the accounting adds up while the put waits."""
        held = processor.held_lines() + len(self._held_ahead)
        self._intake.processed(self.container_id, processor.stats.take(), held)


async def with_flush_ticks(
    chunks: AsyncIterator[_Chunk], processor: ContainerProcessor
) -> AsyncGenerator[_Chunk | None, None]:
    """The stream's chunks, with `None` whenever a held multiline event is due.

    Waiting on a pending `__anext__` (never cancelling it) keeps the stream intact.
    """
    if processor.multiline is None:
        async for chunk in chunks:
            yield chunk
        return
    iterator = chunks.__aiter__()
    pending: asyncio.Future[_Chunk] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            deadline = processor.next_flush_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, _ = await asyncio.wait({pending}, timeout=timeout)
            if not done:
                yield None
                continue
            try:
                chunk = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield chunk
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                await pending
