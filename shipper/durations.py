"""Durations as people write them: `90s`, `15m`, `2h`, `7d`, `1w`, `1h30m`, or plain seconds.

One definition for every place that takes one (`shipper backfill --since`, `start_at`), so
the same text means the same span everywhere. Imports nothing of ours.
"""

from __future__ import annotations

import re

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

EXAMPLES = "90s, 15m, 2h, 7d or 1h30m"


def parse_duration_s(text: str) -> float | None:
    """Seconds, or None when `text` is not a duration longer than zero."""
    cleaned = text.strip().lower()
    try:
        seconds = float(cleaned)
    except ValueError:
        parts = _DURATION.findall(cleaned)
        if not parts or _DURATION.sub("", cleaned).strip():
            return None
        seconds = sum(float(value) * _UNIT_S[unit] for value, unit in parts)
    if not seconds > 0 or seconds == float("inf"):
        return None
    return seconds
