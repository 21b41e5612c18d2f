"""Durable segmented disk queue between the pipeline and the sink; see `disk` and `format`."""

from __future__ import annotations

from shipper.buffer.disk import DiskBuffer
from shipper.buffer.segments import BufferBatch, BufferClosedError, RecoveryReport, SegmentQueue

__all__ = ["BufferBatch", "BufferClosedError", "DiskBuffer", "RecoveryReport", "SegmentQueue"]
