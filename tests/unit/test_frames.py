from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from shipper.docker.frames import DOCKER_PARTIAL_BYTES, LogStreamDecoder
from shipper.lines.timestamps import format_timestamp, parse_timestamp
from shipper.model import LogRecord

TS1 = b"2026-11-28T04:13:43.517053725Z"
TS1_NS = 1795839223517053725
TS2 = b"2026-11-28T04:13:43.517929751Z"


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def message(ts: bytes, content: bytes, stream: int = 1) -> bytes:
    return frame(stream, ts + b" " + content)


def decode_all(chunks: list[bytes], *, tty: bool = False, **kwargs: int) -> list[LogRecord]:
    decoder = LogStreamDecoder("c1", tty=tty, **kwargs)
    out: list[LogRecord] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    out.extend(decoder.finish())
    return out


def test_timestamps_round_trip_to_the_nanosecond() -> None:
    assert parse_timestamp(TS1) == TS1_NS
    assert format_timestamp(TS1_NS) == TS1.decode()
    assert parse_timestamp(b"2026-11-28T04:13:43.5Z") == TS1_NS - 17053725
    assert parse_timestamp(b"2026-11-28T05:13:43.517053725+01:00") == TS1_NS
    assert parse_timestamp(b"1970-01-01T00:00:00Z") == 0


def test_multiplexed_lines_keep_stream_timestamp_and_text() -> None:
    body = message(TS1, b"hello\n") + message(TS2, b"oops\n", stream=2) + message(TS2, b"\n")
    records = decode_all([body])
    assert [(r.timestamp_ns, r.stream, r.seq, r.message) for r in records] == [
        (TS1_NS, "stdout", 0, "hello"),
        (parse_timestamp(TS2), "stderr", 0, "oops"),
        (parse_timestamp(TS2), "stdout", 0, ""),  # other stream: its own count
    ]
    assert records[0].size == 5


def test_chunks_split_anywhere_give_the_same_records() -> None:
    body = b"".join(message(TS1, f"line {i}\n".encode(), 1 + i % 2) for i in range(50))
    whole = decode_all([body])
    for cut in (1, 3, 7, 8, 9, 30, 31, 32, 100):
        pieces = [body[i : i + cut] for i in range(0, len(body), cut)]
        assert decode_all(pieces) == whole
    assert [r.seq for r in whole] == [i // 2 for i in range(50)]  # per stream


def test_docker_partials_are_joined_into_one_record() -> None:
    part = b"x" * DOCKER_PARTIAL_BYTES
    body = (
        message(TS1, part) + message(TS1, part) + message(TS1, b"end\n") + message(TS2, b"next\n")
    )
    records = decode_all([body])
    assert [len(r.message) for r in records] == [2 * DOCKER_PARTIAL_BYTES + 3, 4]
    assert records[0].message.endswith("xend")
    assert records[0].timestamp_ns == TS1_NS and records[0].seq == 0


def test_partials_of_stdout_and_stderr_do_not_mix() -> None:
    body = (
        message(TS1, b"a" * 10, 1)
        + message(TS1, b"b" * 10, 2)
        + message(TS1, b"A\n", 1)
        + message(TS1, b"B\n", 2)
    )
    records = decode_all([body])
    assert [(r.stream, r.message) for r in records] == [
        ("stdout", "a" * 10 + "A"),
        ("stderr", "b" * 10 + "B"),
    ]


def test_last_line_without_newline_is_a_record_when_the_stream_ends() -> None:
    decoder = LogStreamDecoder("c1", tty=False)
    assert decoder.feed(message(TS1, b"first\n") + message(TS2, b"no newline")) != []
    tail = decoder.finish()
    assert [r.message for r in tail] == ["no newline"]


def test_invalid_utf8_is_replaced_and_flagged_never_raised() -> None:
    records = decode_all([message(TS1, b"a\xffb\xc3\n")])
    assert records[0].message == "a\ufffdb\ufffd"
    assert records[0].flags == ("invalid_utf8",)


def test_non_ascii_text_is_kept_exactly() -> None:
    text = "grüße 日本語 🚀"
    records = decode_all([message(TS1, text.encode() + b"\n")])
    assert records[0].message == text and records[0].flags == ()


def test_long_line_is_truncated_at_max_line_bytes_and_flagged() -> None:
    part = "é".encode() * (DOCKER_PARTIAL_BYTES // 2)
    body = message(TS1, part) + message(TS1, part) + message(TS1, b"!\n")
    records = decode_all([body], max_line_bytes=20001)
    assert records[0].flags == ("truncated",)
    # Cut at a character boundary below the limit, never inside "é".
    assert records[0].message == "é" * 10000
    assert records[0].size == 2 * DOCKER_PARTIAL_BYTES + 1


def test_tty_stream_splits_on_newlines_and_drops_the_terminal_carriage_return() -> None:
    body = TS1 + b" hello\r\n" + TS2 + b" world\r\n"
    records = decode_all([body[i : i + 5] for i in range(0, len(body), 5)], tty=True)
    assert [(r.stream, r.message, r.timestamp_ns) for r in records] == [
        ("stdout", "hello", TS1_NS),
        ("stdout", "world", parse_timestamp(TS2)),
    ]


def test_tty_partials_are_found_at_sixteen_kib() -> None:
    part = b"y" * DOCKER_PARTIAL_BYTES
    body = TS1 + b" " + part + TS1 + b" " + part + TS1 + b" tail\r\n" + TS2 + b" next\r\n"
    for cut in (1000, 4096, len(body)):
        records = decode_all([body[i : i + cut] for i in range(0, len(body), cut)], tty=True)
        assert [len(r.message) for r in records] == [2 * DOCKER_PARTIAL_BYTES + 4, 4]


def test_payload_without_timestamp_is_kept_not_dropped() -> None:
    decoder = LogStreamDecoder("c1", tty=False)
    records = decoder.feed(message(TS1, b"ok\n") + frame(1, b"garbage without stamp\n"))
    assert [r.message for r in records] == ["ok", "garbage without stamp"]
    assert decoder.invalid_timestamps == 1


@given(
    lines=st.lists(
        st.tuples(st.sampled_from([1, 2]), st.binary(max_size=40).filter(lambda b: b"\n" not in b)),
        max_size=30,
    ),
    cuts=st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=10),
)
def test_any_chunking_yields_every_line_once_in_order(
    lines: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    body = b"".join(message(TS1, content + b"\n", stream) for stream, content in lines)
    chunks, pos, i = [], 0, 0
    while pos < len(body):
        size = cuts[i % len(cuts)]
        chunks.append(body[pos : pos + size])
        pos += size
        i += 1
    records = decode_all(chunks)
    assert [(r.stream, r.message) for r in records] == [
        ("stdout" if s == 1 else "stderr", c.decode("utf-8", "replace")) for s, c in lines
    ]
    per_stream = {1: 0, 2: 0}
    expected_seq = []
    for stream, _ in lines:
        expected_seq.append(per_stream[stream])
        per_stream[stream] += 1
    assert [r.seq for r in records] == expected_seq


TS3 = b"2026-11-28T04:13:45.000000001Z"


def test_a_line_cut_by_a_stop_does_not_swallow_the_next_runs_first_line() -> None:
    # Run 1 ends mid-line (Docker flushes "abc" without a newline at EOF); the container is
    # started again and run 2 writes "def". Re-read in one go, they are two lines.
    body = message(TS1, b"first\n") + message(TS1, b"abc") + message(TS3, b"def\n")
    for cut in (1, 5, 40, len(body)):
        records = decode_all([body[i : i + cut] for i in range(0, len(body), cut)])
        assert [(r.message, r.timestamp_ns, r.seq) for r in records] == [
            ("first", TS1_NS, 0),
            ("abc", TS1_NS, 1),
            ("def", parse_timestamp(TS3), 0),
        ]


def test_a_sixteen_kib_part_followed_by_another_time_is_a_line_of_its_own() -> None:
    part = b"z" * DOCKER_PARTIAL_BYTES
    records = decode_all([message(TS1, part) + message(TS3, b"next\n")])
    assert [len(r.message) for r in records] == [DOCKER_PARTIAL_BYTES, 4]


def test_tty_line_cut_by_a_stop_ends_where_the_next_runs_timestamp_follows() -> None:
    body = TS1 + b" first\r\n" + TS1 + b" abc" + TS3 + b" def\r\n"
    for cut in (1, 7, 33, 50, len(body)):
        records = decode_all([body[i : i + cut] for i in range(0, len(body), cut)], tty=True)
        assert [(r.message, r.timestamp_ns) for r in records] == [
            ("first", TS1_NS),
            ("abc", TS1_NS),
            ("def", parse_timestamp(TS3)),
        ]


def test_tty_lines_that_print_docker_style_times_themselves_stay_whole() -> None:
    earlier = b"2026-11-28T04:13:40.000000001Z"
    lines = [
        TS1 + b" " + TS3 + b" the app's own time first\r\n",  # at the start: never a cut
        TS1 + b" seen at " + earlier + b" earlier\r\n",  # earlier than Docker's: the app's
    ]
    records = decode_all([b"".join(lines)], tty=True)
    assert [r.message for r in records] == [
        TS3.decode() + " the app's own time first",
        "seen at " + earlier.decode() + " earlier",
    ]


def test_records_leave_in_the_order_their_first_parts_came_so_reads_are_prefixes() -> None:
    # A read that ended at a stop must give a prefix of what a longer read gives: resuming
    # skips the lines a checkpoint counts, by count.
    run_1 = (
        message(TS1, b"run 1 first\n", 1)
        + message(TS1, b"run 1 err\n", 2)
        + message(TS1, b"run 1 cut out", 1)
        + message(TS1, b"run 1 cut err", 2)
    )
    run_2 = message(TS3, b"run 2 first\n", 1) + message(TS3, b"run 2 err\n", 2)
    short = [r.message for r in decode_all([run_1])]
    long = [r.message for r in decode_all([run_1 + run_2])]
    assert short == ["run 1 first", "run 1 err", "run 1 cut out", "run 1 cut err"]
    assert long[: len(short)] == short
    assert long[len(short) :] == ["run 2 first", "run 2 err"]


_PART = st.tuples(
    st.sampled_from([1, 2]),
    st.binary(min_size=1, max_size=12).filter(lambda b: b"\n" not in b),
    st.booleans(),
)


@given(
    first_run=st.lists(st.tuples(st.sampled_from([TS1, TS2]), _PART), max_size=15),
    second_run=st.lists(_PART, max_size=10),
)
def test_any_read_that_stops_early_is_a_prefix_of_a_longer_one(
    first_run: list[tuple[bytes, tuple[int, bytes, bool]]],
    second_run: list[tuple[int, bytes, bool]],
) -> None:
    # A read ends early where a run of the container ended (a plain read of a stopped
    # container); the next run's messages all come later, with later times.
    def frames(stamped: list[tuple[bytes, tuple[int, bytes, bool]]]) -> bytes:
        return b"".join(
            message(ts, text + (b"\n" if nl else b""), s) for ts, (s, text, nl) in stamped
        )

    run_1 = frames(sorted(first_run, key=lambda m: m[0]))
    run_2 = frames([(TS3, part) for part in second_run])
    short = decode_all([run_1])
    long = decode_all([run_1 + run_2])
    assert [(r.stream, r.timestamp_ns, r.seq, r.message) for r in long[: len(short)]] == [
        (r.stream, r.timestamp_ns, r.seq, r.message) for r in short
    ]


def test_lines_stamped_before_since_are_dropped_as_the_file_decoder_drops_them() -> None:
    """A current engine (28.5) answers `since` from the first line stamped at or after it
    and sends every later line of the file, so a stderr line stamped before `since` but
    written after it comes too (seen against the real engine: test_engine_shapes)."""
    from shipper.docker.jsonfile import JsonFileDecoder

    ts0, ts1, ts2 = (b"2026-11-28T04:13:43.51705372%dZ" % i for i in (4, 5, 6))
    since = parse_timestamp(ts1)
    body = (
        message(ts1, b"out at since\n")
        + message(ts0, b"err before since\n", stream=2)  # the other copier, a bit late
        + message(ts2, b"out after\n")
        + message(ts2, b"out after again\n")
    )
    for chunks in ([body], [body[:40], body[40:]]):
        records = decode_all(chunks, since_ns=since)
        assert [(r.message, r.seq) for r in records] == [
            ("out at since", 0),
            ("out after", 0),
            ("out after again", 1),
        ]
        # Lines already past `since` come back as the very list (the common case is free).
        decoder = LogStreamDecoder("c1", tty=False, since_ns=since)
        later = message(ts2, b"x\n")
        assert [r.message for r in decoder.feed(later)] == ["x"]
    # The json-file of the same lines, read from `since`, gives the same records.
    entries = b"".join(
        b'{"log":"%s\\n","stream":"%s","time":"%s"}\n' % (text, stream, ts)
        for ts, stream, text in (
            (ts1, b"stdout", b"out at since"),
            (ts0, b"stderr", b"err before since"),
            (ts2, b"stdout", b"out after"),
            (ts2, b"stdout", b"out after again"),
        )
    )
    files = JsonFileDecoder("c1", tty=False, since_ns=since)
    assert files.feed(entries) + files.finish() == decode_all([body], since_ns=since)
