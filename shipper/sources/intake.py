"""Where every source's records go: encoded once, appended to the disk buffer.

`BufferIntake` is the `Intake` a follower hands its records to (see `follower.py`). `put`
returns once the records are in the buffer (a full buffer makes it wait, and reading pauses
with it: the runtime keeps the logs), so a follower counts lines as taken only after this.
It also watches each container's write rate against how far behind reading is (rotation
risk), and holds reading while checkpoints cannot be saved.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from shipper import telemetry
from shipper.buffer import DiskBuffer
from shipper.config import ProcessingConfig
from shipper.model import ContainerMeta, Destination, LogRecord
from shipper.pipeline.encoder import ContainerDocument, container_document, encode_joined
from shipper.pipeline.metadata import container_fields
from shipper.sources.rotation import RotationWatch


class BufferIntake:
    """Encodes a container's records once and appends them to the disk buffer."""

    def __init__(
        self,
        buffer: DiskBuffer,
        route: Callable[[ContainerMeta], Destination],
        host_name: str,
        processing: Callable[[], ProcessingConfig],
    ) -> None:
        self._buffer = buffer
        # The container's data stream and ingest pipeline (labels, routing rules, defaults).
        self._route = route
        self._host_name = host_name
        self._processing = processing
        self._documents: dict[str, ContainerDocument] = {}
        # Sees each container's write rate and how far behind reading is (rotation risk).
        self.rotation = RotationWatch()
        # Cleared while checkpoints cannot be saved (disk full): reading pauses then, as it
        # does when the buffer cannot be written, instead of running ever further ahead of
        # the last saved position.
        self.open = asyncio.Event()
        self.open.set()

    def container_changed(self, meta: ContainerMeta) -> None:
        self.rotation.container_changed(meta)
        destination = self._route(meta)
        self._documents[meta.id] = container_document(
            meta,
            index=destination.index,
            pipeline=destination.pipeline,
            host_name=self._host_name,
            extra_fields=container_fields(meta, self._processing()),
        )

    async def put(self, meta: ContainerMeta, records: list[LogRecord]) -> None:
        document = self._documents.get(meta.id)
        if document is None:
            self.container_changed(meta)
            document = self._documents[meta.id]
        entries = encode_joined(records, document)
        if not self.open.is_set():
            await self.open.wait()
        self.rotation.put_started(meta.id, time.monotonic())
        await self._buffer.append(entries)
        self.rotation.put_finished(meta.id, records, time.monotonic())
        telemetry.records_buffered.inc(len(entries.lengths))

    def forget(self, container_id: str) -> None:
        self._documents.pop(container_id, None)
        self.rotation.forget(container_id)
