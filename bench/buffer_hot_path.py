"""The disk buffer's hot path alone: append encoded batches, read them as the output does, ack.

`python -m bench.buffer_hot_path [--batches N] [--entries E] [--entry-bytes B] [--backlog]`
prints `<batches> <entries> <seconds> <cpu seconds>`.

Without `--backlog` the reader follows the writer (one append, one read, one ack: the blocks
come from the buffer's tail cache, as in a shipper that keeps up); with it every batch is
appended first and then read back (past the tail cache's 16 MB the blocks come from the
segment files, as after an Elasticsearch outage). fsync "never": the disk is not measured.

Wall-clock time is noisy on a shared machine; for before/after comparisons count
instructions instead, and subtract a run with `--batches 0` (interpreter start and imports):

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m bench.buffer_hot_path
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from shipper.buffer import DiskBuffer
from shipper.buffer.format import JoinedEntries

# What the output takes per read by default (`batch_max_docs`, `batch_max_bytes`).
READ_MAX_ENTRIES = 5_000
READ_MAX_BYTES = 5 * 1024 * 1024


def batch_of(entries: int, entry_bytes: int) -> JoinedEntries:
    """One encoded batch; the buffer treats entries as opaque, so one batch serves all."""
    body = [
        b'{"message":"%06d ' % n + b"x" * max(0, entry_bytes - 30) + b'"}\n' for n in range(entries)
    ]
    return JoinedEntries.of(body)


async def run(directory: Path, batches: int, batch: JoinedEntries, *, backlog: bool) -> int:
    buffer = DiskBuffer.open(
        directory,
        max_bytes=1 << 40,
        segment_max_bytes=64 * 1024 * 1024,
        fsync="never",
        # Not once a second, as the shipper does: under callgrind a run takes seconds, and
        # how many acks files it writes would depend on how busy the machine is.
        ack_persist_interval_s=3600.0,
    )
    read_entries = 0
    try:
        if backlog:
            for _ in range(batches):
                await buffer.append(batch)
            while (got := await buffer.read(READ_MAX_ENTRIES, READ_MAX_BYTES, 0)) is not None:
                read_entries += got.count
                buffer.ack(got)
        else:
            for _ in range(batches):
                await buffer.append(batch)
                got = await buffer.read(READ_MAX_ENTRIES, READ_MAX_BYTES, 0)
                assert got is not None
                read_entries += got.count
                buffer.ack(got)
        assert buffer.records_held == 0
    finally:
        await buffer.close()
    return read_entries


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.buffer_hot_path")
    parser.add_argument("--batches", type=int, default=2_000)
    parser.add_argument("--entries", type=int, default=200, help="entries per append")
    parser.add_argument("--entry-bytes", type=int, default=300)
    parser.add_argument("--backlog", action="store_true", help="append everything, then read")
    args = parser.parse_args(argv)
    batch = batch_of(args.entries, args.entry_bytes)
    with tempfile.TemporaryDirectory(prefix="buffer-bench-", dir="/dev/shm") as tmp:
        started = time.perf_counter()
        cpu = time.process_time()
        entries = asyncio.run(run(Path(tmp), args.batches, batch, backlog=args.backlog))
        print(args.batches, entries, time.perf_counter() - started, time.process_time() - cpu)
    assert entries == args.batches * args.entries
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
