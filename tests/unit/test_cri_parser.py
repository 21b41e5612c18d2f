"""The CRI log grammar and the decoder of a container's files: parts joined whatever the
split, across rotations, with the shared line rules (cap, flags, seq)."""

from __future__ import annotations

import calendar
import itertools
import time
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipper.cri.parser import (
    CriDecoder,
    CriLine,
    InvalidLine,
    line_timestamp,
    open_streams,
    parse_line,
)
from shipper.model import LogRecord

CID = "f" * 64
BASE = calendar.timegm(time.strptime("2026-12-06T15:27:24", "%Y-%m-%dT%H:%M:%S")) * 10**9


def rfc3339(ns: int) -> bytes:
    """Go's RFC3339Nano in UTC: trailing zeros of the fraction trimmed (none: no dot)."""
    seconds, nanos = divmod(ns, 10**9)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    fraction = f"{nanos:09d}".rstrip("0")
    return (text + (f".{fraction}" if fraction else "") + "Z").encode()


def line(ns: int, stream: str, tag: str, message: bytes) -> bytes:
    return rfc3339(ns) + f" {stream} {tag} ".encode() + message + b"\n"


def test_a_line_has_timestamp_stream_tag_and_raw_message() -> None:
    parsed = parse_line(b"2026-12-06T15:27:24.719627914Z stdout F hello  world ")
    assert parsed == CriLine(BASE + 719627914, "stdout", True, b"hello  world ")
    assert parse_line(b"2026-12-06T15:27:24.72051484Z stderr P last") == CriLine(
        BASE + 720514840, "stderr", False, b"last"
    )
    # An empty line: containerd writes the separator, a runtime might not.
    assert parse_line(b"2026-12-06T15:27:24Z stdout F ").message == b""
    assert parse_line(b"2026-12-06T15:27:24Z stdout F").message == b""
    # Bytes as written: invalid UTF-8, NUL, CR.
    assert parse_line(b"2026-12-06T15:27:24Z stdout F \xff\x00x\r").message == b"\xff\x00x\r"
    # kubelet reads the tag as ':'-separated, the first deciding.
    assert parse_line(b"2026-12-06T15:27:24Z stdout F:x y").complete


def test_an_offset_is_normalised_to_utc_with_every_nanosecond() -> None:
    zoned = parse_line(b"2026-12-06T21:00:44.701456155+05:30 stdout F x")
    utc = parse_line(b"2026-12-06T15:30:44.701456155Z stdout F x")
    assert zoned.timestamp_ns == utc.timestamp_ns
    # CRI-O writes nine digits and +00:00 even in UTC.
    assert parse_line(b"2026-12-06T15:27:24.719627910+00:00 stdout F x").timestamp_ns == (
        BASE + 719627910
    )
    assert parse_line(b"2026-12-06T15:27:24.5-01:00 stdout F x").timestamp_ns == (
        BASE + 3600 * 10**9 + 500_000_000
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"hello",
        b"2026-12-06T15:27:24Z stdout",
        b"2026-12-06T15:27:24Z stdin F x",
        b"2026-12-06T15:27:24Z stdout X x",
        b"yesterday stdout F x",
        b"2026-12-06T15:27:24+0530 stdout F x",
    ],
)
def test_other_lines_are_invalid(raw: bytes) -> None:
    with pytest.raises(InvalidLine):
        parse_line(raw)


def test_first_line_timestamp_and_open_streams() -> None:
    data = (
        line(BASE, "stdout", "F", b"a")
        + line(BASE + 1, "stderr", "P", b"b")
        + line(BASE + 2, "stdout", "P", b"c")
        + line(BASE + 3, "stdout", "F", b"d")
    )
    assert line_timestamp(data) == BASE
    assert line_timestamp(b"") is None
    assert line_timestamp(b"garbage\n") is None
    assert open_streams(data) == frozenset({"stderr"})
    assert open_streams(data + line(BASE + 4, "stdout", "P", b"e")) == {"stderr", "stdout"}
    assert open_streams(b"") == frozenset()


def decode(
    chunks: list[bytes],
    *,
    max_line_bytes: int = 1 << 20,
    since_ns: int = 0,
    continued: frozenset[str] | set[str] = frozenset(),
) -> list[LogRecord]:
    decoder = CriDecoder(CID, max_line_bytes=max_line_bytes, since_ns=since_ns, continued=continued)
    out: list[LogRecord] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out + decoder.finish()


def test_parts_join_with_the_first_parts_timestamp_and_a_final_P_still_ships() -> None:
    data = (
        line(BASE + 10, "stdout", "P", b"x" * 5)
        + line(BASE + 11, "stderr", "F", b"err")
        + line(BASE + 12, "stdout", "F", b"yz")
        + line(BASE + 13, "stdout", "P", b"unterminated")
    )
    records = decode([data])
    assert [(r.timestamp_ns, r.stream, r.message, r.size) for r in records] == [
        (BASE + 10, "stdout", "xxxxxyz", 7),
        (BASE + 11, "stderr", "err", 3),
        (BASE + 13, "stdout", "unterminated", 12),
    ]


def test_the_line_cap_truncates_at_a_character_and_flags_it() -> None:
    data = line(BASE, "stdout", "P", "é".encode() * 4) + line(BASE + 1, "stdout", "F", b"tail")
    (record,) = decode([data], max_line_bytes=5)
    assert record.message == "éé"
    assert record.flags == ("truncated",)
    assert record.size == 12


def test_invalid_utf8_is_replaced_and_flagged() -> None:
    (record,) = decode([line(BASE, "stderr", "F", b"a\xffb")])
    assert record.message == "a\ufffdb"
    assert record.flags == ("invalid_utf8",)


def test_lines_before_since_are_dropped_whole_after_joining() -> None:
    data = (
        line(BASE, "stdout", "P", b"old head ")
        + line(BASE + 5, "stdout", "F", b"new tail")  # a later part of an older line
        + line(BASE + 6, "stdout", "F", b"new")
    )
    assert [r.message for r in decode([data], since_ns=BASE + 5)] == ["new"]


def test_a_torn_line_at_the_end_of_a_file_is_invalid_not_joined_to_the_next_file() -> None:
    decoder = CriDecoder(CID, max_line_bytes=100)
    out = decoder.feed(line(BASE, "stdout", "F", b"a") + b"2026-12-06T15:2")
    out += decoder.feed(b"")
    out += decoder.feed(line(BASE + 1, "stdout", "F", b"b"))
    assert [r.message for r in out] == ["a", "b"]
    assert decoder.invalid_lines == 1


def test_the_continued_streams_rest_of_line_is_dropped() -> None:
    data = (
        line(BASE + 1, "stderr", "F", b"err")
        + line(BASE + 2, "stdout", "P", b"middle")
        + line(BASE + 3, "stdout", "F", b"rest of an older line")
        + line(BASE + 4, "stdout", "F", b"next")
    )
    records = decode([data], continued={"stdout"})
    assert [r.message for r in records] == ["err", "next"]


# --- property: however the runtime cut lines into parts and files, the same records ------


message_bytes = st.binary(min_size=0, max_size=40).filter(lambda b: b"\n" not in b)


@dataclass(frozen=True)
class Output:
    files: list[bytes]  # the contents of the files, oldest first
    lines: list[tuple[int, str, bytes]]  # (first part's timestamp, stream, message), in order
    first_file: list[int]  # the file each line's first part is in


@st.composite
def container_output(draw: st.DrawFn) -> Output:
    """Lines of two streams cut into parts of any size (each part stamped when written, the
    streams interleaved, a stream's line always finished before its next begins), written
    across files that end anywhere (kubelet rotating between any two parts)."""
    pending = [
        (draw(st.sampled_from(["stdout", "stderr"])), draw(message_bytes))
        for _ in range(draw(st.integers(0, 25)))
    ]
    pending.reverse()
    files: list[list[bytes]] = [[]]
    lines: list[tuple[int, str, bytes]] = []
    first_file: list[int] = []
    in_progress: dict[str, list[bytes]] = {}  # per stream: the parts still to write
    clock = BASE
    while pending or in_progress:
        choices = sorted(in_progress)
        if pending and pending[-1][0] not in in_progress:
            choices.append("new")
        choice = draw(st.sampled_from(choices))
        # Timestamps go up, sometimes not at all (a coarse clock: equal stamps, seq > 0).
        clock += draw(st.sampled_from([0, 1, 7, 1000]))
        if choice == "new":
            stream, message = pending.pop()
            cuts = sorted(
                c for c in draw(st.sets(st.integers(1, 39), max_size=3)) if c < len(message)
            )
            bounds = [0, *cuts, len(message)]
            in_progress[stream] = [message[a:b] for a, b in itertools.pairwise(bounds)]
            lines.append((clock, stream, message))
            first_file.append(len(files) - 1)
        else:
            stream = choice
        parts = in_progress[stream]
        part = parts.pop(0)
        files[-1].append(line(clock, stream, "P" if parts else "F", part))
        if not parts:
            del in_progress[stream]
        if draw(st.integers(0, 7)) == 0:
            files.append([])  # kubelet rotated here
    return Output([b"".join(f) for f in files], lines, first_file)


def expected_records(lines: list[tuple[int, str, bytes]]) -> list[tuple[int, str, int, str]]:
    out = []
    last: dict[str, tuple[int, int]] = {}
    for ts, stream, message in lines:
        previous_ts, previous_seq = last.get(stream, (-1, -1))
        seq = previous_seq + 1 if previous_ts == ts else 0
        last[stream] = (ts, seq)
        out.append((ts, stream, seq, message.decode("utf-8", "replace")))
    return out


def identities(records: list[LogRecord]) -> list[tuple[int, str, int, str]]:
    return [(r.timestamp_ns, r.stream, r.seq, r.message) for r in records]


def chunked(files: list[bytes], data: st.DataObject) -> list[bytes]:
    """The files' bytes as a tail hands them over: chunks cut anywhere, and an empty chunk
    after each file but the last (the live one)."""
    chunks: list[bytes] = []
    for index, content in enumerate(files):
        position = 0
        while position < len(content):
            step = data.draw(st.integers(1, max(1, len(content))))
            chunks.append(content[position : position + step])
            position += step
        if index < len(files) - 1:
            chunks.append(b"")
    return chunks


@settings(max_examples=300, deadline=None)
@given(container_output(), st.data())
def test_any_split_into_parts_files_and_chunks_gives_the_unsplit_lines_records(
    output: Output, data: st.DataObject
) -> None:
    assert identities(decode(chunked(output.files, data))) == expected_records(output.lines)


@settings(max_examples=300, deadline=None)
@given(container_output(), st.data())
def test_reading_from_a_later_file_gives_exactly_the_lines_begun_there(
    output: Output, data: st.DataObject
) -> None:
    """What a resume from file k reads: the streams whose last line before file k is a part
    are continued in it, so that rest is dropped; every line begun in file k or later comes
    whole, and nothing else."""
    k = data.draw(st.integers(0, len(output.files) - 1))
    continued = open_streams(b"".join(output.files[:k]))
    records = decode(chunked(output.files[k:], data), continued=continued)
    begun_here = [x for x, f in zip(output.lines, output.first_file, strict=True) if f >= k]
    assert identities(records) == expected_records(begun_here)
