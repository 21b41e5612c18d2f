"""A follower's delivery counts lines and bytes read per stream from a batch's facts, found
with positional getters (or in C): they must keep pointing at the fields they name, and count
exactly what a plain loop would."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shipper import telemetry
from shipper.model import LogRecord
from shipper.sources import batch_facts, delivery


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
    st.integers(0, 10),
)
def test_counts_per_stream_equal_a_plain_loop(
    lines: list[tuple[str, int, tuple[str, ...]]], ahead: int
) -> None:
    records = [LogRecord("c", i, s, 0, "", f, None, n) for i, (s, n, f) in enumerate(lines)]
    subject = delivery.Delivery.__new__(delivery.Delivery)
    subject._counted_ahead = ahead
    before = {
        (name, stream): _value(metric, stream)
        for name, metric in (("lines", telemetry.lines_read), ("bytes", telemetry.bytes_read))
        for stream in ("stdout", "stderr")
    }
    facts = batch_facts.batch_facts(records)
    if facts is not None:  # delivery counts non-empty batches only
        subject._count(records, facts)
    counted = records[ahead:]
    for stream in ("stdout", "stderr"):
        mine = [r for r in counted if r.stream == stream]
        assert _value(telemetry.lines_read, stream) - before[("lines", stream)] == len(mine)
        assert _value(telemetry.bytes_read, stream) - before[("bytes", stream)] == sum(
            r.size for r in mine
        )
    assert subject._counted_ahead == max(0, ahead - len(records))
