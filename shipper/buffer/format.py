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
            + payload  `length` bytes, one opaque entry (an encoded bulk action + document)
    record  ...

`crc32 = zlib.crc32(payload, zlib.crc32(append time as i64))`: it covers the time too, so a
flipped bit there cannot produce a nonsense lag metric. A flipped length is caught because
the payload it frames then fails its crc (or runs past the end of the file).

Why this shape:
- Length-prefixed, not newline-delimited: entries are opaque and contain newlines themselves.
- One crc per record rather than per append batch: reads split batches anywhere (they stop at
  `max_entries` / `max_bytes`), acks name record boundaries, and a bad record costs only what
  follows it in its segment. All records of one append batch share the append time, so the
  crc seed of the time is computed once per batch and each record costs one `crc32` call.
- The append time in every record (8 bytes, ~4% of a 200-byte entry) survives restarts: the
  age of the oldest unacknowledged record, the end-to-end lag metric, is one 16-byte `pread`
  at the acknowledged offset of the oldest live segment, with no in-memory index.
- The segment id in the header catches a file copied or renamed into the wrong place.
- Segments, not one ring file: space is given back by deleting whole files, which is one
  cheap, atomic syscall, and a corrupt file can be moved aside without touching the others.

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

Bump the version on any change; readers refuse versions they do not know.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping, Sequence
from typing import Final, NamedTuple

from shipper.errors import PermanentError

SEGMENT_MAGIC: Final = b"SHPSEG"
ACKS_MAGIC: Final = b"SHPACK"
FORMAT_VERSION: Final = 1

SEGMENT_SUFFIX: Final = ".seg"
ACKS_NAME: Final = "acks"
CORRUPT_DIR: Final = "corrupt"

_SEGMENT_HEADER: Final = struct.Struct("<6sHQ")
SEGMENT_HEADER_SIZE: Final = _SEGMENT_HEADER.size  # 16

_FRAME: Final = struct.Struct("<IIq")
FRAME_HEADER_SIZE: Final = _FRAME.size  # 16
_TIME: Final = struct.Struct("<q")

# Entries are "up to a few MB"; anything near this is a corrupt length field, not data.
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


class Decoded(NamedTuple):
    entries: list[bytes]
    consumed: int  # bytes of complete, valid frames at the start of the buffer
    payload_bytes: int
    stop: int  # END, LIMIT, INCOMPLETE or BAD
    need: int  # INCOMPLETE: size of the next frame (16 while its header is cut), else 0
    problem: str  # BAD: what is wrong with the frame at `consumed`, else ""


def segment_name(segment_id: int) -> str:
    return f"{segment_id:020d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    stem, dot, suffix = name.partition(".")
    if dot and "." + suffix == SEGMENT_SUFFIX and len(stem) == 20 and stem.isdigit():
        return int(stem)
    return None


def encode_segment_header(segment_id: int) -> bytes:
    return _SEGMENT_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, segment_id)


def decode_segment_header(data: bytes, expected_id: int) -> None:
    """Raises FormatError unless `data` is the header of segment `expected_id`."""
    if len(data) < SEGMENT_HEADER_SIZE:
        raise FormatError(f"segment header cut short at {len(data)} bytes")
    magic, version, segment_id = _SEGMENT_HEADER.unpack_from(data)
    if magic != SEGMENT_MAGIC:
        raise FormatError(f"bad segment magic {magic!r}")
    if version != FORMAT_VERSION:
        raise FormatError(f"unsupported segment format version {version}")
    if segment_id != expected_id:
        raise FormatError(f"header names segment {segment_id}, file name says {expected_id}")


def encode_records(entries: Sequence[bytes], time_ms: int) -> bytes:
    """Frames a batch into the bytes of one `write`."""
    if entries and max(map(len, entries)) > MAX_RECORD_BYTES:
        raise PermanentError(f"an entry is larger than {MAX_RECORD_BYTES} bytes")
    seed = zlib.crc32(_TIME.pack(time_ms))
    pack = _FRAME.pack
    crc32 = zlib.crc32
    parts: list[bytes] = []
    add = parts.append
    for entry in entries:
        add(pack(len(entry), crc32(entry, seed), time_ms))
        add(entry)
    return b"".join(parts)


def decode_records(buf: bytes, max_entries: int, max_bytes: int) -> Decoded:
    """Decodes frames from the start of `buf`; at least one entry if one is complete.

    Stops before the entry that would push the payload total past `max_bytes`, unless it is
    the first. The loop is the read hot path: locals only, one unpack and one crc per record.
    """
    entries: list[bytes] = []
    add = entries.append
    unpack = _FRAME.unpack_from
    crc32 = zlib.crc32
    pack_time = _TIME.pack
    size = len(buf)
    pos = 0
    total = 0
    count = 0
    last_time = None
    seed = 0
    while True:
        if count >= max_entries:
            return Decoded(entries, pos, total, LIMIT, 0, "")
        if size - pos < FRAME_HEADER_SIZE:
            if pos == size:
                return Decoded(entries, pos, total, END, 0, "")
            return Decoded(entries, pos, total, INCOMPLETE, FRAME_HEADER_SIZE, "")
        length, crc, time_ms = unpack(buf, pos)
        if length > MAX_RECORD_BYTES:
            return Decoded(entries, pos, total, BAD, 0, f"impossible record length {length}")
        end = pos + FRAME_HEADER_SIZE + length
        if end > size:
            return Decoded(entries, pos, total, INCOMPLETE, FRAME_HEADER_SIZE + length, "")
        if count and total + length > max_bytes:
            return Decoded(entries, pos, total, LIMIT, 0, "")
        payload = buf[pos + FRAME_HEADER_SIZE : end]
        if time_ms != last_time:
            seed = crc32(pack_time(time_ms))
            last_time = time_ms
        if crc32(payload, seed) != crc:
            return Decoded(entries, pos, total, BAD, 0, "record crc mismatch")
        add(payload)
        total += length
        count += 1
        pos = end


def peek_record(data: bytes) -> tuple[int, int]:
    """(length, append time ms) from the 16 bytes of a frame header."""
    length, _crc, time_ms = _FRAME.unpack_from(data)
    return length, time_ms


def encode_acks(next_segment_id: int, acked: Mapping[int, int]) -> bytes:
    parts = [_ACKS_HEAD.pack(ACKS_MAGIC, FORMAT_VERSION, next_segment_id, len(acked))]
    parts.extend(_ACKS_PAIR.pack(sid, offset) for sid, offset in sorted(acked.items()))
    body = b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


def decode_acks(data: bytes) -> tuple[int, dict[int, int]]:
    """(next segment id, {segment id: acked offset}); FormatError if the file is not valid."""
    if len(data) < _ACKS_HEAD.size + _CRC.size:
        raise FormatError(f"acks file cut short at {len(data)} bytes")
    magic, version, next_id, count = _ACKS_HEAD.unpack_from(data)
    if magic != ACKS_MAGIC:
        raise FormatError(f"bad acks magic {magic!r}")
    if version != FORMAT_VERSION:
        raise FormatError(f"unsupported acks format version {version}")
    expected = _ACKS_HEAD.size + count * _ACKS_PAIR.size + _CRC.size
    if len(data) != expected:
        raise FormatError(f"acks file has {len(data)} bytes, its count says {expected}")
    (crc,) = _CRC.unpack_from(data, expected - _CRC.size)
    if zlib.crc32(data[: expected - _CRC.size]) != crc:
        raise FormatError("acks file crc mismatch")
    acked = dict(_ACKS_PAIR.iter_unpack(data[_ACKS_HEAD.size : expected - _CRC.size]))
    return next_id, acked
