"""Prints every record as one NDJSON document on stdout: the zero-setup output.

It reads from the same disk buffer as the Elasticsearch output, so it also resumes where it
stopped; a record is acknowledged once its line is written and flushed.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, BinaryIO

from shipper import telemetry
from shipper.accounting import Ledger
from shipper.sinks.base import BatchSource


class ConsoleSink:
    def __init__(
        self, source: BatchSource[Any], out: BinaryIO | None = None, ledger: Ledger | None = None
    ) -> None:
        self._source = source
        self._out = out or sys.stdout.buffer
        self._ledger = ledger  # printed counts as stored, for the accounting
        self._stopping = asyncio.Event()
        self.last_error: str | None = None

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            batch = await self._source.read(5000, 4 * 1024 * 1024, timeout_s=0.25)
            if batch is None:
                continue
            # Each entry is `action\ndocument\n` (JSON has no raw newlines): every second line
            # of a block is a document, what a reader wants to see.
            self._out.write(
                b"".join(
                    document
                    for body in batch.bodies
                    for document in body.splitlines(keepends=True)[1::2]
                )
            )
            self._out.flush()
            if self._ledger is not None:
                self._ledger.acknowledged(batch, None)
            self._source.ack(batch)
            telemetry.records_shipped.inc(batch.count)
