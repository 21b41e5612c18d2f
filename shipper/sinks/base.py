"""What every output reads from: batches of encoded entries, acknowledged when settled."""

from __future__ import annotations

from typing import Protocol, TypeVar


class Batch(Protocol):
    @property
    def entries(self) -> list[bytes]: ...


BatchT = TypeVar("BatchT", bound=Batch)


class BatchSource(Protocol[BatchT]):
    async def read(
        self, max_entries: int, max_bytes: int, timeout_s: float | None = None
    ) -> BatchT | None: ...

    def ack(self, batch: BatchT) -> None: ...
