"""Rate limits: which quota a container gets, the pause bucket, the drop bucket and its
summaries (deterministic in the stream, exact across a save and restore of its state)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipper.config import parse_config
from shipper.model import ContainerMeta, LogRecord
from shipper.pipeline.encoder import container_document, container_key_of, decode_entry
from shipper.sources.checkpoint import Checkpoint, CheckpointStore
from shipper.sources.quota import (
    DropLimiter,
    PauseGate,
    QuotaSpec,
    parse_hint,
    resolve_quota,
    summary_entry,
)

S = 1_000_000_000


def _meta(labels: dict[str, str] | None = None, name: str = "web-1") -> ContainerMeta:
    return ContainerMeta("c0ffee" * 10 + "abcd", name, "shop/web:1", labels=labels or {})


def _rules(*rules: dict[str, object]) -> object:
    return parse_config(
        {"processing": {"rate_limit": {"rules": list(rules)}}}
    ).processing.rate_limit


def _records(stamps: list[int], size: int = 10) -> list[LogRecord]:
    return [LogRecord("c", ts, "stdout", 0, "x", size=size) for ts in stamps]


# -- which quota ------------------------------------------------------------------------------


def test_first_matching_rule_applies_and_matches_like_selection() -> None:
    rules = _rules(
        {"id": "db", "image": "postgres*", "lines_per_s": 10},
        {"id": "shop", "compose_project": "shop", "labels": ["tier=web"], "lines_per_s": 50},
        {"id": "all", "bytes_per_s": 1000, "action": "drop"},
    )
    shop = _meta({"com.docker.compose.project": "shop", "tier": "web"})
    assert resolve_quota(rules, shop) == (QuotaSpec("shop", 50.0, None, 5.0, "pause"), "")  # type: ignore[arg-type]
    other = _meta({"tier": "web"})
    assert resolve_quota(rules, other)[0] == QuotaSpec("all", None, 1000.0, 5.0, "drop")  # type: ignore[arg-type]
    assert resolve_quota(_rules(), other) == (None, "")  # type: ignore[arg-type]


def test_the_label_sets_a_quota_or_tightens_a_rule_never_lifts_it() -> None:
    rules = _rules({"id": "web", "name": "web-*", "lines_per_s": 100, "burst_s": 2})
    alone = _meta({"shipper.rate_limit": "bytes_per_s=512k,action=drop"}, name="db")
    assert resolve_quota(rules, alone)[0] == QuotaSpec("label", None, 524288.0, 5.0, "drop")  # type: ignore[arg-type]
    looser = _meta({"shipper.rate_limit": "lines_per_s=1000,burst_s=10"})
    assert resolve_quota(rules, looser)[0] == QuotaSpec("web+label", 100.0, None, 2.0, "pause")  # type: ignore[arg-type]
    tighter = _meta({"shipper.rate_limit": "lines_per_s=5, bytes_per_s=1m, action=drop"})
    assert resolve_quota(rules, tighter)[0] == QuotaSpec(  # type: ignore[arg-type]
        "web+label", 5.0, 1048576.0, 2.0, "drop"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("lines_per_s", "is not key=value"),
        ("lines=5", "unknown key 'lines'"),
        ("lines_per_s=many", "not a number"),
        ("lines_per_s=0", "lines_per_s must be greater than 0"),
        ("bytes_per_s=lots", "is not a size"),
        ("lines_per_s=5,action=block", "is not pause or drop"),
    ],
)
def test_a_bad_label_is_ignored_with_the_reason(text: str, problem: str) -> None:
    assert isinstance(parse_hint(text), str) and problem in str(parse_hint(text))
    spec, warning = resolve_quota(_rules(), _meta({"shipper.rate_limit": text}))  # type: ignore[arg-type]
    assert spec is None and problem in warning and "shipper.rate_limit" in warning


def test_a_label_without_a_limit_needs_a_rule() -> None:
    spec, warning = resolve_quota(_rules(), _meta({"shipper.rate_limit": "action=drop"}))  # type: ignore[arg-type]
    assert spec is None and "needs lines_per_s or bytes_per_s" in warning


# -- pause ------------------------------------------------------------------------------------


def test_pause_admits_the_burst_then_the_rate() -> None:
    gate = PauseGate(QuotaSpec("r", 10.0, None, 2.0, "pause"), now_s=0.0)
    assert gate.admit([1] * 50, 0.0) == (20, 0.0)  # the bucket: 10/s x 2 s
    admitted, wait = gate.admit([1] * 30, 0.0)
    assert admitted == 0 and wait == pytest.approx(0.1)  # one line's worth
    assert gate.admit([1] * 30, 0.5) == (5, 0.0)
    assert gate.admit([1] * 30, 10.0)[0] == 20  # refilled up to the bucket, no further


def test_pause_by_bytes_admits_a_record_larger_than_the_bucket_when_full() -> None:
    gate = PauseGate(QuotaSpec("r", None, 100.0, 1.0, "pause"), now_s=0.0)
    assert gate.admit([60, 60], 0.0) == (1, 0.0)
    admitted, wait = gate.admit([500], 0.0)
    assert admitted == 0 and wait == pytest.approx(0.6)  # until the bucket is full again
    assert gate.admit([500], 0.6) == (1, 0.0)  # in debt now: 400 bytes
    assert gate.admit([10], 4.0) == (0, pytest.approx(0.7))  # 400 owed, 340 back by then
    gate.refund(1, 500)
    assert gate.admit([10], 4.0) == (1, 0.0)


@given(st.lists(st.integers(1, 300), min_size=1, max_size=200), st.floats(1, 50))
def test_pause_keeps_the_average_rate(sizes: list[int], rate: float) -> None:
    """However the records come, what is admitted by time t is at most burst + rate x t."""
    spec = QuotaSpec("r", rate, None, 2.0, "pause")
    gate = PauseGate(spec, now_s=0.0)
    now, start = 0.0, 0
    while start < len(sizes):
        admitted, wait = gate.admit(sizes[start:], now)
        start += admitted
        assert start <= spec.line_capacity + rate * now + 1e-6
        now += wait
    assert now <= max(0.0, (len(sizes) - spec.line_capacity) / rate) + 1e-6


# -- drop -------------------------------------------------------------------------------------


def _drop(rate: float = 10.0, burst: float = 1.0, interval_s: int = 10) -> DropLimiter:
    return DropLimiter(QuotaSpec("r", rate, None, burst, "drop"), interval_s * S, None)


def test_drop_keeps_the_burst_then_the_rate_of_the_lines_own_timestamps() -> None:
    limiter = _drop()
    burst = limiter.decide(_records([S + i for i in range(25)]))  # 25 lines within 25 ns
    assert len(burst.kept) == 10 and burst.dropped_lines == 15 and not burst.summaries
    later = limiter.decide(_records([S + S // 2 + i for i in range(10)]))  # 0.5 s later
    assert len(later.kept) == 5 and later.dropped_lines == 5
    limiter.commit()


def test_a_backlog_read_at_once_is_judged_by_when_it_was_written() -> None:
    limiter = _drop(rate=10.0, burst=1.0)
    # 100 lines written at 5 lines/s (within quota), read in one batch long after.
    decision = limiter.decide(_records([S + i * S // 5 for i in range(100)]))
    assert decision.dropped_lines == 0 and len(decision.kept) == 100


def test_a_summary_per_interval_with_drops_when_the_next_begins() -> None:
    limiter = _drop(rate=1.0, burst=1.0, interval_s=10)
    first = limiter.decide(_records([10 * S + i for i in range(5)], size=7))
    assert first.dropped_lines == 4 and not first.summaries
    quiet = limiter.decide(_records([15 * S]))  # same interval, within quota
    assert quiet.kept and not quiet.summaries
    nxt = limiter.decide(_records([21 * S]))
    (summary,) = nxt.summaries
    assert (summary.window_start_ns, summary.window_end_ns) == (10 * S, 20 * S)
    assert (summary.first_ns, summary.last_ns, summary.lines, summary.bytes) == (
        10 * S + 1,
        10 * S + 4,
        4,
        28,
    )
    assert limiter.due_summary(10**20, 0) is None  # nothing dropped since


def test_a_quiet_containers_last_interval_is_summed_up_after_the_grace() -> None:
    limiter = _drop(rate=1.0, burst=1.0, interval_s=10)
    limiter.decide(_records([10 * S, 10 * S + 1]))
    assert limiter.due_summary(21 * S, 2 * S) is None  # the interval's lines may still come
    summary = limiter.due_summary(22 * S, 2 * S)
    assert summary is not None and summary.lines == 1
    assert limiter.due_summary(99 * S, 2 * S) is None


@given(
    st.lists(st.integers(0, 3 * S), min_size=1, max_size=120),
    st.lists(st.integers(1, 30), max_size=10),
    st.integers(0, 120),
)
def test_drop_decisions_depend_on_the_stream_not_on_batches_or_restarts(
    gaps: list[int], cuts: list[int], crash_at: int
) -> None:
    """Cut into any batches, with the state saved and restored (a restart) anywhere, the
    same lines are kept and the same summaries written."""
    stamps = []
    now = 100 * S
    for gap in gaps:
        now += gap // 7
        stamps.append(now)
    records = _records(stamps, size=3)
    spec = QuotaSpec("r", 3.0, 40.0, 2.0, "drop")

    def run(batches: list[int], restart_after: int | None) -> tuple[list[int], list[object]]:
        limiter = DropLimiter(spec, 5 * S, None)
        kept: list[int] = []
        summaries: list[object] = []
        start = 0
        for index, size in enumerate([*batches, len(records)]):
            part = records[start : start + size]
            start += size
            decision = limiter.decide(part)
            limiter.commit()
            kept += [r.timestamp_ns for r in decision.kept]
            summaries += decision.summaries
            if index == restart_after:
                limiter = DropLimiter(spec, 5 * S, limiter.committed)
        summary = limiter.due_summary(10**20, 0)
        return kept, [*summaries, *([summary] if summary else [])]

    whole = run([], None)
    assert run(cuts, crash_at % (len(cuts) + 1)) == whole
    kept, summaries = whole
    assert len(kept) + sum(s.lines for s in summaries) == len(records)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "spec",
    [
        QuotaSpec("r", 3.0, None, 1.0, "drop"),
        QuotaSpec("r", None, 50.0, 1.0, "drop"),
        QuotaSpec("r", 3.0, 50.0, 1.0, "drop"),
    ],
    ids=["lines", "bytes", "both"],
)
def test_the_state_survives_the_checkpoint_file(tmp_path: Path, spec: QuotaSpec) -> None:
    """Saved with a checkpoint and read back (JSON: no infinity for an unlimited dimension),
    the limiter decides what it would have decided without the restart."""
    records = _records([S + i * S // 7 for i in range(60)], size=11)
    whole = DropLimiter(spec, 2 * S, None)
    expected = whole.decide(records)
    first = DropLimiter(spec, 2 * S, None)
    kept = first.decide(records[:25]).kept
    first.commit()
    store = CheckpointStore(tmp_path)
    store.save({"c": Checkpoint(1, 0, first.committed)})
    restored = DropLimiter(spec, 2 * S, store.load()["c"].rate_limit)
    assert kept + restored.decide(records[25:]).kept == expected.kept


def test_rollback_makes_a_retry_decide_the_same() -> None:
    limiter = _drop(rate=1.0, burst=2.0)
    batch = _records([S + i for i in range(5)])
    first = limiter.decide(batch)
    limiter.rollback()
    again = limiter.decide(batch)
    assert (first.kept, first.dropped_lines) == (again.kept, again.dropped_lines)
    limiter.commit()
    assert limiter.decide(batch).dropped_lines == 5  # now the tokens are spent


def test_a_restored_state_is_capped_by_a_smaller_quota() -> None:
    limiter = _drop(rate=100.0, burst=1.0)
    limiter.decide(_records([S]))
    limiter.commit()
    smaller = DropLimiter(QuotaSpec("r", 2.0, None, 1.0, "drop"), 10 * S, limiter.committed)
    assert len(smaller.decide(_records([S + 1] * 5)).kept) == 2
    assert (
        DropLimiter(QuotaSpec("r", 2.0, None, 1.0, "drop"), S, (9, 1, 2))
        .decide(_records([S] * 5))
        .dropped_lines
        == 3
    )  # a state it does not know: it starts afresh


def test_the_summary_record_is_in_the_containers_stream_with_a_deterministic_id() -> None:
    meta = _meta()
    document = container_document(meta, index="logs-docker-default", host_name="node-7")
    limiter = DropLimiter(QuotaSpec("noisy", 1.0, None, 1.0, "drop"), 10 * S, None)
    limiter.decide(_records([10 * S + 5, 10 * S + 6, 10 * S + 9]))
    summary = limiter.due_summary(math.inf, 0)  # type: ignore[arg-type]
    assert summary is not None
    entry = summary_entry(document, summary)
    action, doc = decode_entry(entry)
    assert action["create"]["_id"] == f"{10 * S:016x}{meta.id[:16]}r0"
    assert container_key_of(entry) == meta.id[:16]
    assert doc["log"] == {"flags": ["rate_limited"]}
    assert doc["@timestamp"] == doc["event"]["start"] == "1970-01-01T00:00:10.000000006Z"
    assert doc["event"]["end"] == "1970-01-01T00:00:10.000000009Z"
    assert doc["shipper"]["rate_limit"] == {
        "dropped_lines": 2,
        "dropped_bytes": 20,
        "rule": "noisy",
    }
    assert doc["container"]["name"] == "web-1" and doc["host"]["name"] == "node-7"
    assert "2 line(s)" in doc["message"] and "'noisy': 1 lines/s, burst 1 s" in doc["message"]
