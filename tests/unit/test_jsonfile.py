"""json-file decoder: the same records as the logs API decoder for the same messages."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from shipper.docker.frames import LogStreamDecoder
from shipper.docker.jsonfile import JsonFileDecoder
from shipper.lines.timestamps import format_timestamp, parse_timestamp

CID = "c" * 64
BASE_NS = 1_795_000_000_123_000_000


def _go_time(ns: int) -> str:
    """Go's RFC3339Nano as json-file writes it: trailing zeros of the fraction trimmed."""
    text = format_timestamp(ns)
    seconds, fraction = text[:-1].split(".")
    fraction = fraction.rstrip("0")
    return f"{seconds}.{fraction}Z" if fraction else f"{seconds}Z"


def _both(messages: list[tuple[str, int, bytes]]) -> tuple[bytes, bytes]:
    """(multiplexed API body, json-file bytes) for (stream, ts, message bytes) messages."""
    api = b""
    files = b""
    for stream, ts, content in messages:
        payload = format_timestamp(ts).encode() + b" " + content
        api += bytes([1 if stream == "stdout" else 2, 0, 0, 0]) + len(payload).to_bytes(4, "big")
        api += payload
        text = content.decode("utf-8", "replace")
        files += orjson.dumps({"log": text, "stream": stream, "time": _go_time(ts)}) + b"\n"
    return api, files


def _records(decoder: LogStreamDecoder, data: bytes, chunk: int) -> list[object]:
    out = [r for i in range(0, len(data), chunk) for r in decoder.feed(data[i : i + chunk])]
    return out + decoder.finish()


def test_trimmed_and_padded_timestamps_parse_alike() -> None:
    for ns in (BASE_NS, BASE_NS + 1, BASE_NS + 100, BASE_NS // 10**9 * 10**9):
        assert parse_timestamp(_go_time(ns).encode()) == ns
        assert parse_timestamp(format_timestamp(ns).encode()) == ns
    assert parse_timestamp(b"2026-11-28T04:10:00.5+01:00") == parse_timestamp(
        b"2026-11-28T03:10:00.500000000Z"
    )


def test_partials_join_across_chunks_and_since_drops_older_lines() -> None:
    messages = [
        ("stdout", BASE_NS, b"old\n"),
        ("stdout", BASE_NS + 5, b"a" * 16384),
        ("stderr", BASE_NS + 6, b"err\n"),
        ("stdout", BASE_NS + 5, b"tail\n"),
        ("stdout", BASE_NS + 7, b"same\n"),
        ("stdout", BASE_NS + 7, b"same\n"),
    ]
    _, files = _both(messages)
    for since in (0, BASE_NS + 1):
        from_api = _records(LogStreamDecoder(CID, tty=False), _api_since(messages, since), 7)
        from_files = _records(JsonFileDecoder(CID, tty=False, since_ns=since), files, 7)
        assert from_files == from_api
    records = _records(JsonFileDecoder(CID, tty=False), files, 1000)
    # The split line keeps the place of its first part: "err" came after it.
    assert [(r.message[:4], r.seq) for r in records] == [  # type: ignore[attr-defined]
        ("old", 0),
        ("aaaa", 0),
        ("err", 0),
        ("same", 0),
        ("same", 1),
    ]


def _api_since(messages: list[tuple[str, int, bytes]], since: int) -> bytes:
    return _both([m for m in messages if m[1] >= since])[0]


def test_truncation_and_carriage_returns_match_the_api() -> None:
    messages = [
        ("stdout", BASE_NS, b"line\r\n"),
        ("stdout", BASE_NS + 1, "é".encode() * 40 + b"\n"),
    ]
    api, files = _both(messages)
    from_api = _records(LogStreamDecoder(CID, tty=False, max_line_bytes=25), api, 5)
    from_files = _records(JsonFileDecoder(CID, tty=False, max_line_bytes=25), files, 5)
    assert from_files == from_api
    assert from_files[0].message == "line\r"  # type: ignore[attr-defined]
    assert "truncated" in from_files[1].flags  # type: ignore[attr-defined]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["stdout", "stderr"]),
            st.integers(0, 3),
            st.text(max_size=40).map(str.encode),
            st.booleans(),
        ),
        max_size=30,
    ),
    st.integers(1, 64),
)
def test_any_messages_decode_alike(parts: list[tuple[str, int, bytes, bool]], chunk: int) -> None:
    messages = []
    ts = BASE_NS
    for stream, step, content, newline in parts:
        ts += step
        messages.append((stream, ts, content + (b"\n" if newline else b"")))
    api, files = _both(messages)
    from_api = _records(LogStreamDecoder(CID, tty=False, max_line_bytes=64), api, chunk)
    from_files = _records(JsonFileDecoder(CID, tty=False, max_line_bytes=64), files, chunk)
    assert from_files == from_api


def test_lines_that_are_not_entries_are_skipped() -> None:
    decoder = JsonFileDecoder(CID, tty=False)
    good = orjson.dumps({"log": "ok\n", "stream": "stdout", "time": _go_time(BASE_NS)})
    records = decoder.feed(b"not json\n" + good + b"\n") + decoder.finish()
    assert [r.message for r in records] == ["ok"]
    assert decoder.invalid_lines == 1


def test_a_line_cut_by_a_stop_stays_apart_from_the_next_run_in_both_modes() -> None:
    messages = [
        ("stdout", BASE_NS, b"first\n"),
        ("stdout", BASE_NS + 9, b"abc"),  # the container stopped mid-line
        ("stdout", BASE_NS + 10**9, b"def\n"),  # its next run
    ]
    api, files = _both(messages)
    expected = [("first", BASE_NS), ("abc", BASE_NS + 9), ("def", BASE_NS + 10**9)]
    for decoder, data in (
        (LogStreamDecoder(CID, tty=False), api),
        (JsonFileDecoder(CID, tty=False), files),
    ):
        records = _records(decoder, data, 7)
        assert [(r.message, r.timestamp_ns) for r in records] == expected  # type: ignore[attr-defined]


def test_a_lone_surrogate_escape_becomes_a_replacement_character_not_a_crash() -> None:
    # Go's JSON decoder (the logs API reading this file) gives U+FFFD for it; a str holding
    # the lone surrogate could not be encoded for the size, the buffer or Elasticsearch.
    line = b'{"log":"a\\ud800b\\n","stream":"stderr","time":"2026-11-18T11:06:41.5Z"}\n'
    records = JsonFileDecoder(CID, tty=False).feed(line)
    ts = parse_timestamp(b"2026-11-18T11:06:41.5Z")
    assert [(r.timestamp_ns, r.stream, r.message, r.flags, r.size) for r in records] == [
        (ts, "stderr", "a\ufffdb", (), 5)
    ]
