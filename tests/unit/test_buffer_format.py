"""The pure codec of the disk buffer: record frames, segment headers, the acks file."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipper.buffer import format as fmt
from shipper.errors import PermanentError


def blocks_of(*batches: list[bytes], time_ms: int = 1) -> bytes:
    return b"".join(fmt.encode_block(batch, time_ms) for batch in batches)


@given(
    st.lists(st.lists(st.binary(max_size=300), min_size=1, max_size=30), max_size=5),
    st.integers(-(2**63), 2**63 - 1),
)
def test_blocks_round_trip(batches: list[list[bytes]], time_ms: int) -> None:
    data = blocks_of(*batches, time_ms=time_ms)
    entries = [e for batch in batches for e in batch]
    framing = sum(fmt.FRAME_HEADER_SIZE + 4 + 4 * len(batch) for batch in batches)
    assert len(data) == sum(map(len, entries)) + framing
    decoded = fmt.decode_records(data, 1 << 30, 1 << 30)
    assert [block.entries() for block in decoded.blocks] == batches
    assert decoded.entries == entries
    assert (decoded.consumed, decoded.stop) == (len(data), fmt.END)
    assert decoded.entry_count == len(entries)
    assert decoded.payload_bytes == sum(map(len, entries))


def test_frame_layout_is_length_crc_time_then_the_block() -> None:
    data = fmt.encode_block([b"abc", b"de"], 7)
    time_bytes = (7).to_bytes(8, "little")
    payload = (2).to_bytes(4, "little") + (3).to_bytes(4, "little") + (2).to_bytes(4, "little")
    payload += b"abcde"
    assert data[:4] == len(payload).to_bytes(4, "little")
    assert data[4:8] == zlib.crc32(payload, zlib.crc32(time_bytes)).to_bytes(4, "little")
    assert data[8:16] == time_bytes
    assert data[16:] == payload
    assert fmt.peek_record(data[:16]) == (len(payload), 7)
    decoded = fmt.decode_records(data, 10, 1000)
    assert decoded.blocks == [fmt.Block(b"abcde", (3, 2))]


def test_version_1_segments_hold_one_entry_per_frame() -> None:
    data = fmt.encode_v1_records([b"old", b"er"], 5)
    assert data[:4] == (3).to_bytes(4, "little") and data[16:19] == b"old"
    decoded = fmt.decode_records(data, 10, 1000, version=1)
    assert decoded.blocks == [fmt.Block(b"old", (3,)), fmt.Block(b"er", (2,))]
    assert decoded.entry_count == 2


def test_decode_stops_before_a_block_past_max_entries_or_max_bytes() -> None:
    data = blocks_of([b"a" * 10], [b"b" * 10, b"c" * 10], [b"d" * 10])
    one = fmt.decode_records(data, 2, 1000)  # a second block would make 3 entries
    assert one.entries == [b"a" * 10]
    assert (one.stop, one.consumed) == (fmt.LIMIT, 16 + 4 + 4 + 10)
    by_bytes = fmt.decode_records(data, 10, 35)
    assert by_bytes.entries == [b"a" * 10, b"b" * 10, b"c" * 10]
    assert by_bytes.stop == fmt.LIMIT
    oversized_first = fmt.decode_records(blocks_of([b"x" * 50, b"y"]), 1, 3)
    assert oversized_first.entries == [b"x" * 50, b"y"]  # the first block always, whole


def test_decode_reports_incomplete_frames_with_the_size_needed() -> None:
    data = blocks_of([b"x" * 40], [b"y" * 50])
    first = 16 + 8 + 40
    cut_payload = fmt.decode_records(data[:-10], 10, 1000)
    assert cut_payload.entries == [b"x" * 40]
    assert (cut_payload.stop, cut_payload.need, cut_payload.consumed) == (
        fmt.INCOMPLETE,
        16 + 8 + 50,
        first,
    )
    cut_header = fmt.decode_records(data[: first + 4], 10, 1000)
    assert (cut_header.stop, cut_header.need, cut_header.consumed) == (fmt.INCOMPLETE, 16, first)


def test_decode_reports_bad_crc_impossible_length_and_inconsistent_blocks() -> None:
    first = 16 + 8 + 4
    data = bytearray(blocks_of([b"good"], [b"evil"], [b"late"]))
    data[first + 16 + 9] ^= 0x01  # a payload byte of the second block
    decoded = fmt.decode_records(bytes(data), 10, 1000)
    assert decoded.entries == [b"good"]
    assert (decoded.stop, decoded.consumed, decoded.problem) == (
        fmt.BAD,
        first,
        "record crc mismatch",
    )

    data = bytearray(blocks_of([b"good"], [b"evil"]))
    data[first : first + 4] = (fmt.MAX_RECORD_BYTES + 1).to_bytes(4, "little")
    decoded = fmt.decode_records(bytes(data), 10, 1000)
    assert decoded.entries == [b"good"]
    assert decoded.stop == fmt.BAD
    assert decoded.problem.startswith("impossible record length")

    # A crc that matches over a block whose lengths do not add up: a writer bug, still bad.
    payload = (2).to_bytes(4, "little") + (3).to_bytes(4, "little") + (9).to_bytes(4, "little")
    payload += b"abcde"
    crc = zlib.crc32(payload, zlib.crc32((1).to_bytes(8, "little")))
    frame = len(payload).to_bytes(4, "little") + crc.to_bytes(4, "little")
    frame += (1).to_bytes(8, "little") + payload
    decoded = fmt.decode_records(frame, 10, 1000)
    assert (decoded.stop, decoded.problem) == (
        fmt.BAD,
        "block entry lengths do not add up to its size",
    )


def test_a_flipped_time_fails_the_crc() -> None:
    data = bytearray(fmt.encode_block([b"payload"], 1000))
    data[9] ^= 0x10
    assert fmt.decode_records(bytes(data), 10, 1000).stop == fmt.BAD


def test_oversized_block_is_rejected_before_anything_is_written() -> None:
    class Huge(bytes):
        def __len__(self) -> int:
            return fmt.MAX_RECORD_BYTES + 1

    with pytest.raises(PermanentError):
        fmt.encode_block([b"ok", Huge()], 1)


def test_encode_blocks_cuts_by_entries_and_bytes() -> None:
    entries = [bytes([65 + i]) * 10 for i in range(5)]
    encoded = fmt.encode_blocks(entries, 1, 2, 1000)
    assert len(encoded.framed) == 3
    decoded = fmt.decode_records(encoded.joined(), 100, 1 << 20)
    assert [b.entries() for b in decoded.blocks] == [entries[0:2], entries[2:4], entries[4:]]
    encoded = fmt.encode_blocks(entries, 1, 100, 25)
    assert len(encoded.framed) == 3
    assert fmt.decode_records(encoded.joined(), 100, 1 << 20).entries == entries
    encoded = fmt.encode_blocks(entries, 1, 100, 1000)
    assert len(encoded.framed) == 1 and encoded.joined() == fmt.encode_block(entries, 1)
    # No entries: what encode_block frames for none (callers never append an empty batch).
    encoded = fmt.encode_blocks([], 1, 2, 1000)
    assert encoded.joined() == fmt.encode_block([], 1) and len(encoded.framed) == 1


@given(
    st.lists(st.binary(max_size=40), min_size=1, max_size=30),
    st.integers(1, 8),
    st.integers(1, 200),
    st.integers(0, 2**40),
    st.booleans(),
)
def test_encode_blocks_is_encode_block_of_each_cut(
    entries: list[bytes], max_entries: int, max_bytes: int, time_ms: int, joined: bool
) -> None:
    """The one-pass framing writes exactly what `encode_block` (the definition) gives for
    each block, cut the way the docstring says, whether the entries come joined or not."""
    given = fmt.JoinedEntries.of(entries) if joined else entries
    data, total, framed = fmt.encode_blocks(given, time_ms, max_entries, max_bytes)
    blocks: list[list[bytes]] = [[]]
    size = 0
    for entry in entries:
        if blocks[-1] and (len(blocks[-1]) >= max_entries or size + len(entry) > max_bytes):
            blocks.append([])
            size = 0
        blocks[-1].append(entry)
        size += len(entry)
    assert len(framed) == len(blocks)
    frames = b"".join(data)
    assert frames == b"".join(fmt.encode_block(block, time_ms) for block in blocks)
    assert total == len(frames)
    # Each framed block is what a reader decodes from its frame.
    for start, end, block in framed:
        decoded = fmt.decode_records(frames[start:end], 1 << 30, 1 << 30)
        assert decoded.stop == fmt.END and decoded.blocks == [block]


def test_joined_entries_that_make_one_block_are_written_without_a_copy() -> None:
    joined = fmt.JoinedEntries.of([b"a" * 300, b"b" * 500, b"c"])
    encoded = fmt.encode_blocks(joined, 1, 100, 1 << 20)
    assert encoded.parts[1] is joined.data and encoded.framed[0].block.data is joined.data
    assert encoded.joined() == fmt.encode_block([b"a" * 300, b"b" * 500, b"c"], 1)


def test_joined_entries_whose_lengths_do_not_add_up_are_refused() -> None:
    with pytest.raises(ValueError, match="entries of 5 bytes in all, given 4 bytes"):
        fmt.encode_blocks(fmt.JoinedEntries(b"abcd", [2, 3]), 1, 100, 1 << 20)


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
