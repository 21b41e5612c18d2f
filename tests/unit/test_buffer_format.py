"""The pure codec of the disk buffer: record frames, segment headers, the acks file."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipper.buffer import format as fmt
from shipper.errors import PermanentError


@given(st.lists(st.binary(max_size=300), max_size=30), st.integers(-(2**63), 2**63 - 1))
def test_records_round_trip(entries: list[bytes], time_ms: int) -> None:
    data = fmt.encode_records(entries, time_ms)
    assert len(data) == sum(len(e) for e in entries) + fmt.FRAME_HEADER_SIZE * len(entries)
    decoded = fmt.decode_records(data, 1 << 30, 1 << 30)
    assert decoded.entries == entries
    assert decoded.consumed == len(data)
    assert decoded.stop == fmt.END
    assert decoded.payload_bytes == sum(map(len, entries))


def test_frame_layout_is_length_crc_time_payload() -> None:
    data = fmt.encode_records([b"abc"], 7)
    time_bytes = (7).to_bytes(8, "little")
    assert data[:4] == (3).to_bytes(4, "little")
    assert data[4:8] == zlib.crc32(b"abc", zlib.crc32(time_bytes)).to_bytes(4, "little")
    assert data[8:16] == time_bytes
    assert data[16:] == b"abc"
    assert fmt.peek_record(data[:16]) == (3, 7)


def test_decode_stops_at_max_entries_and_max_bytes() -> None:
    data = fmt.encode_records([b"a" * 10, b"b" * 10, b"c" * 10], 1)
    two = fmt.decode_records(data, 2, 1000)
    assert two.entries == [b"a" * 10, b"b" * 10]
    assert two.stop == fmt.LIMIT
    assert two.consumed == 2 * 26
    by_bytes = fmt.decode_records(data, 10, 25)
    assert by_bytes.entries == [b"a" * 10, b"b" * 10]
    assert by_bytes.stop == fmt.LIMIT
    oversized_first = fmt.decode_records(data, 10, 3)
    assert oversized_first.entries == [b"a" * 10]


def test_decode_reports_incomplete_frames_with_the_size_needed() -> None:
    data = fmt.encode_records([b"x" * 40, b"y" * 50], 1)
    cut_payload = fmt.decode_records(data[:-10], 10, 1000)
    assert cut_payload.entries == [b"x" * 40]
    assert (cut_payload.stop, cut_payload.need, cut_payload.consumed) == (fmt.INCOMPLETE, 66, 56)
    cut_header = fmt.decode_records(data[:60], 10, 1000)
    assert (cut_header.stop, cut_header.need, cut_header.consumed) == (fmt.INCOMPLETE, 16, 56)


def test_decode_reports_bad_crc_and_impossible_length() -> None:
    data = bytearray(fmt.encode_records([b"good", b"evil", b"late"], 1))
    data[20 + 16 + 1] ^= 0x01  # a payload byte of the second record
    decoded = fmt.decode_records(bytes(data), 10, 1000)
    assert decoded.entries == [b"good"]
    assert (decoded.stop, decoded.consumed, decoded.problem) == (fmt.BAD, 20, "record crc mismatch")

    data = bytearray(fmt.encode_records([b"good", b"evil"], 1))
    data[20:24] = (fmt.MAX_RECORD_BYTES + 1).to_bytes(4, "little")
    decoded = fmt.decode_records(bytes(data), 10, 1000)
    assert decoded.entries == [b"good"]
    assert decoded.stop == fmt.BAD
    assert decoded.problem.startswith("impossible record length")


def test_a_flipped_time_fails_the_crc() -> None:
    data = bytearray(fmt.encode_records([b"payload"], 1000))
    data[9] ^= 0x10
    assert fmt.decode_records(bytes(data), 10, 1000).stop == fmt.BAD


def test_oversized_entry_is_rejected_before_anything_is_written() -> None:
    class Huge(bytes):
        def __len__(self) -> int:
            return fmt.MAX_RECORD_BYTES + 1

    with pytest.raises(PermanentError):
        fmt.encode_records([b"ok", Huge()], 1)


def test_segment_header_and_names() -> None:
    header = fmt.encode_segment_header(42)
    assert len(header) == fmt.SEGMENT_HEADER_SIZE == 16
    fmt.decode_segment_header(header, 42)
    with pytest.raises(fmt.FormatError, match="names segment 42"):
        fmt.decode_segment_header(header, 43)
    with pytest.raises(fmt.FormatError, match="magic"):
        fmt.decode_segment_header(b"X" + header[1:], 42)
    with pytest.raises(fmt.FormatError, match="version"):
        fmt.decode_segment_header(header[:6] + b"\x09\x00" + header[8:], 42)
    with pytest.raises(fmt.FormatError, match="cut short"):
        fmt.decode_segment_header(header[:10], 42)
    assert fmt.segment_name(7) == "00000000000000000007.seg"
    assert fmt.parse_segment_name("00000000000000000007.seg") == 7
    assert fmt.parse_segment_name("00000000000000000007.seg.tmp") is None
    assert fmt.parse_segment_name("7.seg") is None
    assert fmt.parse_segment_name("acks") is None


@given(st.integers(1, 2**63), st.dictionaries(st.integers(0, 2**63), st.integers(0, 2**63)))
def test_acks_round_trip(next_id: int, acked: dict[int, int]) -> None:
    assert fmt.decode_acks(fmt.encode_acks(next_id, acked)) == (next_id, acked)


def test_acks_damage_is_detected() -> None:
    data = fmt.encode_acks(9, {3: 100, 4: 16})
    for index in range(len(data)):
        damaged = bytearray(data)
        damaged[index] ^= 0x04
        with pytest.raises(fmt.FormatError):
            fmt.decode_acks(bytes(damaged))
    for size in range(len(data)):
        with pytest.raises(fmt.FormatError):
            fmt.decode_acks(data[:size])
