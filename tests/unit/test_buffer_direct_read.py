"""`format.read_blocks` (large blocks read straight into their entries) against the one read
that `decode_records` decodes: on valid segments the same blocks, and on damaged ones either
the same blocks or a fallback (None) to the one read, never anything else."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shipper.buffer import format as fmt

HEADER = fmt.SEGMENT_HEADER_SIZE


def segment_of(appends: list[tuple[list[int], int, int]]) -> tuple[bytes, list[int]]:
    """A segment's bytes from appends of (entry sizes, block_max_entries, block_max_bytes),
    and the offset of every frame in it."""
    parts = [fmt.encode_segment_header(1)]
    offsets = []
    at = HEADER
    number = 0
    for sizes, block_entries, block_bytes in appends:
        entries = []
        for size in sizes:
            entries.append(b"%d:" % number + bytes([97 + number % 26]) * size)
            number += 1
        encoded = fmt.encode_blocks(entries, 1000 + number, block_entries, block_bytes)
        offsets.extend(at + framed.start for framed in encoded.framed)
        parts.append(encoded.joined())
        at += encoded.size
    return b"".join(parts), offsets


def one_read(
    file: bytes, start: int, want: int, available: int, max_entries: int, max_bytes: int
) -> fmt.Decoded:
    """What Segment.read decodes: one pread, and a second for a first block larger
    than the first."""
    buf = file[start : start + want]
    decoded = fmt.decode_records(buf, max_entries, max_bytes)
    first_too_big = not decoded.blocks and decoded.stop == fmt.INCOMPLETE
    if first_too_big and len(buf) == want and decoded.need <= available:
        decoded = fmt.decode_records(file[start : start + decoded.need], 1, max_bytes)
    return decoded


appends = st.lists(
    st.tuples(
        st.lists(st.one_of(st.integers(0, 300), st.integers(10_000, 40_000)), max_size=8),
        st.integers(1, 6),
        st.integers(1, 200_000),
    ).filter(lambda append: bool(append[0])),
    min_size=1,
    max_size=8,
)


@settings(max_examples=400, deadline=None)
@given(appends, st.data())
def test_valid_segments_read_as_the_one_read_decodes(
    appended: list[tuple[list[int], int, int]], data: st.DataObject
) -> None:
    file, offsets = segment_of(appended)
    start = data.draw(st.sampled_from(offsets), label="start")
    available = len(file) - start
    max_entries = data.draw(st.integers(1, 30), label="max_entries")
    max_bytes = data.draw(st.integers(1, 300_000), label="max_bytes")
    want = min(available, fmt.read_size(max_entries, max_bytes))
    reads: list[tuple[int, int]] = []

    def pread(size: int, offset: int) -> bytes:
        reads.append((size, offset))
        return file[offset : offset + size]

    expected = one_read(file, start, want, available, max_entries, max_bytes)
    got = fmt.read_blocks(pread, start, want, available, max_entries, max_bytes)
    assert got is not None  # valid data never falls back
    assert got.blocks == expected.blocks
    assert (got.consumed, got.entry_count, got.payload_bytes) == (
        expected.consumed,
        expected.entry_count,
        expected.payload_bytes,
    )
    # Past what it takes, only a head window at the next frame: no entries of a block that
    # the limits leave out are read.
    frames = set(offsets)
    assert all(at in frames for _, at in reads if at >= start + expected.consumed)


@settings(max_examples=400, deadline=None)
@given(appends, st.data())
def test_damaged_segments_give_the_same_blocks_or_fall_back(
    appended: list[tuple[list[int], int, int]], data: st.DataObject
) -> None:
    file, offsets = segment_of(appended)
    damaged = bytearray(file)
    for _ in range(data.draw(st.integers(1, 3), label="flips")):
        at = data.draw(st.integers(HEADER, len(file) - 1), label="at")
        damaged[at] ^= data.draw(st.integers(1, 255), label="bits")
    cut = data.draw(st.integers(HEADER, len(file)), label="file cut at")
    damaged_file = bytes(damaged[:cut])
    start = data.draw(st.sampled_from(offsets), label="start")
    if start >= cut:
        return
    available = len(file) - start  # what the segment believes it holds
    max_entries = data.draw(st.integers(1, 30), label="max_entries")
    max_bytes = data.draw(st.integers(1, 300_000), label="max_bytes")
    want = min(available, fmt.read_size(max_entries, max_bytes))

    def pread(size: int, offset: int) -> bytes:
        return damaged_file[offset : offset + size]

    got = fmt.read_blocks(pread, start, want, available, max_entries, max_bytes)
    if got is None:
        return  # the caller decodes the one read: the one definition for damaged data
    expected = one_read(damaged_file, start, want, available, max_entries, max_bytes)
    assert got.blocks == expected.blocks
    assert got.consumed == expected.consumed


def test_many_small_blocks_stop_where_the_one_read_stops() -> None:
    """The one read's size, not the limits, ends it: 100 frames of a 2-3 byte entry each,
    read(100 entries, 600 bytes) in one read of 600 + 100 * 4 + 64 * 20 bytes."""
    file, _ = segment_of([([0], 1, 100)] * 100)
    want = 600 + 100 * 4 + 64 * 20
    expected = one_read(file, HEADER, want, len(file) - HEADER, 100, 600)
    got = fmt.read_blocks(
        lambda size, at: file[at : at + size], HEADER, want, len(file) - HEADER, 100, 600
    )
    assert got is not None and 0 < got.entry_count < 100
    assert (got.blocks, got.consumed) == (expected.blocks, expected.consumed)


def test_a_large_block_whose_lengths_do_not_add_up_falls_back() -> None:
    """A writer bug, not a disk fault: the crc matches. The one read reports it."""
    entries = [b"x" * 40_000, b"y" * 40_000]
    payload = fmt._COUNT.pack(2) + fmt.struct.pack("<2I", 40_000, 39_999) + entries[0] + entries[1]
    crc = fmt._crc32(payload, fmt._crc32(fmt._TIME.pack(1)))
    file = fmt.encode_segment_header(1) + fmt._FRAME.pack(len(payload), crc, 1) + payload
    available = len(file) - HEADER
    assert fmt.decode_records(file[HEADER:], 10, 1 << 20).problem == (
        "block entry lengths do not add up to its size"
    )
    read = fmt.read_blocks(
        lambda size, at: file[at : at + size], HEADER, available, available, 10, 1 << 20
    )
    assert read is None


def test_a_large_block_beyond_the_limits_is_not_read() -> None:
    file, offsets = segment_of([([40_000], 1, 1 << 20), ([40_000, 40_000], 2, 1 << 20)])
    reads: list[tuple[int, int]] = []

    def pread(size: int, at: int) -> bytes:
        reads.append((size, at))
        return file[at : at + size]

    available = len(file) - HEADER
    got = fmt.read_blocks(pread, HEADER, available, available, 2, 1 << 20)
    assert got is not None and got.entry_count == 1  # the second block would make it 3
    assert got.consumed == offsets[1] - HEADER
    assert max(size for size, _ in reads) <= 65536  # head windows only, not the 80,000
