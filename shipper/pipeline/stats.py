"""Counters a container's processor keeps; the caller turns them into Prometheus metrics."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class ProcessorStats:
    """Counts since the last `take()`; label values are rule names and fixed reasons only."""

    dropped: Counter[str] = field(default_factory=Counter)  # by drop rule name
    redacted: Counter[str] = field(default_factory=Counter)  # records masked, by rule/preset
    json_errors: Counter[str] = field(default_factory=Counter)  # by tag, e.g. json_invalid
    json_parsed: int = 0  # records whose line became structured fields
    multiline_events: int = 0  # events of two or more lines sent
    multiline_lines: int = 0  # lines that went into those events
    multiline_splits: int = 0  # events cut at max_lines / max_bytes

    def take(self) -> ProcessorStats:
        """Returns the counts so far and starts again from zero (for Counter.inc(delta))."""
        taken = ProcessorStats(
            self.dropped,
            self.redacted,
            self.json_errors,
            self.json_parsed,
            self.multiline_events,
            self.multiline_lines,
            self.multiline_splits,
        )
        self.dropped, self.redacted, self.json_errors = Counter(), Counter(), Counter()
        self.json_parsed = self.multiline_events = self.multiline_lines = 0
        self.multiline_splits = 0
        return taken
