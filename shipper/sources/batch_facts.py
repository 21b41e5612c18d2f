"""What a follower needs to know of each batch of records, found in one pass.

For every batch it reads, a follower counts lines and bytes per stream (metrics), hands the
timestamps to its `StreamPosition` with their least and greatest (checkpoints), and asks
whether any record carries flags (metrics). Each was its own pass over the records: about
0.2 us per line together, a twentieth of the shipper's CPU per line. The C hot path does all
of it in one pass; the Python code below is the definition (tests/unit/test_native.py
compares the two).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NamedTuple

from shipper.model import STDERR, LogRecord, record_field
from shipper.native import native

_TIMESTAMP_FIELD = record_field("timestamp_ns")
_STREAM_FIELD = record_field("stream")
_FLAGS_FIELD = record_field("flags")
_SIZE_FIELD = record_field("size")


class BatchFacts(NamedTuple):
    timestamps: list[int]  # of every record, in order
    oldest: int
    newest: int
    stderr_lines: int
    stdout_bytes: int  # `size` of every record not on stderr
    stderr_bytes: int
    flagged: bool  # some record has flags

    @property
    def stdout_lines(self) -> int:
        return len(self.timestamps) - self.stderr_lines


def python_batch_facts(records: Sequence[LogRecord]) -> BatchFacts:
    """The facts of a non-empty batch."""
    # Field access by C-level getters over the whole batch: a Python loop per line costs more.
    timestamps = list(map(_TIMESTAMP_FIELD, records))
    streams = list(map(_STREAM_FIELD, records))
    sizes = list(map(_SIZE_FIELD, records))
    stderr_lines = streams.count(STDERR)
    if stderr_lines == 0:
        stdout_bytes, stderr_bytes = sum(sizes), 0
    elif stderr_lines == len(records):
        stdout_bytes, stderr_bytes = 0, sum(sizes)
    else:
        stderr_bytes = sum(itertools.compress(sizes, [s == STDERR for s in streams]))
        stdout_bytes = sum(sizes) - stderr_bytes
    return BatchFacts(
        timestamps,
        min(timestamps),
        max(timestamps),
        stderr_lines,
        stdout_bytes,
        stderr_bytes,
        any(map(_FLAGS_FIELD, records)),
    )


def _python_batch_facts_or_none(records: Sequence[LogRecord]) -> BatchFacts | None:
    """The facts of a non-empty batch; None for an empty one."""
    return python_batch_facts(records) if records else None


def _c_batch_facts(records: Sequence[LogRecord]) -> BatchFacts | None:
    """`batch_facts` in one pass in C, for a list; the C code leaves anything else (a record
    not in the plain form) to `python_batch_facts` by answering None."""
    assert native is not None  # bound below only when it is loaded
    if not records:
        return None
    if isinstance(records, list):
        facts = native.batch_facts(records, STDERR)
        if facts is not None:
            return BatchFacts(*facts)
    return python_batch_facts(records)


# Chosen once, at import (shipper/native.py decides whether the C hot path is usable).
batch_facts = _c_batch_facts if native is not None else _python_batch_facts_or_none
