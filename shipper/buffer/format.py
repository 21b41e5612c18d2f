"""On-disk format of the disk buffer: segment files, record frames and the acks file.

Layout of `<storage.path>/buffer/`::

    00000000000000000007.seg   segment files; ids increase monotonically and are never reused
    00000000000000000008.seg   the highest id is the one being written (after a restart: none
                               is; the first append opens a new one)
    acks                       acknowledged prefix of every live segment + next segment id
    acks.tmp                   exists only while `acks` is being replaced
    corrupt/                   segments and acks files set aside by recovery, kept for forensics

Segment file (all integers little-endian)::

    header  16 bytes   magic b"SHPSEG" | format version u16 | segment id u64
    record  16 bytes   length u32 | crc32 u32 | append time ms i64
            + payload  `length` bytes: one *block*, the entries of one append call:
                       count u32 | count x entry length u32 | the entries, concatenated
    record  ...

An entry is opaque here (an encoded bulk action + document). `crc32 = zlib.crc32(payload,
zlib.crc32(append time as i64))` (computed by ISA-L when installed: the same CRC): it covers the time too, so a flipped bit there cannot produce
a nonsense lag metric. A flipped length is caught because the payload it frames then fails its
crc (or runs past the end of the file); a count or entry lengths that do not add up to the
payload are reported as a bad record although the crc matched (a writer bug, not a disk fault).

Why this shape:
- Length-prefixed, not newline-delimited: entries are opaque and contain newlines themselves.
- One frame and one crc per *block*, not per entry (format version 2): the hot path appends
  thousands of entries per call, and per-entry framing (a pack and a crc call each, then an
  unpack, a crc and a slice each when reading) cost more CPU than everything else the buffer
  does. The sink sends a block's concatenated entries as they are; it splits a block into
  entries only when Elasticsearch answered something about single items. Reads, acks and
  torn-tail recovery work on whole blocks: a block is handed out, acknowledged and lost to a
  torn write as a unit (its lines were not checkpointed yet: they are read from Docker again).
  Writers keep blocks small enough for one bulk request (`DiskBuffer`'s block limits).
- The append time in every record (8 bytes per block) survives restarts: the age of the oldest
  unacknowledged record, the end-to-end lag metric, is one 16-byte `pread` at the acknowledged
  offset of the oldest live segment, with no in-memory index.
- The segment id in the header catches a file copied or renamed into the wrong place.
- Segments, not one ring file: space is given back by deleting whole files, which is one
  cheap, atomic syscall, and a corrupt file can be moved aside without touching the others.

Format version 1 (read, never written): the same frames, each payload one entry.

Acks file::

    magic b"SHPACK" | format version u16 | next segment id u64 | count u32
    count x (segment id u64 | acked offset u64)
    crc32 u32 over everything before it

`acked offset` is the end of the contiguous acknowledged prefix of that segment: every record
before it was acknowledged, the record at it was not (yet, when the file was written).
Out-of-order acks beyond the first gap are kept in memory only; after a crash those few
records are delivered again, which the sink's deterministic `_id` makes harmless. The file is
small (one pair per live segment) and replaced whole: tmp -> fsync -> rename -> fsync(dir),
so a crash or a full disk leaves either the old or the new file, never a mix. A segment that
the file does not name has nothing acknowledged; a name whose segment file is gone was fully
acknowledged and deleted. `next segment id` keeps ids monotonic even when every segment has
been deleted, so a stale acks entry can never apply to a new segment with a reused id.

Bump the version on any change; readers refuse versions they do not know. Acks files are the
same in versions 1 and 2 and carry version 1.
"""

from __future__ import annotations

import bisect
import itertools
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

from shipper.errors import PermanentError
from shipper.fastzlib import crc32 as _crc32

SEGMENT_MAGIC: Final = b"SHPSEG"
ACKS_MAGIC: Final = b"SHPACK"
FORMAT_VERSION: Final = 2  # of segments written now; version 1 segments are still read
READABLE_VERSIONS: Final = (1, 2)
ACKS_FORMAT_VERSION: Final = 1

SEGMENT_SUFFIX: Final = ".seg"
ACKS_NAME: Final = "acks"
CORRUPT_DIR: Final = "corrupt"

_SEGMENT_HEADER: Final = struct.Struct("<6sHQ")
SEGMENT_HEADER_SIZE: Final = _SEGMENT_HEADER.size  # 16

_FRAME: Final = struct.Struct("<IIq")
FRAME_HEADER_SIZE: Final = _FRAME.size  # 16
_TIME: Final = struct.Struct("<q")
_COUNT: Final = struct.Struct("<I")
ENTRY_OVERHEAD: Final = 4  # bytes of framing per entry in a block (its length)

# Blocks are "up to a few MB"; anything near this is a corrupt length field, not data.
MAX_RECORD_BYTES: Final = 256 * 1024 * 1024

_ACKS_HEAD: Final = struct.Struct("<6sHQI")
_ACKS_PAIR: Final = struct.Struct("<QQ")
_CRC: Final = struct.Struct("<I")

# Why `decode_records` stopped.
END: Final = 0  # consumed the whole buffer
LIMIT: Final = 1  # max_entries or max_bytes reached
INCOMPLETE: Final = 2  # the next frame does not fit in the buffer; `need` bytes would
BAD: Final = 3  # the next frame is invalid; `problem` says why


class FormatError(ValueError):
    """Bytes on disk that are not what this module writes."""


@dataclass(frozen=True, slots=True)
class Block:
    """The entries of one record: `data` is their concatenation, `lengths` their sizes."""

    data: bytes
    lengths: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.lengths)

    def entries(self) -> list[bytes]:
        return split_entries(self.data, self.lengths)


def split_entries(data: bytes, lengths: Sequence[int]) -> list[bytes]:
    """The entries of a concatenation, given their lengths."""
    if len(lengths) == 1:
        return [data]
    out = []
    pos = 0
    for length in lengths:
        out.append(data[pos : pos + length])
        pos += length
    return out


class Decoded(NamedTuple):
    blocks: list[Block]
    consumed: int  # bytes of complete, valid frames at the start of the buffer
    entry_count: int  # entries in those blocks
    payload_bytes: int  # bytes of those entries (without any framing)
    stop: int  # END, LIMIT, INCOMPLETE or BAD
    need: int  # INCOMPLETE: size of the next frame (16 while its header is cut), else 0
    problem: str  # BAD: what is wrong with the frame at `consumed`, else ""

    @property
    def entries(self) -> list[bytes]:
        return [entry for block in self.blocks for entry in block.entries()]


def segment_name(segment_id: int) -> str:
    return f"{segment_id:020d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    stem, dot, suffix = name.partition(".")
    if dot and "." + suffix == SEGMENT_SUFFIX and len(stem) == 20 and stem.isdigit():
        return int(stem)
    return None


def encode_segment_header(segment_id: int, version: int = FORMAT_VERSION) -> bytes:
    return _SEGMENT_HEADER.pack(SEGMENT_MAGIC, version, segment_id)


def decode_segment_header(data: bytes, expected_id: int) -> int:
    """The format version of segment `expected_id`'s header; FormatError if it is not one."""
    if len(data) < SEGMENT_HEADER_SIZE:
        raise FormatError(f"segment header cut short at {len(data)} bytes")
    magic, version, segment_id = _SEGMENT_HEADER.unpack_from(data)
    if magic != SEGMENT_MAGIC:
        raise FormatError(f"bad segment magic {magic!r}")
    if version not in READABLE_VERSIONS:
        raise FormatError(f"unsupported segment format version {version}")
    if segment_id != expected_id:
        raise FormatError(f"header names segment {segment_id}, file name says {expected_id}")
    return int(version)


def encode_block(entries: Sequence[bytes], time_ms: int) -> bytes:
    """Frames the entries of one append as one record (format version 2): the definition
    that `encode_blocks` writes faster."""
    count = len(entries)
    lengths = list(map(len, entries))
    if sum(lengths) + ENTRY_OVERHEAD * (count + 1) > MAX_RECORD_BYTES:
        raise PermanentError(f"a block is larger than {MAX_RECORD_BYTES} bytes")
    payload = b"".join((_COUNT.pack(count), struct.pack(f"<{count}I", *lengths), *entries))
    crc = _crc32(payload, _crc32(_TIME.pack(time_ms)))
    return _FRAME.pack(len(payload), crc, time_ms) + payload


class FramedBlock(NamedTuple):
    """A block as `encode_blocks` framed it: its frame lies at [start, end) of the frames."""

    start: int
    end: int
    block: Block


class EncodedBlocks(NamedTuple):
    """Frames ready to be written with one `pwritev`, and each block as a reader decodes it."""

    parts: list[bytes]  # per block: frame header, count and lengths; then the entries
    size: int  # bytes of all parts
    framed: list[FramedBlock]

    def joined(self) -> bytes:
        return b"".join(self.parts)


class JoinedEntries(NamedTuple):
    """A batch of entries already concatenated, as the encoder writes them: `data` holds
    them back to back, `lengths` gives each one's size. A block's entries are stored this way,
    so a batch that makes one block (the common case) is written without copying it."""

    data: bytes
    lengths: list[int]

    @classmethod
    def of(cls, entries: Sequence[bytes]) -> JoinedEntries:
        return cls(b"".join(entries), list(map(len, entries)))

    def entries(self) -> list[bytes]:
        return split_entries(self.data, self.lengths)


def encode_blocks(
    entries: JoinedEntries | Sequence[bytes], time_ms: int, max_entries: int, max_bytes: int
) -> EncodedBlocks:
    """The frames of `entries` cut into blocks of at most `max_entries` entries and about
    `max_bytes` bytes each (a single larger entry makes a block of its own), and each block
    as a reader would decode it (for the buffer's cache of what it wrote and nobody read).

    The same bytes as `encode_block` of each block, concatenated, but in pieces: a block's
    entries are one bytes object, kept by the `Block` the cache holds, and written from there
    (`pwritev`), its crc computed over the head and the entries without joining the two.
    Entries given joined (`JoinedEntries`) that make a single block are used as they are;
    otherwise each block's entries are copied out once. At a few hundred bytes per entry,
    every copy of a batch costs more than framing it: a second large buffer is freshly mapped
    memory, page faults on every page (measured: 0.15 µs per entry for one copy, 0.7 for two).
    """
    joined = entries if isinstance(entries, JoinedEntries) else JoinedEntries.of(entries)
    all_lengths = joined.lengths
    total = sum(all_lengths)
    if total != len(joined.data):
        raise ValueError(f"entries of {total} bytes in all, given {len(joined.data)} bytes")
    count = len(all_lengths)
    if count <= max_entries and total <= max_bytes:
        cuts = [(0, count)]  # the common case: no running total to bisect
    else:
        cuts = _cuts(all_lengths, max_entries, max_bytes)
    seed = _crc32(_TIME.pack(time_ms))
    parts: list[bytes] = []
    framed: list[FramedBlock] = []
    offset = 0
    data_start = 0
    for first, stop in cuts:
        lengths = all_lengths if len(cuts) == 1 else all_lengths[first:stop]
        count = len(lengths)
        data_size = sum(lengths) if len(cuts) > 1 else total
        payload_length = data_size + ENTRY_OVERHEAD * (count + 1)
        if payload_length > MAX_RECORD_BYTES:
            raise PermanentError(f"a block is larger than {MAX_RECORD_BYTES} bytes")
        if data_size == len(joined.data):
            data = joined.data
        else:
            data = joined.data[data_start : data_start + data_size]
        data_start += data_size
        head = _COUNT.pack(count) + struct.pack(f"<{count}I", *lengths)
        crc = _crc32(data, _crc32(head, seed))
        parts.append(_FRAME.pack(payload_length, crc, time_ms) + head)
        parts.append(data)
        end = offset + FRAME_HEADER_SIZE + payload_length
        framed.append(FramedBlock(offset, end, Block(data, tuple(lengths))))
        offset = end
    return EncodedBlocks(parts, offset, framed)


def _cuts(lengths: list[int], max_entries: int, max_bytes: int) -> list[tuple[int, int]]:
    """[start, stop) of each block: a block ends before the entry that would make it hold more
    than `max_entries` entries or `max_bytes` bytes, and holds at least one entry.

    Found by bisecting the running total rather than walking the entries: a loop per entry
    here was a tenth of the buffer's append time.
    """
    count = len(lengths)
    ends = list(itertools.accumulate(lengths))  # ends[i]: bytes of entries 0..i
    if not ends or (count <= max_entries and ends[-1] <= max_bytes):
        return [(0, count)]
    cuts = []
    start = 0
    while start < count:
        base = ends[start - 1] if start else 0
        # The first entry whose end passes the byte limit does not fit (unless it is first).
        stop = bisect.bisect_right(ends, base + max_bytes, start)
        stop = min(max(stop, start + 1), start + max_entries, count)
        cuts.append((start, stop))
        start = stop
    return cuts


def encode_v1_records(entries: Sequence[bytes], time_ms: int) -> bytes:
    """Format version 1 frames, one per entry: only for tests of reading old segments."""
    seed = _crc32(_TIME.pack(time_ms))
    return b"".join(_FRAME.pack(len(e), _crc32(e, seed), time_ms) + e for e in entries)


def decode_records(
    buf: bytes, max_entries: int, max_bytes: int, version: int = FORMAT_VERSION
) -> Decoded:
    """Decodes whole records (blocks) from the start of `buf`; at least one if one is complete.

    Stops before the block that would push the entries past `max_entries` or their bytes past
    `max_bytes`, unless it is the first. Version 1 records hold one entry each.
    """
    blocks: list[Block] = []
    add = blocks.append
    unpack = _FRAME.unpack_from
    crc32 = _crc32
    pack_time = _TIME.pack
    size = len(buf)
    pos = 0
    total = 0
    count = 0
    last_time = None
    seed = 0
    while True:
        if blocks and count >= max_entries:
            return Decoded(blocks, pos, count, total, LIMIT, 0, "")
        if size - pos < FRAME_HEADER_SIZE:
            if pos == size:
                return Decoded(blocks, pos, count, total, END, 0, "")
            return Decoded(blocks, pos, count, total, INCOMPLETE, FRAME_HEADER_SIZE, "")
        length, crc, time_ms = unpack(buf, pos)
        if length > MAX_RECORD_BYTES:
            return Decoded(blocks, pos, count, total, BAD, 0, f"impossible record length {length}")
        end = pos + FRAME_HEADER_SIZE + length
        if end > size:
            return Decoded(blocks, pos, count, total, INCOMPLETE, FRAME_HEADER_SIZE + length, "")
        if time_ms != last_time:
            seed = crc32(pack_time(time_ms))
            last_time = time_ms
        start = pos + FRAME_HEADER_SIZE
        if crc32(memoryview(buf)[start:end], seed) != crc:
            return Decoded(blocks, pos, count, total, BAD, 0, "record crc mismatch")
        if version == 1:
            block = Block(buf[start:end], (length,))
        else:
            block_or_problem = _block(buf, start, end)
            if isinstance(block_or_problem, str):
                return Decoded(blocks, pos, count, total, BAD, 0, block_or_problem)
            block = block_or_problem
        data_bytes = len(block.data)
        if blocks and (count + block.count > max_entries or total + data_bytes > max_bytes):
            return Decoded(blocks, pos, count, total, LIMIT, 0, "")
        add(block)
        total += data_bytes
        count += block.count
        pos = end


def read_size(max_entries: int, max_bytes: int) -> int:
    """Bytes one read of a segment takes for a batch of these limits: the entries plus their
    framing, with room for the headers of 64 blocks (one pread, no per-block system calls)."""
    return max_bytes + max_entries * ENTRY_OVERHEAD + 64 * (FRAME_HEADER_SIZE + _COUNT.size)


# `read_blocks` reads frame headers this many bytes at a time; blocks that do not fit are read
# on their own. Small: a block of the hot path (a few thousand entries) has a 10-20 KB head.
_HEAD_WINDOW: Final = 64 * 1024

Pread = Callable[[int, int], bytes]  # (size, offset) -> the bytes there, short at the end


class ReadBlocks(NamedTuple):
    blocks: list[Block]
    consumed: int
    entry_count: int
    payload_bytes: int


def read_blocks(
    pread: Pread, start: int, want: int, available: int, max_entries: int, max_bytes: int
) -> ReadBlocks | None:
    """What `decode_records(pread(want, start), ...)` decodes from a version 2 segment, when
    every frame it would take is valid, read so that each large block's entries land in their
    `Block` straight from the file: the one-read-then-slice way copied every byte twice
    (the slice was 6 % of the event loop in the backlog benchmark). None as soon as anything
    is not plain (a bad or torn frame, a short read): the caller then decodes the one read,
    the one definition of what happens to damaged data.

    `want` is the size of that one read, `available` how far the segment's data reaches (a
    first block larger than `want` is taken whole, as the caller does after a second read).
    """
    blocks: list[Block] = []
    count = 0
    total = 0
    pos = 0  # relative to start, as in the one read
    window = b""
    window_at = 0
    seed_time: int | None = None
    seed = 0
    head_size = FRAME_HEADER_SIZE + _COUNT.size
    while True:
        if blocks and count >= max_entries:
            break
        if want - pos < FRAME_HEADER_SIZE:
            if pos == want or blocks:
                break  # the end of the read, or a frame cut by it behind taken blocks
            return None
        off = pos - window_at
        if off + head_size > len(window):
            size = min(max(want - pos, head_size), _HEAD_WINDOW)
            window = pread(size, start + pos)
            window_at = pos
            off = 0
            if len(window) < min(size, available - pos):
                return None  # the file is shorter than the segment says
        if off + head_size > len(window):
            return None
        length, crc, time_ms = _FRAME.unpack_from(window, off)
        if length > MAX_RECORD_BYTES or length < _COUNT.size:
            return None
        end = pos + FRAME_HEADER_SIZE + length
        if end > want:
            if blocks:
                break  # the one read stops before this frame too
            if end > available:
                return None
        if time_ms != seed_time:
            seed = _crc32(_TIME.pack(time_ms))
            seed_time = time_ms
        payload_at = off + FRAME_HEADER_SIZE
        if end - window_at <= len(window):
            if _crc32(memoryview(window)[payload_at : end - window_at], seed) != crc:
                return None
            block_or_problem = _block(window, payload_at, end - window_at)
            if isinstance(block_or_problem, str):
                return None
            block = block_or_problem
        else:
            (entries,) = _COUNT.unpack_from(window, payload_at)
            head_length = _COUNT.size + ENTRY_OVERHEAD * entries
            if entries == 0 or head_length > length:
                return None
            if blocks and (
                count + entries > max_entries or total + length - head_length > max_bytes
            ):
                break  # the limits stop before this block: do not read it
            lengths_at = payload_at + _COUNT.size
            if payload_at + head_length <= len(window):
                lengths_raw = window[lengths_at : payload_at + head_length]
            else:
                lengths_raw = pread(head_length - _COUNT.size, start + pos + head_size)
            data = pread(length - head_length, start + pos + FRAME_HEADER_SIZE + head_length)
            if len(lengths_raw) != head_length - _COUNT.size or len(data) != length - head_length:
                return None
            head_crc = _crc32(lengths_raw, _crc32(window[payload_at:lengths_at], seed))
            if _crc32(data, head_crc) != crc:
                return None
            lengths: tuple[int, ...] = struct.unpack(f"<{entries}I", lengths_raw)
            if sum(lengths) != len(data):
                return None
            block = Block(data, lengths)
            window = b""  # what follows is read afresh from the block's end
            window_at = end
        data_bytes = len(block.data)
        if blocks and (count + block.count > max_entries or total + data_bytes > max_bytes):
            break
        blocks.append(block)
        total += data_bytes
        count += block.count
        pos = end
    return ReadBlocks(blocks, pos, count, total)


def _block(buf: bytes, start: int, end: int) -> Block | str:
    """The block in buf[start:end] (crc already checked), or what is wrong with it."""
    if end - start < _COUNT.size:
        return "block too short for its entry count"
    (count,) = _COUNT.unpack_from(buf, start)
    data_start = start + _COUNT.size + ENTRY_OVERHEAD * count
    if count == 0 or data_start > end:
        return f"block claims {count} entries"
    lengths: tuple[int, ...] = struct.unpack_from(f"<{count}I", buf, start + _COUNT.size)
    if sum(lengths) != end - data_start:
        return "block entry lengths do not add up to its size"
    return Block(buf[data_start:end], lengths)


def block_count(payload_header: bytes) -> int:
    """Entries in a version 2 block, from the first 4 bytes of its payload."""
    return int(_COUNT.unpack_from(payload_header)[0])


def peek_record(data: bytes) -> tuple[int, int]:
    """(length, append time ms) from the 16 bytes of a frame header."""
    length, _crc, time_ms = _FRAME.unpack_from(data)
    return length, time_ms


def encode_acks(next_segment_id: int, acked: Mapping[int, int]) -> bytes:
    parts = [_ACKS_HEAD.pack(ACKS_MAGIC, ACKS_FORMAT_VERSION, next_segment_id, len(acked))]
    parts.extend(_ACKS_PAIR.pack(sid, offset) for sid, offset in sorted(acked.items()))
    body = b"".join(parts)
    return body + _CRC.pack(_crc32(body))


def decode_acks(data: bytes) -> tuple[int, dict[int, int]]:
    """(next segment id, {segment id: acked offset}); FormatError if the file is not valid."""
    if len(data) < _ACKS_HEAD.size + _CRC.size:
        raise FormatError(f"acks file cut short at {len(data)} bytes")
    magic, version, next_id, count = _ACKS_HEAD.unpack_from(data)
    if magic != ACKS_MAGIC:
        raise FormatError(f"bad acks magic {magic!r}")
    if version != ACKS_FORMAT_VERSION:
        raise FormatError(f"unsupported acks format version {version}")
    expected = _ACKS_HEAD.size + count * _ACKS_PAIR.size + _CRC.size
    if len(data) != expected:
        raise FormatError(f"acks file has {len(data)} bytes, its count says {expected}")
    (crc,) = _CRC.unpack_from(data, expected - _CRC.size)
    if _crc32(data[: expected - _CRC.size]) != crc:
        raise FormatError("acks file crc mismatch")
    acked = dict(_ACKS_PAIR.iter_unpack(data[_ACKS_HEAD.size : expected - _CRC.size]))
    return next_id, acked
