"""The `seq` of a line, which every document `_id` depends on.

A line is identified by (container id, timestamp, stream, seq), where `seq` is its position
among the lines of the same container and stream that carry the very same timestamp: 0 for
the first, 1 for the next, and so on. Timestamps have nanoseconds, so `seq` is nearly always
0; it matters when a clock is coarse or lines come faster than it ticks.

The runtimes stamp each stream's lines in order from one writer (Docker's log copier, the
CRI runtime's), so the lines of a stream that share a timestamp are adjacent: a counter of
the current run per stream is exact, in constant memory. A reader resumed at a checkpoint
re-reads every line stamped at or after the checkpoint's time, so it starts the run over at
the same line and counts the same `seq`s as a reader that never stopped.
"""

from __future__ import annotations

from typing import Final

from shipper.model import STDERR

# The counter's state is one list of ints, laid out as `RunState` in shipper/_native.c, which
# reads and updates that very list in place: each stream's current run (its timestamp, and
# how many lines it has had so far), then the newest timestamp of either stream. Before a
# stream's first line its run is (-1, 0): a first line stamped -1 then gets seq 0, as a new
# run would.
_STDOUT_RUN: Final = (0, 1)
_STDERR_RUN: Final = (2, 3)
_NEWEST: Final = 4


class SeqCounter:
    """The seq rule for the lines of one container, stdout and stderr apart."""

    __slots__ = ("runs",)

    def __init__(self) -> None:
        self.runs = [-1, 0, -1, 0, 0]

    def next_seq(self, stream: str, timestamp_ns: int) -> int:
        """The `seq` of the next line of `stream` (anything but stderr counts as stdout)."""
        runs = self.runs
        run_ts, run_count = _STDERR_RUN if stream == STDERR else _STDOUT_RUN
        seq = runs[run_count] if timestamp_ns == runs[run_ts] else 0
        runs[run_ts] = timestamp_ns
        runs[run_count] = seq + 1
        if timestamp_ns > runs[_NEWEST]:
            runs[_NEWEST] = timestamp_ns
        return seq

    @property
    def newest_ns(self) -> int:
        """The newest timestamp counted so far (0 before the first line)."""
        return self.runs[_NEWEST]
