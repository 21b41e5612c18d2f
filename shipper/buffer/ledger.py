"""The ledger: which segments live, what they hold, and what of it is durable.

The state the writer, the reader and recovery share (Vector's disk buffer calls it the
ledger, too): the live segments by id, the next segment id, the bytes and records held, and
the versions that tell whether the directory and the acks file on disk lag behind memory.
Persisting them is a sync, split so that fsync runs off the event loop: `begin_sync` (loop)
-> `SyncJob.run` (any thread) -> `finish_sync` (loop). The acks file is written only here.

Invariants:
- A segment file is deleted only when it is sealed (not the write segment) and its
  contiguous acknowledged prefix reaches its end (`delete_if_done`).
- `bytes_held` / `records_held` count framed bytes / records appended (or recovered) and not
  yet acknowledged, including those handed out to a reader.
- Segment ids only grow: `next_id` is persisted in the acks file, so a stale acks entry can
  never apply to a new segment.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shipper.buffer import format as fmt
from shipper.buffer.segment_file import Segment
from shipper.durable import fsync_directory, fsync_file, raise_if_disk_full, replace_atomically

FsyncPolicy = Literal["always", "batch", "never"]


class BufferClosedError(RuntimeError):
    """append / read on a closed buffer: a shutdown-ordering bug in the caller."""


class Ledger:
    """The live segments and their accounting. Not thread-safe."""

    def __init__(self, directory: Path, fsync: FsyncPolicy) -> None:
        self.directory = directory
        self.fsync_policy: FsyncPolicy = fsync
        self.segments: dict[int, Segment] = {}
        self.ids: list[int] = []  # sorted ids of live segments
        self.next_id = 1
        self.bytes_held = 0
        self.records_held = 0
        self.ack_version = 0  # bumped whenever what the acks file would hold changes
        self.acks_persisted_version = -1
        self.dir_version = 0  # bumped on every create / delete / rename in the directory
        self.dir_synced_version = 0
        self.closed = False
        self._oldest: tuple[int, int, int] | None = None  # (id, offset, time ms)

    # ----------------------------------------------------------------- live segments

    def add(self, segment: Segment) -> None:
        self.segments[segment.id] = segment
        bisect.insort(self.ids, segment.id)

    def create_segment(self) -> Segment:
        """A new write segment under the next id; DiskFullError with nothing changed."""
        segment = Segment.create(self.directory, self.next_id)
        self.next_id += 1
        self.dir_version += 1
        self.ack_version += 1  # the acks file records the next id
        self.add(segment)
        return segment

    def delete_if_done(self, segment: Segment) -> None:
        """Deletes the segment if it is sealed and acknowledged to its end."""
        if segment.sealed and segment.acked >= segment.end and segment.id in self.segments:
            self.delete(segment)

    def delete(self, segment: Segment) -> None:
        del self.segments[segment.id]
        self.ids.remove(segment.id)
        self.dir_version += 1
        self.ack_version += 1
        segment.delete()

    def oldest_unacked_time_ms(self) -> int | None:
        """Append time of the oldest unacknowledged record: the first one past an acked prefix."""
        for segment_id in self.ids:
            segment = self.segments[segment_id]
            if segment.acked >= segment.end:
                continue
            cached = self._oldest
            if cached is not None and cached[:2] == (segment_id, segment.acked):
                return cached[2]
            time_ms = segment.append_time_ms(segment.acked)
            if time_ms is not None:
                self._oldest = (segment_id, segment.acked, time_ms)
            return time_ms
        return None

    def close_files(self) -> None:
        """Closes every segment's files; syncs nothing."""
        self.closed = True
        for segment in self.segments.values():
            segment.close()

    # ----------------------------------------------------------------- durability

    def begin_sync(self, *, data: bool = True, acks: bool = True) -> SyncJob:
        """Snapshots what a sync must do; run the job anywhere, then call `finish_sync`."""
        segments: list[tuple[Segment, Path, int]] = []
        dir_version = -1
        do_fsync = self.fsync_policy != "never"
        if data and do_fsync:
            segments = [(s, s.path, s.end) for s in self.segments.values() if s.synced_end < s.end]
            if self.dir_synced_version != self.dir_version:
                dir_version = self.dir_version
        acks_data: bytes | None = None
        if acks and self.acks_persisted_version != self.ack_version:
            acked = {s.id: s.acked for s in self.segments.values()}
            acks_data = fmt.encode_acks(self.next_id, acked)
        return SyncJob(self.directory, do_fsync, segments, dir_version, acks_data, self.ack_version)

    def finish_sync(self, job: SyncJob) -> None:
        if job.data_done:
            for segment, _path, end in job.segments:
                segment.synced_end = max(segment.synced_end, end)
            if job.dir_version >= 0:
                self.dir_synced_version = max(self.dir_synced_version, job.dir_version)
        if job.acks_done and job.acks is not None:
            self.acks_persisted_version = max(self.acks_persisted_version, job.acks_version)

    def sync(self) -> None:
        """Synchronous sync: data and directory durable (policy permitting), acks persisted."""
        job = self.begin_sync()
        if job.empty:
            return
        try:
            job.run()
        finally:
            self.finish_sync(job)

    @property
    def acks_dirty(self) -> bool:
        return self.acks_persisted_version != self.ack_version


@dataclass(slots=True, eq=False)
class SyncJob:
    """The blocking half of a sync: plain data, safe to run in a worker thread."""

    directory: Path
    fsync: bool
    segments: list[tuple[Segment, Path, int]]  # fsync these files, then mark synced up to
    dir_version: int  # fsync the directory when not -1
    acks: bytes | None
    acks_version: int
    data_done: bool = False
    acks_done: bool = False

    @property
    def empty(self) -> bool:
        return not self.segments and self.dir_version < 0 and self.acks is None

    def run(self) -> None:
        """fsync the segments and the directory, then replace the acks file."""
        try:
            if self.fsync:
                for _segment, path, _end in self.segments:
                    fsync_file(path)
                if self.dir_version >= 0:
                    fsync_directory(self.directory)
            self.data_done = True
            if self.acks is not None:
                write_acks_file(self.directory, self.acks, fsync=self.fsync)
            self.acks_done = True
        except OSError as exc:
            raise_if_disk_full(exc, "syncing the buffer")
            raise


def write_acks_file(directory: Path, data: bytes, *, fsync: bool) -> None:
    """Replaces the acks file atomically; on failure the old file stays as it was."""
    replace_atomically(directory / fmt.ACKS_NAME, data, fsync=fsync, mode=0o644)
