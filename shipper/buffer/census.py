"""Whose records a disk buffer holds: unacknowledged entries counted per key, read-only.

The agent counts, once at start, what the buffer kept from the previous process, per
container (`accounting.py`: `recovered`). A block is one append, and an append is one
container's: the key of a block's first entry is the key of all of them, so each block
costs two `pread`s (its frame head with the first entry's length, then that entry's first
bytes), never a read of the whole data.

Call it right after `DiskBuffer.open`: recovery has just validated every frame from each
segment's acknowledged offset to its end, cut torn tails, set corrupt files aside and
rewritten the acks file, so frames can be walked by their lengths without checksums, and
the acks file says exactly where each segment's unacknowledged records begin. Only the
format (`format.py`) is relied upon, as `inspect.py` does.
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from shipper.buffer import format as fmt

_HEAD = fmt.FRAME_HEADER_SIZE + 8  # frame header, entry count, first entry's length
_U32 = struct.Struct("<I")


def entries_by_key(
    directory: Path, key_of: Callable[[bytes], str], prefix_bytes: int = 320
) -> Counter[str]:
    """Unacknowledged entries per `key_of(first prefix_bytes of a block's first entry)`."""
    counts: Counter[str] = Counter()
    try:
        _next_id, acked = fmt.decode_acks((directory / fmt.ACKS_NAME).read_bytes())
    except (FileNotFoundError, fmt.FormatError):
        acked = {}
    segments = sorted(
        (segment_id, path)
        for path in directory.iterdir()
        if (segment_id := fmt.parse_segment_name(path.name)) is not None
    )
    for segment_id, path in segments:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            try:
                version = fmt.decode_segment_header(
                    os.pread(fd, fmt.SEGMENT_HEADER_SIZE, 0), segment_id
                )
            except fmt.FormatError:
                continue
            pos = max(acked.get(segment_id, 0), fmt.SEGMENT_HEADER_SIZE)
            while pos + fmt.FRAME_HEADER_SIZE <= size:
                head = os.pread(fd, _HEAD, pos)
                length, _time_ms = fmt.peek_record(head[: fmt.FRAME_HEADER_SIZE])
                end = pos + fmt.FRAME_HEADER_SIZE + length
                if end > size:
                    break  # not a whole frame: recovery would have cut it
                if version == 1:
                    entries, first_at, first_length = 1, pos + fmt.FRAME_HEADER_SIZE, length
                else:
                    entries = fmt.block_count(head[fmt.FRAME_HEADER_SIZE :])
                    (first_length,) = _U32.unpack_from(head, fmt.FRAME_HEADER_SIZE + 4)
                    first_at = pos + fmt.FRAME_HEADER_SIZE + 4 + fmt.ENTRY_OVERHEAD * entries
                prefix = os.pread(fd, min(first_length, prefix_bytes), first_at)
                counts[key_of(prefix)] += entries
                pos = end
        finally:
            os.close(fd)
    return counts
