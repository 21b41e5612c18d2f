"""Log timestamps: RFC 3339 text, as the runtimes write it, to nanoseconds since the epoch.

Every runtime stamps a line with Go's time formatting: Docker's logs API with
RFC3339NanoFixed (`2026-11-28T04:10:00.123456789Z`, always nine fraction digits), its
json-file driver and the CRI log files with RFC3339Nano (trailing zeros of the fraction
trimmed, so the width varies, down to no fraction at all). The CRI files carry the node's
local offset (`-07:00`) where it is not UTC. All of them parse here to the same integer: UTC,
exact to the nanosecond, so a line gets the same `_id` whichever way it was read.
"""

from __future__ import annotations

import calendar
import time
from typing import Final

# The epoch second of each "YYYY-MM-DDTHH:MM:SS" seen: strptime costs microseconds, and lines
# come many to a second. Shared by every reader; cleared when it grows (one entry a second).
_epoch_seconds_cache: dict[bytes, int] = {}
_EPOCH_SECONDS_CACHE_MAX: Final = 4096
_FRACTION_SCALE: Final = tuple(10 ** (9 - n) for n in range(10))


class TimestampError(ValueError):
    """A line did not start with a timestamp in the form the runtimes write."""


def parse_timestamp(raw: bytes) -> int:
    """RFC 3339 (`YYYY-MM-DDTHH:MM:SS`, an optional fraction, `Z` or `±HH:MM`) → nanoseconds
    since the epoch in UTC. A fraction of more than nine digits keeps its first nine."""
    seconds_part = raw[:19]
    epoch = _epoch_seconds_cache.get(seconds_part)
    if epoch is None:
        try:
            epoch = calendar.timegm(
                time.strptime(seconds_part.decode("ascii"), "%Y-%m-%dT%H:%M:%S")
            )
        except (ValueError, UnicodeDecodeError):
            raise TimestampError(f"not an RFC 3339 timestamp: {raw[:40]!r}") from None
        if len(_epoch_seconds_cache) > _EPOCH_SECONDS_CACHE_MAX:
            _epoch_seconds_cache.clear()
        _epoch_seconds_cache[seconds_part] = epoch
    if raw[19:20] == b"." and raw[-1:] == b"Z":
        # The usual form, UTC with 1 to 9 fraction digits, in one step.
        digits = raw[20:-1]
        if 0 < len(digits) <= 9 and digits.isdigit():
            scale: int = _FRACTION_SCALE[len(digits)]
            return epoch * 1_000_000_000 + int(digits) * scale
    rest = raw[19:]
    nanos = 0
    if rest[:1] == b".":
        end = 1
        while end < len(rest) and 48 <= rest[end] <= 57:
            end += 1
        digits = rest[1:end]
        nanos = int(digits.ljust(9, b"0")[:9]) if digits else 0
        rest = rest[end:]
    if rest == b"Z":
        offset = 0
    elif (
        len(rest) == 6
        and rest[:1] in (b"+", b"-")
        and rest[3:4] == b":"
        and rest[1:3].isdigit()
        and rest[4:6].isdigit()
    ):
        sign = 1 if rest[:1] == b"+" else -1
        offset = sign * (int(rest[1:3]) * 3600 + int(rest[4:6]) * 60)
    else:
        raise TimestampError(f"not an RFC 3339 timestamp: {raw[:40]!r}")
    return (epoch - offset) * 1_000_000_000 + nanos


def format_timestamp(ns: int) -> str:
    """Nanoseconds since the epoch → RFC 3339 with all nine fraction digits, in UTC (the form
    every document's `@timestamp` and every time the shipper reports takes)."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    return (b"%s.%09dZ" % (second_prefix(seconds), nanos)).decode()


_second_prefixes: dict[int, bytes] = {}


def second_prefix(seconds: int) -> bytes:
    """b"YYYY-MM-DDTHH:MM:SS" of an epoch second (cached: lines come a second at a time)."""
    prefix = _second_prefixes.get(seconds)
    if prefix is None:
        if len(_second_prefixes) > 1024:
            _second_prefixes.clear()
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode()
        _second_prefixes[seconds] = prefix
    return prefix
