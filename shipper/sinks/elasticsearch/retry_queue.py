"""Documents Elasticsearch rejected for now (429/5xx items), waiting for their next attempt.

The fairness piece of the sink: a worker hands rejected items to this queue and goes on with
the next batch at once, so one container whose documents keep being rejected does not hold
up everyone else's. A separate task sends the items again when their backoff (capped, full
jitter, per item) is over. The queue is bounded: when it holds `max_docs` items, workers wait
before taking new batches (the cluster is rejecting a lot; the disk buffer holds the rest).
Parking never blocks, so the queue can exceed `max_docs` by at most one batch per worker.

Nothing here is durable on purpose: the buffer batch an item came from stays unacknowledged
until the item is stored or dead-lettered, so after a crash it is read and sent again.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shipper.backoff import Backoff


class Ticket:
    """One buffer batch in flight: acknowledged once every entry of it is settled.

    `outcomes` gathers what became of its entries, (container key, outcome) -> count, for
    the accounting the acknowledgement reports (`shipper.accounting`)."""

    __slots__ = ("_ack", "outcomes", "unsettled")

    def __init__(self, size: int, ack: Callable[[], None]) -> None:
        self.unsettled = size
        self._ack = ack
        self.outcomes: Counter[tuple[str, str]] = Counter()

    def settle(self, count: int = 1) -> None:
        self.unsettled -= count
        if self.unsettled == 0:
            self._ack()


@dataclass(slots=True)
class Parked:
    entry: bytes
    ticket: Ticket
    attempt: int  # how many times this item was rejected so far
    # Set when `entry` is the dead letter of a record Elasticsearch can never index: the
    # document for the dead-letter file, should the dead-letter stream refuse it too.
    fallback: dict[str, Any] | None = None


class RetryQueue:
    def __init__(self, max_docs: int, base_s: float, cap_s: float) -> None:
        self.max_docs = max_docs
        self._base_s = base_s
        self._cap_s = cap_s
        self._heap: list[tuple[float, int, Parked]] = []
        self._order = itertools.count()
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def park(
        self,
        entry: bytes,
        ticket: Ticket,
        attempt: int,
        *,
        min_delay_s: float = 0.0,
        fallback: dict[str, Any] | None = None,
    ) -> None:
        """Sends `entry` again after its backoff (attempt 0: as soon as a retry batch goes)."""
        delay = 0.0
        if attempt > 0:
            backoff = Backoff(base_s=self._base_s, cap_s=self._cap_s, attempt=attempt - 1)
            delay = backoff.next_delay_s()
        due = asyncio.get_running_loop().time() + max(delay, min_delay_s)
        parked = Parked(entry, ticket, attempt, fallback)
        heapq.heappush(self._heap, (due, next(self._order), parked))
        self._changed.set()

    async def wait_for_room(self) -> None:
        while len(self._heap) >= self.max_docs:
            self._changed.clear()
            await self._changed.wait()

    async def take_due(self, max_docs: int, max_bytes: int) -> list[Parked]:
        """Waits until the earliest item is due, then takes due items up to the limits."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            if self._heap and self._heap[0][0] <= now:
                taken: list[Parked] = []
                size = 0
                while self._heap and self._heap[0][0] <= now and len(taken) < max_docs:
                    if taken and size + len(self._heap[0][2].entry) > max_bytes:
                        break
                    item = heapq.heappop(self._heap)[2]
                    taken.append(item)
                    size += len(item.entry)
                self._changed.set()  # room for waiting workers
                return taken
            self._changed.clear()
            timeout = self._heap[0][0] - now if self._heap else None
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait()
            except TimeoutError:
                pass
