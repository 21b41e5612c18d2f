"""The date formats a log shipper meets: strict_date_optional_time(_nanos), epoch_millis/second.

Values are normalised to epoch nanoseconds so that ``date`` and ``date_nanos`` sort and compare
alike; ``date`` fields then report milliseconds in sort values, as Elasticsearch does.
"""

from __future__ import annotations

import calendar
import re
import time

_ISO = re.compile(
    r"^(?P<y>[+-]?\d{4,9})(?:-(?P<mo>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<h>\d{2})(?::(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<f>\d{1,9}))?)?)?"
    r"(?P<z>Z|[+-]\d{2}(?::?\d{2})?)?)?)?)?$"
)
_EPOCH = re.compile(r"^-?\d+(?:\.\d+)?$")

DEFAULT_DATE_FORMAT = "strict_date_optional_time||epoch_millis"
DEFAULT_NANOS_FORMAT = "strict_date_optional_time_nanos||epoch_millis"


class DateParseError(ValueError):
    pass


def parse_iso(text: str) -> int:
    m = _ISO.match(text)
    if m is None:
        raise DateParseError(text)
    year = int(m["y"])
    month = int(m["mo"] or 1)
    day = int(m["d"] or 1)
    hour = int(m["h"] or 0)
    minute = int(m["mi"] or 0)
    second = int(m["s"] or 0)
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 60):
        raise DateParseError(text)
    if month == 2 and day > (29 if calendar.isleap(year) else 28):
        raise DateParseError(text)
    if day > 30 and month in (4, 6, 9, 11):
        raise DateParseError(text)
    frac = (m["f"] or "").ljust(9, "0")
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    zone = m["z"]
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = int(digits[:2]) * 3600 + (int(digits[2:4]) * 60 if len(digits) > 2 else 0)
        seconds -= sign * offset
    return seconds * 1_000_000_000 + int(frac or 0)


def parse(value: object, fmt: str = DEFAULT_DATE_FORMAT) -> int:
    """Epoch nanoseconds, or DateParseError. Numbers are epoch millis (or seconds by format)."""
    for part in fmt.split("||"):
        part = part.strip()
        try:
            if part in ("epoch_millis", "epoch_second"):
                if isinstance(value, bool):
                    continue
                text = str(value)
                if not _EPOCH.match(text):
                    continue
                scale = 1_000_000 if part == "epoch_millis" else 1_000_000_000
                return round(float(text) * scale) if "." in text else int(text) * scale
            if isinstance(value, str) and part in (
                "strict_date_optional_time",
                "strict_date_optional_time_nanos",
                "date_optional_time",
                "strict_date_time",
            ):
                return parse_iso(value)
        except DateParseError:
            continue
    if isinstance(value, (int, float)) and not isinstance(value, bool) and "||" not in fmt:
        # A single non-epoch format still accepts numbers as epoch millis (ES behaviour).
        return int(value * 1_000_000)
    raise DateParseError(str(value))


def parse_math(value: object, fmt: str = DEFAULT_DATE_FORMAT) -> int:
    """Like parse(), plus the ``now``/``now-1d/d`` date math used in range queries."""
    if isinstance(value, str) and value.startswith("now"):
        base = time.time_ns()
        rest = value[3:]
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
        for sign, amount, unit in re.findall(r"([+-])(\d+)([smhdw])", rest):
            delta = int(amount) * units[unit] * 1_000_000_000
            base += delta if sign == "+" else -delta
        return base
    if isinstance(value, str) and "||" in value:
        value = value.split("||")[0]
    return parse(value, fmt)


def format_iso(nanos: int) -> str:
    seconds, rem = divmod(nanos, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{base}.{rem // 1_000_000:03d}Z"
