"""What every output reads from: batches of encoded entries, acknowledged when settled."""

from __future__ import annotations

from typing import Protocol, TypeVar


class Batch(Protocol):
    """Whole blocks of entries (one block per append); see `shipper.buffer.format`.

    Every entry of a block targets the same index (a block is one container's append, and a
    container has one data stream): outputs may look at a block's first entry only.
    """

    @property
    def bodies(self) -> list[bytes]:
        """Per block, its entries concatenated: sent as they are on the hot path."""
        ...

    @property
    def entries(self) -> list[bytes]:
        """Every entry on its own: for the slow path, when single items matter."""
        ...

    @property
    def count(self) -> int:
        """Entries in the batch."""
        ...

    @property
    def size(self) -> int:
        """Bytes of those entries."""
        ...


BatchT = TypeVar("BatchT", bound=Batch)


class BatchSource(Protocol[BatchT]):
    async def read(
        self, max_entries: int, max_bytes: int, timeout_s: float | None = None
    ) -> BatchT | None: ...

    def ack(self, batch: BatchT) -> None: ...
