"""Where every line went, per container, in numbers that add up.

Sources report to the intake (`sources/intake.py`: lines read, processed, held, put into the
buffer or dropped by a quota); the output reports what became of each buffer block it
acknowledged (`sinks/`); the buffer's contents at start are counted once (`recovered`). All
of it lands here, keyed by the container key every buffered entry carries in its `_id`
(`encoder.container_key`: the first 16 hex digits of the container id), so the output needs
no table of its own to say whose a block is: a block is one container's append.

What the numbers mean, per container, all **since this process started** except where said:

  lines_read        lines the source read (re-reads of lines a checkpoint already covers are
                    skipped and not counted; lines read again after a crash are: it is a new
                    process)
  joined            lines that went into a multiline event after its first line
  dropped_by_rule   records dropped by `processing.drop` rules
  dropped_by_quota  records dropped by a rate limit (action drop)
  held              lines read and not yet handed on: a multiline event still open, lines to
                    be read again after a reconnection, records on their way into the buffer
  buffered          records appended to the disk buffer (rate-limit summaries included)
  summaries         of which rate-limit summary records, which are not lines
  recovered         records of this container the disk buffer held when this process started
                    (appended by an earlier process, not acknowledged then): counted once at
                    start from the buffer itself (`buffer/census.py`)
  stored            records Elasticsearch answered 201 (or the console printed)
  already_stored    records answered 409: stored before, by an earlier attempt
  failure_stored    records Elasticsearch kept in the data stream's failure store (201 with
                    `failure_store: used`): stored, but as failures, not as log records
  dead_lettered     records that can never be indexed, now in the dead-letter stream or file
  waiting           records in the buffer not acknowledged yet (in a request, in the retry
                    queue, or not read yet): buffered + recovered - acknowledged

The two invariants, exact whenever the event loop is between tasks (a count moves in the
same step as the record it counts):

  buffered + recovered = stored + already_stored + failure_stored + dead_lettered + waiting
  lines_read = (buffered - summaries) + joined + dropped_by_rule + dropped_by_quota + held

Outcomes are credited when a block is acknowledged, from the per-item results gathered for
it (all 201 on the fast path, which does no per-item work), and `waiting` drops by the same
block's entries at the same moment: so the first invariant checks that every acknowledged
record got exactly one outcome. Its sum over containers is also checked against the buffer's
own record count (`Ledger.check`), which `waiting` does not read: a record that left the
buffer without an outcome, or one an outcome was given twice, shows there.

Across a restart (`kill -9` or not) the counts start again from zero, and what the buffer
still holds comes back as `recovered`. Records the previous process had appended and saw
stored but whose acknowledgement was not yet persisted are sent again and come back as
`already_stored`; lines it had read past its last saved checkpoint are read again and counted
again in `lines_read`. Nothing is counted twice within one process, and nothing is left out.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shipper import events, telemetry
from shipper.buffer.census import entries_by_key
from shipper.pipeline.encoder import container_key, container_key_of

STORED = "stored"
ALREADY_STORED = "already_stored"
FAILURE_STORED = "failure_stored"
DEAD_LETTERED = "dead_lettered"
OUTCOMES = (STORED, ALREADY_STORED, FAILURE_STORED, DEAD_LETTERED)

Outcomes = Mapping[tuple[str, str], int]  # (container key, outcome) -> records


@dataclass(slots=True)
class ContainerCounts:
    lines_read: int = 0
    joined: int = 0
    dropped_by_rule: int = 0
    dropped_by_quota: int = 0
    held_lines: int = 0  # held by the source (multiline, to be re-read): a gauge
    in_flight: int = 0  # records handed to the intake, not yet in the buffer: a gauge
    buffered: int = 0
    summaries: int = 0
    recovered: int = 0
    stored: int = 0
    already_stored: int = 0
    failure_stored: int = 0
    dead_lettered: int = 0
    acknowledged: int = 0  # records whose buffer block was acknowledged

    @property
    def waiting(self) -> int:
        return self.buffered + self.recovered - self.acknowledged

    @property
    def held(self) -> int:
        return self.held_lines + self.in_flight

    @property
    def settled(self) -> int:
        return self.stored + self.already_stored + self.failure_stored + self.dead_lettered

    def problems(self) -> list[str]:
        """The invariants that do not hold (empty: the numbers add up)."""
        found = []
        if self.buffered + self.recovered != self.settled + self.waiting:
            found.append(
                f"buffered {self.buffered} + recovered {self.recovered} != stored "
                f"{self.stored} + already_stored {self.already_stored} + failure_stored "
                f"{self.failure_stored} + dead_lettered {self.dead_lettered} + waiting "
                f"{self.waiting}"
            )
        lines = (
            self.buffered
            - self.summaries
            + self.joined
            + self.dropped_by_rule
            + self.dropped_by_quota
            + self.held
        )
        if self.lines_read != lines:
            found.append(
                f"lines_read {self.lines_read} != buffered {self.buffered} - summaries "
                f"{self.summaries} + joined {self.joined} + dropped_by_rule "
                f"{self.dropped_by_rule} + dropped_by_quota {self.dropped_by_quota} + held "
                f"{self.held}"
            )
        if self.waiting < 0:
            found.append(f"waiting {self.waiting} is negative")
        return found

    def as_dict(self) -> dict[str, int]:
        return {
            "lines_read": self.lines_read,
            "joined": self.joined,
            "dropped_by_rule": self.dropped_by_rule,
            "dropped_by_quota": self.dropped_by_quota,
            "held": self.held,
            "buffered": self.buffered,
            "summaries": self.summaries,
            "recovered": self.recovered,
            "stored": self.stored,
            "already_stored": self.already_stored,
            "failure_stored": self.failure_stored,
            "dead_lettered": self.dead_lettered,
            "waiting": self.waiting,
        }

    def add(self, other: ContainerCounts) -> None:
        for item in dataclasses.fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))


class _Block(Protocol):
    @property
    def data(self) -> bytes: ...

    @property
    def count(self) -> int: ...


class _Batch(Protocol):
    @property
    def blocks(self) -> Sequence[_Block]: ...


class Ledger:
    """Every container's counts; containers that are gone are folded into `departed` once
    nothing of theirs waits any more, so memory stays bounded on a host with churn."""

    def __init__(self) -> None:
        self.started_at_ns = time.time_ns()
        self._counts: dict[str, ContainerCounts] = {}
        self._gone: set[str] = set()
        self.departed = ContainerCounts()  # the sum of containers no longer listed
        self.recovered_total = 0  # records the buffer held at start (all containers)

    def of(self, container_id: str) -> ContainerCounts:
        """The counts of a container (by its id, or by its key)."""
        key = container_key(container_id)
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = ContainerCounts()
        self._gone.discard(key)
        return counts

    def recovered(self, by_key: Mapping[str, int]) -> None:
        """What the buffer held at start, per container key (once, before anything runs)."""
        for key, records in by_key.items():
            self.of(key).recovered += records
            self.recovered_total += records

    def acknowledged(self, batch: _Batch, outcomes: Outcomes | None) -> None:
        """A buffer batch is acknowledged: `outcomes` per (key, outcome), or None when every
        record of it was stored (the fast path: per block, never per record)."""
        counts_of = self._counts
        for block in batch.blocks:
            key = container_key_of(block.data)
            counts = counts_of.get(key) or self.of(key)
            counts.acknowledged += block.count
            if outcomes is None:
                counts.stored += block.count
        if outcomes:
            for (key, outcome), records in outcomes.items():
                counts = counts_of.get(key) or self.of(key)
                if outcome == STORED:
                    counts.stored += records
                elif outcome == ALREADY_STORED:
                    counts.already_stored += records
                elif outcome == FAILURE_STORED:
                    counts.failure_stored += records
                else:
                    counts.dead_lettered += records
        if self._gone:
            for block in batch.blocks:
                self._fold_if_done(container_key_of(block.data))

    def container_gone(self, container_id: str) -> None:
        """The container was removed: its row goes once nothing of it waits or is held."""
        key = container_key(container_id)
        if key in self._counts:
            self._gone.add(key)
            self._fold_if_done(key)

    def _fold_if_done(self, key: str) -> None:
        counts = self._counts.get(key)
        if key in self._gone and counts is not None and counts.waiting == 0 and not counts.held:
            self.departed.add(counts)
            del self._counts[key]
            self._gone.discard(key)

    def rows(self) -> dict[str, ContainerCounts]:
        return dict(self._counts)

    def totals(self) -> ContainerCounts:
        total = ContainerCounts()
        total.add(self.departed)
        for counts in self._counts.values():
            total.add(counts)
        return total

    def check(self, buffer_records: int) -> list[str]:
        """Every invariant that does not hold now, per container and against the buffer."""
        found = [f"{key}: {p}" for key, c in self._counts.items() for p in c.problems()]
        totals = self.totals()
        # While an append is under way the buffer counts its records before the intake
        # does: compare only between appends.
        if not totals.in_flight and totals.waiting != buffer_records:
            found.append(f"waiting {totals.waiting} != the buffer's own count {buffer_records}")
        return found


def keys(container_ids: Iterable[str]) -> dict[str, str]:
    """Container key -> container id, to show a key's row under its container."""
    return {container_key(cid): cid for cid in container_ids}


def at_start(buffer_dir: Path, buffer_records: int) -> Ledger:
    """The accounting of a new process, with what the buffer (at `buffer_dir`, holding
    `buffer_records`) kept from an earlier run, per container."""
    ledger = Ledger()
    if buffer_records:
        ledger.recovered(entries_by_key(buffer_dir, container_key_of))
        if ledger.recovered_total != buffer_records:
            events.storage.recovered_count_differs(
                counted=ledger.recovered_total, buffer_records=buffer_records
            )
    telemetry.buffer_records_recovered.set(ledger.recovered_total)
    return ledger
