"""The per-line rules every source shares (shipper/lines), as each runtime's reader uses them.

Docker's readers are tested through their decoders (test_frames.py, test_jsonfile.py); these
tests pin the rules themselves, including the forms the CRI log files have: RFC3339Nano with
trimmed zeros and a local offset, and `P` parts that each carry their own timestamp.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipper.lines.assembler import LineAssembler
from shipper.lines.seq import SeqCounter
from shipper.lines.timestamps import TimestampError, format_timestamp, parse_timestamp
from shipper.model import STDERR, STDOUT, LogRecord

CID = "c" * 64
T0 = 1_795_839_223_517_053_725  # 2026-11-28T04:13:43.517053725Z

# ---- timestamps


def test_every_width_of_rfc3339nano_parses_to_the_same_nanoseconds() -> None:
    assert parse_timestamp(b"2026-11-28T04:13:43.517053725Z") == T0
    assert parse_timestamp(b"2026-11-28T04:13:43.51705372Z") == T0 - 5
    assert parse_timestamp(b"2026-11-28T04:13:43.5Z") == T0 - 17_053_725
    assert parse_timestamp(b"2026-11-28T04:13:43Z") == T0 - 517_053_725
    assert parse_timestamp(b"2026-11-28T04:13:43.000000001Z") == T0 - 517_053_724


def test_a_local_offset_is_normalised_to_utc_with_every_nanosecond() -> None:
    # The CRI files are stamped in the node's zone where it is not UTC.
    assert parse_timestamp(b"2026-11-27T21:13:43.517053725-07:00") == T0
    assert parse_timestamp(b"2026-11-28T05:43:43.517053725+01:30") == T0
    assert parse_timestamp(b"2026-11-28T04:13:43.5170537+00:00") == T0 - 25
    assert parse_timestamp(b"2026-11-28T00:00:00-00:00") == parse_timestamp(b"2026-11-28T00:00:00Z")


def test_a_fraction_longer_than_nanoseconds_keeps_its_first_nine_digits() -> None:
    assert parse_timestamp(b"2026-11-28T04:13:43.5170537259Z") == T0


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not a time",
        b"2026-11-28 04:13:43Z",
        b"2026-13-28T04:13:43Z",
        b"2026-11-28T04:13:43",
        b"2026-11-28T04:13:43.5",
        b"2026-11-28T04:13:43.5z",
        b"2026-11-28T04:13:43.5+0100",
        b"2026-11-28T04:13:43.5+ab:cd",  # was a ValueError from int(), not a TimestampError
        b"2026-11-28T04:13:43.5+-1:00",
        b"2026-11-28T04:13:43.5+ 1:00",
    ],
)
def test_what_is_not_rfc3339_is_a_timestamp_error(raw: bytes) -> None:
    with pytest.raises(TimestampError):
        parse_timestamp(raw)


@given(
    st.datetimes(min_value=dt.datetime(1000, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    st.integers(0, 999_999_999),
    st.integers(-23 * 60 - 59, 23 * 60 + 59),
)
def test_any_time_in_any_zone_parses_to_its_instant(
    when: dt.datetime, nanos: int, offset_min: int
) -> None:
    instant = when.replace(microsecond=0, tzinfo=dt.UTC)
    zone = dt.timezone(dt.timedelta(minutes=offset_min))
    local = instant.astimezone(zone)
    if not 1000 <= local.year <= 9999:
        return
    fraction = f"{nanos:09d}".rstrip("0")  # as Go's RFC3339Nano trims it
    sign, minutes = ("+" if offset_min >= 0 else "-"), abs(offset_min)
    zone_text = "Z" if offset_min == 0 else f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + zone_text
    expected = int(instant.timestamp()) * 1_000_000_000 + nanos
    assert parse_timestamp(text.encode()) == expected
    if expected >= 0:
        assert parse_timestamp(format_timestamp(expected).encode()) == expected


# ---- seq


def test_seq_counts_the_lines_of_a_stream_with_the_same_timestamp() -> None:
    counter = SeqCounter()
    got = [
        counter.next_seq(stream, ts)
        for stream, ts in [
            (STDOUT, 5),
            (STDOUT, 5),
            (STDERR, 5),  # the other stream counts apart
            (STDOUT, 5),
            (STDERR, 5),
            (STDOUT, 6),
            (STDOUT, 5),  # a new run: the runtimes stamp a stream's lines in order
            (STDOUT, -1),
            (STDOUT, -1),
        ]
    ]
    assert got == [0, 1, 0, 2, 1, 0, 0, 0, 1]
    assert counter.newest_ns == 6


def test_a_first_line_stamped_minus_one_starts_at_zero() -> None:
    # (-1, 0) is "no run yet" in the list the C code shares: it must act as no run.
    counter = SeqCounter()
    assert [counter.next_seq(STDERR, -1) for _ in range(3)] == [0, 1, 2]
    assert counter.newest_ns == 0


# ---- joining: CRI parts (each with its own timestamp), as the CRI reader will hand them over


def _cri(max_line_bytes: int = 1 << 20) -> LineAssembler:
    return LineAssembler(CID, max_line_bytes=max_line_bytes, tty=False, parts_share_timestamp=False)


def test_p_parts_are_joined_up_to_the_f_under_the_first_parts_timestamp() -> None:
    lines = _cri()
    out: list[LogRecord] = []
    lines.add_part(STDOUT, T0, b"a" * 16384, False, out)  # P
    lines.add_part(STDOUT, T0 + 7, b"b" * 16384, False, out)  # P, its own later timestamp
    assert out == [] and not lines.idle
    lines.add_part(STDOUT, T0 + 9, b"c", True, out)  # F
    assert out == [LogRecord(CID, T0, STDOUT, 0, "a" * 16384 + "b" * 16384 + "c", (), None, 32769)]
    assert lines.idle


def test_a_line_of_the_other_stream_waits_behind_a_split_line_that_began_before_it() -> None:
    lines = _cri()
    out: list[LogRecord] = []
    lines.add_part(STDOUT, T0, b"long ", False, out)
    lines.add_part(STDERR, T0 + 1, b"error", True, out)
    assert out == []
    lines.add_part(STDOUT, T0 + 2, b"end", True, out)
    assert [(r.stream, r.message, r.timestamp_ns) for r in out] == [
        (STDOUT, "long end", T0),
        (STDERR, "error", T0 + 1),
    ]


def test_parts_are_capped_flagged_truncated_and_cut_at_a_character_boundary() -> None:
    lines = _cri(max_line_bytes=6)
    out: list[LogRecord] = []
    lines.add_part(STDERR, T0, "ab€".encode(), False, out)  # 5 bytes
    lines.add_part(STDERR, T0 + 1, "€cd".encode(), True, out)  # the 6th byte halves a "€"
    assert out == [LogRecord(CID, T0, STDERR, 0, "ab€", ("truncated",), None, 10)]


def test_an_unterminated_last_line_still_ships_when_the_stream_ends() -> None:
    lines = _cri()
    out: list[LogRecord] = []
    lines.add_part(STDOUT, T0, b"no newline", False, out)
    lines.finish(out)
    assert out == [LogRecord(CID, T0, STDOUT, 0, "no newline", (), None, 10)]


def test_invalid_utf8_is_replaced_and_flagged() -> None:
    lines = _cri()
    out: list[LogRecord] = []
    lines.add_part(STDOUT, T0, b"caf\xe9", True, out)
    assert out == [LogRecord(CID, T0, STDOUT, 0, "caf\ufffd", ("invalid_utf8",), None, 4)]


def test_docker_parts_with_another_timestamp_end_the_held_line() -> None:
    # Docker stamps every part with the first part's time: another time is another line.
    lines = LineAssembler(CID, max_line_bytes=100, tty=True, parts_share_timestamp=True)
    out: list[LogRecord] = []
    lines.add_part(STDOUT, T0, b"cut by a stop", False, out)
    lines.add_part(STDOUT, T0 + 1, b"next run\r", True, out)
    assert [(r.message, r.timestamp_ns, r.size) for r in out] == [
        ("cut by a stop", T0, 13),
        ("next run", T0 + 1, 8),  # a TTY's \r\n: the \r is dropped
    ]


@given(
    st.lists(st.binary(max_size=20), min_size=1, max_size=6),
    st.integers(0, 64),
    st.booleans(),
)
def test_a_line_in_any_parts_is_the_same_record_as_in_one(
    parts: list[bytes], max_line_bytes: int, share_timestamp: bool
) -> None:
    whole = LineAssembler(
        CID, max_line_bytes=max_line_bytes, tty=False, parts_share_timestamp=share_timestamp
    )
    split = LineAssembler(
        CID, max_line_bytes=max_line_bytes, tty=False, parts_share_timestamp=share_timestamp
    )
    expected: list[LogRecord] = []
    whole.add_part(STDERR, T0, b"".join(parts), True, expected)
    got: list[LogRecord] = []
    for n, part in enumerate(parts):
        last = n == len(parts) - 1
        split.add_part(STDERR, T0 if share_timestamp else T0 + n, part, last, got)
    assert got == expected
    (record,) = got
    assert record.size == sum(map(len, parts))
    assert ("truncated" in record.flags) == (record.size > max_line_bytes)
