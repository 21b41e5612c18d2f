"""Per-container accounting: the intake and the output keep counts that add up, per block on
the fast path; what the buffer held at start is counted from the buffer itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from shipper.accounting import ALREADY_STORED, DEAD_LETTERED, STORED, ContainerCounts, Ledger
from shipper.buffer import DiskBuffer
from shipper.buffer import format as fmt
from shipper.buffer.census import entries_by_key
from shipper.config import parse_config
from shipper.model import ContainerMeta, Destination, LogRecord
from shipper.pipeline.encoder import (
    container_document,
    container_key,
    container_key_of,
    encode_joined,
)
from shipper.pipeline.stats import ProcessorStats
from shipper.sources.batch_facts import batch_facts
from shipper.sources.intake import BufferIntake

A = "a" * 64
B = "b" * 64
S = 1_000_000_000


def _meta(container_id: str, labels: dict[str, str] | None = None) -> ContainerMeta:
    return ContainerMeta(container_id, f"c-{container_id[:4]}", "img", labels=labels or {})


def _records(container_id: str, count: int, start: int = S) -> list[LogRecord]:
    return [
        LogRecord(container_id, start + i, "stdout", 0, f"line {i}", size=7) for i in range(count)
    ]


@dataclass
class _Batch:
    blocks: list[fmt.Block]


def _block(container_id: str, count: int) -> fmt.Block:
    doc = container_document(_meta(container_id), index="logs-docker-default", host_name="h")
    joined = encode_joined(_records(container_id, count), doc)
    return fmt.Block(joined.data, tuple(joined.lengths))


def test_the_key_is_in_every_entry_of_the_container() -> None:
    block = _block(A, 3)
    assert {container_key_of(e) for e in block.entries()} == {container_key(A)} == {A[:16]}
    assert container_key("short") == "short___________"
    assert container_key_of(b"not an entry") == ""


def test_the_fast_path_counts_whole_blocks_as_stored() -> None:
    ledger = Ledger()
    ledger.of(A).buffered = 5
    ledger.of(B).buffered = 2
    ledger.acknowledged(_Batch([_block(A, 3), _block(B, 2), _block(A, 2)]), None)
    a, b = ledger.of(A), ledger.of(B)
    assert (a.stored, a.acknowledged, a.waiting, b.stored, b.waiting) == (5, 5, 0, 2, 0)


def test_per_item_outcomes_are_credited_when_the_block_is_acknowledged() -> None:
    ledger = Ledger()
    ledger.recovered({A[:16]: 4})
    ledger.acknowledged(
        _Batch([_block(A, 4)]),
        {(A[:16], STORED): 1, (A[:16], ALREADY_STORED): 2, (A[:16], DEAD_LETTERED): 1},
    )
    counts = ledger.of(A)
    assert (counts.recovered, counts.stored, counts.already_stored, counts.dead_lettered) == (
        4,
        1,
        2,
        1,
    )
    assert counts.waiting == 0 and counts.problems() == []
    assert ledger.check(buffer_records=0) == []


def test_an_outcome_missing_or_given_twice_breaks_the_invariant() -> None:
    ledger = Ledger()
    ledger.of(A).buffered = ledger.of(A).lines_read = 3
    ledger.acknowledged(_Batch([_block(A, 3)]), {(A[:16], STORED): 2})  # one got none
    assert any("buffered 3 + recovered 0 != stored 2" in p for p in ledger.check(0))
    other = Ledger()
    other.of(A).buffered = other.of(A).lines_read = 3
    # The buffer says one record is still there, the accounting says none waits.
    other.acknowledged(_Batch([_block(A, 3)]), None)
    assert other.check(buffer_records=1) == ["waiting 0 != the buffer's own count 1"]


def test_the_lines_invariant_names_every_term() -> None:
    counts = ContainerCounts(lines_read=10, joined=2, dropped_by_rule=1, buffered=8, summaries=1)
    assert counts.problems() == []
    counts.lines_read = 11
    (problem,) = counts.problems()
    assert problem.startswith("lines_read 11 != buffered 8 - summaries 1 + joined 2")


def test_a_removed_container_goes_once_nothing_of_it_waits() -> None:
    ledger = Ledger()
    ledger.of(A).buffered = 2
    ledger.container_gone(A)
    assert A[:16] in ledger.rows()  # two records still wait
    ledger.acknowledged(_Batch([_block(A, 2)]), None)
    assert A[:16] not in ledger.rows()
    assert ledger.departed.stored == 2 and ledger.totals().stored == 2


async def test_the_census_counts_what_the_buffer_holds_per_container(tmp_path: Path) -> None:
    buffer = DiskBuffer.open(
        tmp_path, max_bytes=1 << 30, segment_max_bytes=4096, fsync="never", block_max_entries=3
    )
    doc_a = container_document(_meta(A), index="logs-docker-default", host_name="h")
    doc_b = container_document(_meta(B), index="logs-other-default", host_name="h")
    await buffer.append(encode_joined(_records(A, 7), doc_a))  # three blocks
    await buffer.append(encode_joined(_records(B, 2), doc_b))
    await buffer.append(encode_joined(_records(A, 40, 2 * S), doc_a))  # rolls segments
    batch = await buffer.read(3, 1 << 20)
    assert batch is not None
    buffer.ack(batch)  # the first three of A's are gone
    await buffer.close()
    reopened = DiskBuffer.open(tmp_path, max_bytes=1 << 30, segment_max_bytes=4096, fsync="never")
    try:
        counts = entries_by_key(tmp_path, container_key_of)
        assert counts == {A[:16]: 44, B[:16]: 2}
        assert sum(counts.values()) == reopened.records_held
    finally:
        await reopened.close()


async def test_the_intake_counts_what_it_puts_and_what_sources_report(tmp_path: Path) -> None:
    buffer = DiskBuffer.open(tmp_path, max_bytes=1 << 30, segment_max_bytes=1 << 20, fsync="never")
    config = parse_config(
        {
            "processing": {
                "rate_limit": {
                    "rules": [{"id": "q", "labels": ["q"], "lines_per_s": 2, "burst_s": 1}],
                    "summary_interval_s": 1,
                    # everything else: drop quota via label below
                }
            }
        }
    )
    intake = BufferIntake(
        buffer, lambda meta: Destination("logs-docker-default"), "h", lambda: config.processing
    )
    meta = _meta(A, {"shipper.rate_limit": "lines_per_s=2,burst_s=1,action=drop"})
    records = _records(A, 5)
    facts = batch_facts(records)
    assert facts is not None
    intake.read(A, facts)
    stats = ProcessorStats()
    intake.processed(A, stats, held_lines=0)
    await intake.put(meta, records)
    await intake.put(meta, _records(A, 1, 3 * S))  # a later interval: the summary goes in
    intake.read(A, batch_facts(_records(A, 1, 3 * S)))  # type: ignore[arg-type]
    counts = intake.counts(A)
    assert (counts.lines_read, counts.buffered, counts.summaries, counts.dropped_by_quota) == (
        6,
        4,
        1,
        3,
    )
    assert counts.problems() == [] and buffer.records_held == 4
    assert intake.ledger.check(buffer.records_held) == []
    state = intake.limiter_state(A)
    # Committed as of the records in the buffer: the newest line, nothing dropped since the
    # summary.
    assert state is not None and (state[1], state[6]) == (3 * S, 0)
    await buffer.close()


@pytest.mark.parametrize("joined", [0, 3])
def test_processing_reports_count_joined_lines_and_drops(joined: int) -> None:
    intake = BufferIntake(None, str, "h", dict)  # type: ignore[arg-type]
    stats = ProcessorStats()
    stats.dropped["health"] += 2
    stats.multiline_events = 1 if joined else 0
    stats.multiline_lines = joined + 1 if joined else 0
    intake.processed(A, stats, held_lines=4)
    counts = intake.counts(A)
    assert (counts.dropped_by_rule, counts.joined, counts.held) == (2, joined, 4)
