"""Drops records (health-check noise, chatty debug output) by message regex and/or stream.

Runs on the final message (after multiline joining and JSON decoding, so a pattern sees what
Kibana would show) and before redaction, which then skips the dropped records.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from shipper.model import LogRecord
from shipper.pipeline.stats import ProcessorStats


@dataclass(frozen=True, slots=True)
class DropSpec:
    name: str
    pattern: re.Pattern[str] | None  # searched anywhere in the message; None: any message
    stream: str | None  # None: both streams


class Dropper:
    def __init__(self, specs: Sequence[DropSpec], stats: ProcessorStats) -> None:
        self._specs = tuple(specs)
        self._stats = stats

    def apply(self, records: list[LogRecord]) -> list[LogRecord]:
        kept: list[LogRecord] = []
        dropped = self._stats.dropped
        for record in records:
            for spec in self._specs:
                if (spec.stream is None or spec.stream == record.stream) and (
                    spec.pattern is None or spec.pattern.search(record.message) is not None
                ):
                    dropped[spec.name] += 1
                    break
            else:
                kept.append(record)
        return kept
