"""A follower's delivery counts lines and bytes read per stream from a batch's facts, found
with positional getters (or in C): they must keep pointing at the fields they name, and count
exactly what a plain loop would. Lines a multiline event held when the stream broke were
counted then: read again, they are not counted again (by identity), the others are."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shipper import telemetry
from shipper.model import LogRecord
from shipper.sources import batch_facts, delivery
from shipper.sources.intake import BufferIntake


def test_positional_getters_point_at_their_fields() -> None:
    record = LogRecord("c", 1, "stderr", 2, "m", ("truncated",), None, 9)
    assert batch_facts._TIMESTAMP_FIELD(record) == record.timestamp_ns
    assert batch_facts._STREAM_FIELD(record) == record.stream
    assert batch_facts._FLAGS_FIELD(record) == record.flags
    assert batch_facts._SIZE_FIELD(record) == record.size
    assert delivery._FLAGS_FIELD(record) == record.flags


def _value(counter: object, label: str) -> float:
    return telemetry.counter_total(counter.labels(label))  # type: ignore[attr-defined]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["stdout", "stderr"]),
            st.integers(0, 500),
            st.sampled_from([(), ("truncated",)]),
        ),
        max_size=40,
    ),
    st.sets(st.integers(0, 45), max_size=10),
)
def test_counts_per_stream_equal_a_plain_loop(
    lines: list[tuple[str, int, tuple[str, ...]]], held: set[int]
) -> None:
    records = [LogRecord("c", i, s, 0, "", f, None, n) for i, (s, n, f) in enumerate(lines)]
    subject = delivery.Delivery.__new__(delivery.Delivery)
    subject.container_id = "c"
    subject._intake = BufferIntake(None, str, "h", dict)  # type: ignore[arg-type]
    # Held lines by identity; some of them may not be in this batch (read later).
    subject._held_ahead = {(i, lines[i][0] if i < len(lines) else "stdout", 0) for i in held}
    before = {
        (name, stream): _value(metric, stream)
        for name, metric in (("lines", telemetry.lines_read), ("bytes", telemetry.bytes_read))
        for stream in ("stdout", "stderr")
    }
    facts = batch_facts.batch_facts(records)
    if facts is not None:  # delivery counts non-empty batches only
        subject._count(records, facts)
    counted = [r for r in records if r.timestamp_ns not in held]
    for stream in ("stdout", "stderr"):
        mine = [r for r in counted if r.stream == stream]
        assert _value(telemetry.lines_read, stream) - before[("lines", stream)] == len(mine)
        assert _value(telemetry.bytes_read, stream) - before[("bytes", stream)] == sum(
            r.size for r in mine
        )
    assert subject._held_ahead == {(i, "stdout", 0) for i in held if i >= len(records)}
    assert subject._intake.counts("c").lines_read == len(counted)
