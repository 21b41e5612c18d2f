"""Micro-benchmark of the Elasticsearch sink's fast path (`errors: false`), for callgrind.

A disk buffer is filled with ROUNDS requests' worth of blocks (BLOCKS containers' appends of
ENTRIES entries each); then each request's batch is read and, with DELIVER=1, handed to
`ElasticsearchSink._deliver_batches` with a connection that answers at once that every item
was created (DELIVER=0 acknowledges it directly). LEDGER=1 gives the sink the per-container
accounting the agent gives it. The sink's cost per request is the difference of instruction
counts between DELIVER=1 and DELIVER=0, divided by ROUNDS:

    for d in 0 1; do
      PYTHONHASHSEED=0 DELIVER=$d LEDGER=1 ROUNDS=150 valgrind --tool=callgrind \\
        --callgrind-out-file=/tmp/cg.$d .venv/bin/python -m bench.sink_fast_path 2>&1 | grep Collected
    done

Instruction counts do not depend on what else runs on the machine; wall-clock time does.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

from shipper.buffer import DiskBuffer
from shipper.config import ElasticsearchConfig
from shipper.model import ContainerMeta, LogRecord
from shipper.pipeline.encoder import container_document, encode_joined
from shipper.sinks.elasticsearch.sink import ElasticsearchSink

ROUNDS = int(os.environ.get("ROUNDS", "150"))
BLOCKS = int(os.environ.get("BLOCKS", "4"))  # blocks per request: one container's append each
ENTRIES = int(os.environ.get("ENTRIES", "100"))


class _AllCreated:
    """A cluster that stores everything at once."""

    async def bulk(self, parts: Any) -> dict[str, Any]:
        count = sum(part.count(b'{"create"') for part in parts)
        return {"errors": False, "items": [{"create": {"status": 201}}] * count}


class _NoTemplates:
    async def ensure(self, targets: Any) -> None:
        return None


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        buffer = DiskBuffer.open(
            Path(tmp), max_bytes=1 << 40, segment_max_bytes=1 << 30, fsync="never"
        )
        documents = [
            container_document(
                ContainerMeta(f"{i:064x}", f"c{i}", "img"),
                index="logs-docker-default",
                host_name="h",
            )
            for i in range(BLOCKS)
        ]
        for round_ in range(ROUNDS):
            for document in documents:
                records = [
                    LogRecord(
                        document.container_id,
                        (round_ * 1000 + k) * 1000,
                        "stdout",
                        0,
                        f"line {k} of round {round_}",
                    )
                    for k in range(ENTRIES)
                ]
                await buffer.append(encode_joined(records, document))
        options: dict[str, Any] = {}
        if os.environ.get("LEDGER") == "1":
            from shipper.accounting import Ledger

            options["ledger"] = Ledger()
        sink = ElasticsearchSink(
            _AllCreated(),  # type: ignore[arg-type]
            buffer,
            ElasticsearchConfig(),
            None,  # type: ignore[arg-type]  # no dead letters on the fast path
            templates=_NoTemplates(),  # type: ignore[arg-type]
            **options,
        )
        deliver = os.environ.get("DELIVER") == "1"
        for _ in range(ROUNDS):
            batch = await buffer.read(BLOCKS * ENTRIES, 1 << 30)
            assert batch is not None and batch.count == BLOCKS * ENTRIES
            if deliver:
                await sink._deliver_batches([batch])
            else:
                buffer.ack(batch)
        assert buffer.records_held == 0
        await buffer.close()


if __name__ == "__main__":
    asyncio.run(main())
