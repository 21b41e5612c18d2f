"""Random append / read / ack / nack / sync / restart / crash sequences against a model.

The guarantee under test, for policies "batch" and "always" (a crash here is a power loss:
the write segment loses an arbitrary part of what was not yet fsynced, possibly leaving
garbage behind):

Entries live in blocks (one per append here): a block is read, acknowledged and lost to a
torn write as a whole. After any restart, the buffer hands out a sequence S of entries such
that
1. S holds no entry that was never appended, none that was already lost, and no duplicate;
2. S is in append order;
3. every entry that was durable (synced, or appended with "always") and not acknowledged
   is in S;
4. no entry inside the persisted acknowledged prefix is in S. The model's lower bound of
   that prefix: the longest run of acknowledged entries from the oldest one, as it was at
   the last sync(), acks-only persist or clean close. (The buffer persists per segment,
   which covers at least that.)
Acked entries outside that prefix may be in S (duplicates the sink's `_id` absorbs); entries
that were neither durable nor acknowledged may be in S or lost (their Docker checkpoint was
never advanced). Between restarts, reads hand out exactly the next entries in append order
(nacked batches first) and the held counters match the model.
"""

from __future__ import annotations

import heapq
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from shipper.buffer import BufferBatch, SegmentQueue
from shipper.buffer import format as fmt
from shipper.buffer.ledger import FsyncPolicy


def payload(number: int, size: int) -> bytes:
    return f"{number}:".encode() + b"p" * size


def number_of(entry: bytes) -> int:
    return int(entry.split(b":", 1)[0])


class BufferModel(RuleBasedStateMachine):
    policy: FsyncPolicy = "batch"
    # Room for a few of the 300-byte segments: the reads in between restarts take blocks from
    # memory and, once it is full, from the files (a crash drops the cache, not the files).
    tail_cache_bytes = 700

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="buffer-model-"))
        self.reports: list[tuple[Path, str]] = []
        self.queue = self._open()
        self.next_number = 0
        self.sizes: dict[int, int] = {}
        self.live: list[int] = []  # entries that may exist, in append order
        self.durable: set[int] = set()
        self.acked: set[int] = set()
        self.persisted: set[int] = set()  # lower bound of the persisted acked prefix
        self.unread: list[int] = []
        # Batches handed out and not acked, by serial number (not id(): draws must not
        # depend on memory addresses, or hypothesis cannot replay them).
        self.outstanding: dict[int, tuple[BufferBatch, list[int]]] = {}
        self.serial = 0
        self.nacked: list[tuple[int, int]] = []  # heap of (first entry's position, serial)
        self.position: dict[int, int] = {}
        self.block_of: dict[int, int] = {}  # entry number -> its block
        self.blocks: dict[int, list[int]] = {}  # block -> its entry numbers, in order
        self.next_block = 0

    def _open(self) -> SegmentQueue:
        return SegmentQueue.open(
            self.directory,
            segment_max_bytes=300,
            fsync=self.policy,
            on_corrupt=lambda path, reason: self.reports.append((path, reason)),
            tail_cache_bytes=self.tail_cache_bytes,
        )

    def teardown(self) -> None:
        self.queue.close_files()
        shutil.rmtree(self.directory, ignore_errors=True)

    # ------------------------------------------------------------------ rules

    @rule(sizes=st.lists(st.integers(0, 120), min_size=1, max_size=4))
    def append(self, sizes: list[int]) -> None:
        numbers = list(range(self.next_number, self.next_number + len(sizes)))
        self.next_number += len(sizes)
        self.queue.append([payload(n, s) for n, s in zip(numbers, sizes, strict=True)], 1000)
        self._new_block(numbers)
        for number, size in zip(numbers, sizes, strict=True):
            self.sizes[number] = size
            self.position[number] = len(self.live)
            self.live.append(number)
        self.unread.extend(numbers)
        if self.policy == "always":
            self.durable.update(numbers)

    @rule(max_entries=st.integers(1, 5), max_bytes=st.integers(1, 400))
    def read(self, max_entries: int, max_bytes: int) -> None:
        batch = self.queue.read(max_entries, max_bytes)
        if self.nacked:
            _, key = heapq.heappop(self.nacked)
            expected_batch, _numbers = self.outstanding[key]
            assert batch is expected_batch
            return
        if not self.unread:
            assert batch is None
            return
        assert batch is not None
        numbers = [number_of(e) for e in batch.entries]
        assert numbers == self.unread[: len(numbers)]
        assert batch.entries == [payload(n, self.sizes[n]) for n in numbers]
        # Whole blocks, and more than one only within the limits.
        for block in batch.blocks:
            block_numbers = [number_of(e) for e in block.entries()]
            assert block_numbers == self.blocks[self.block_of[block_numbers[0]]]
        if len(batch.blocks) > 1:
            assert len(numbers) <= max_entries
            assert sum(len(e) for e in batch.entries) <= max_bytes
        assert (batch.count, batch.size) == (len(numbers), sum(map(len, batch.entries)))
        del self.unread[: len(numbers)]
        self._hand_out(batch, numbers)

    @precondition(lambda self: self.outstanding)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.outstanding)))
        batch, numbers = self.outstanding.pop(key)
        assert self.queue.ack(batch)
        assert not self.queue.ack(batch)
        self.acked.update(numbers)
        self.nacked = [item for item in self.nacked if item[1] != key]
        heapq.heapify(self.nacked)

    @precondition(lambda self: self.outstanding)
    @rule(data=st.data())
    def nack(self, data: st.DataObject) -> None:
        waiting = {key for _, key in self.nacked}
        candidates = sorted(set(self.outstanding) - waiting)
        if not candidates:
            return
        key = data.draw(st.sampled_from(candidates))
        batch, numbers = self.outstanding[key]
        assert self.queue.nack(batch)
        heapq.heappush(self.nacked, (self.position[numbers[0]], key))

    @rule()
    def sync(self) -> None:
        self.queue.sync()
        self._now_durable_and_persisted()

    @rule()
    def persist_acks_only(self) -> None:
        """What DiskBuffer.read() does periodically: acks durable, data maybe not, so a
        crash can cut the segment below a persisted acked offset."""
        job = self.queue.begin_sync(data=False, acks=True)
        job.run()
        self.queue.finish_sync(job)
        for number in self.live:
            if number not in self.acked:
                break
            self.persisted.add(number)

    @rule()
    def restart(self) -> None:
        self.queue.close()
        self._now_durable_and_persisted()
        self.queue = self._open()
        self._check_redelivery()

    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """Power loss: the unsynced part of the write segment is cut anywhere, and the
        cut may leave garbage (or zeros) behind."""
        synced = self.queue.write_segment_synced
        self.queue.close_files()
        if synced is not None:
            path, synced_end = synced
            size = os.path.getsize(path)
            cut = data.draw(st.integers(synced_end, size), label="cut")
            garbage = data.draw(st.binary(max_size=40), label="garbage")
            with open(path, "r+b") as file:
                file.truncate(cut)
                file.seek(cut)
                file.write(garbage)
        self.queue = self._open()
        if self.queue.recovery.torn_bytes_truncated:
            event("crash: torn tail truncated")
        if self.queue.recovery.corrupt:
            event("crash: garbage looked like corruption, segment set aside")
        self._check_redelivery()

    # ------------------------------------------------------------------ checks

    def _now_durable_and_persisted(self) -> None:
        self.durable.update(self.live)
        for number in self.live:
            if number not in self.acked:
                break
            self.persisted.add(number)

    def _check_redelivery(self) -> None:
        delivered: list[tuple[BufferBatch, list[int]]] = []
        while (batch := self.queue.read(7, 1 << 20)) is not None:
            delivered.append((batch, [number_of(e) for e in batch.entries]))
        numbers = [n for _, batch_numbers in delivered for n in batch_numbers]
        live = set(self.live)
        assert len(numbers) == len(set(numbers)), "an entry was delivered twice"
        assert set(numbers) <= live, "an entry was invented or came back from the dead"
        positions = [self.position[n] for n in numbers]
        assert positions == sorted(positions), "entries out of append order"
        for batch, batch_numbers in delivered:
            assert batch.entries == [payload(n, self.sizes[n]) for n in batch_numbers]
        must = {n for n in self.live if n in self.durable and n not in self.acked}
        assert must <= set(numbers), f"lost unacknowledged entries {sorted(must - set(numbers))}"
        assert not set(numbers) & self.persisted, "re-delivered a persisted ack"

        # Start over from what the buffer now holds: all of it handed out, nothing acked.
        self.blocks = {}
        self.block_of = {}
        for batch, _ in delivered:
            for block in batch.blocks:
                self._new_block([number_of(e) for e in block.entries()])
        self.live = numbers
        self.position = {n: i for i, n in enumerate(numbers)}
        self.durable = set(numbers)  # recovery fsyncs what it keeps
        self.acked = set()
        self.persisted = set()
        self.unread = []
        self.nacked = []
        self.outstanding = {}
        for batch, batch_numbers in delivered:
            self._hand_out(batch, batch_numbers)

    def _new_block(self, numbers: list[int]) -> None:
        self.next_block += 1
        self.blocks[self.next_block] = numbers
        for number in numbers:
            self.block_of[number] = self.next_block

    def _hand_out(self, batch: BufferBatch, numbers: list[int]) -> None:
        self.serial += 1
        self.outstanding[self.serial] = (batch, numbers)

    @invariant()
    def held_counters_match(self) -> None:
        held = [n for n in self.live if n not in self.acked]
        assert self.queue.records_held == len(held)
        held_blocks = {self.block_of[n] for n in held}
        expected_bytes = sum(
            fmt.FRAME_HEADER_SIZE
            + 4
            + sum(fmt.ENTRY_OVERHEAD + len(payload(n, self.sizes[n])) for n in self.blocks[b])
            for b in held_blocks
        )
        assert self.queue.bytes_held == expected_bytes

    @invariant()
    def no_stray_files(self) -> None:
        names = {p.name for p in self.directory.iterdir()}
        assert not {n for n in names if n.endswith(".tmp")}
        segments = {fmt.parse_segment_name(n) for n in names} - {None}
        assert segments == set(self.queue.segment_ids)


class AlwaysModel(BufferModel):
    policy: FsyncPolicy = "always"


class FileReadsModel(BufferModel):
    """Every block read back from its file, as after a restart."""

    tail_cache_bytes = 0


_settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

TestBufferModelBatch = BufferModel.TestCase
TestBufferModelBatch.settings = _settings
TestBufferModelAlways = AlwaysModel.TestCase
TestBufferModelAlways.settings = _settings
TestBufferModelFileReads = FileReadsModel.TestCase
TestBufferModelFileReads.settings = _settings
