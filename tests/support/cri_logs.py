"""An independent, deliberately simple reading of what containerd wrote to a container's CRI
log files (the current one, its rotations, gzipped or not): the lines the shipper must ship.

It shares no code with the shipper's parser: whole files at once, `datetime` for the time.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class CriLine:
    timestamp_ns: int  # of the line's first part, UTC
    stream: str
    message: str  # the parts joined, decoded as UTF-8 (invalid bytes replaced)


def timestamp_ns(text: str) -> int:
    """RFC 3339 with up to nine fraction digits and Z or ±HH:MM → exact UTC nanoseconds."""
    zone_at = len(text) - 1 if text.endswith("Z") else len(text) - 6
    main, zone = text[:zone_at], text[zone_at:]
    seconds, _, fraction = main.partition(".")
    moment = datetime.fromisoformat(seconds + ("+00:00" if zone == "Z" else zone))
    return int(moment.timestamp()) * 10**9 + int((fraction or "0").ljust(9, "0"))


def rfc3339_ns(ns: int) -> str:
    """UTC, nine fraction digits: how the shipper writes @timestamp."""
    seconds, nanos = divmod(ns, 10**9)
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def log_files(log: Path) -> list[Path]:
    """`log` and its rotations, oldest first; a rotation both plain and gzipped once."""
    stamps: dict[str, Path] = {}
    for path in log.parent.glob(log.name + ".*"):
        rest = path.name[len(log.name) + 1 :]
        stamp = rest.removesuffix(".gz")
        rotation = len(stamp) == 15 and stamp[8] == "-" and rest in (stamp, stamp + ".gz")
        if rotation and (stamp not in stamps or rest == stamp):
            stamps[stamp] = path
    ordered = [stamps[stamp] for stamp in sorted(stamps)]
    return [*ordered, log] if log.exists() else ordered


def file_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def cri_lines(log: Path) -> list[CriLine]:
    """Every line of a container's files, parts joined per stream, in order of first parts."""
    lines: list[tuple[int, str, list[bytes]]] = []
    open_line: dict[str, list[bytes]] = {}
    for path in log_files(log):
        for raw in file_bytes(path).split(b"\n")[:-1]:
            fields = raw.split(b" ", 3)
            stamp, stream, tag = fields[0].decode(), fields[1].decode(), fields[2]
            message = fields[3] if len(fields) == 4 else b""
            parts = open_line.get(stream)
            if parts is None:
                parts = open_line[stream] = []
                lines.append((timestamp_ns(stamp), stream, parts))
            parts.append(message)
            if tag == b"F":
                del open_line[stream]
    return [
        CriLine(ts, stream, b"".join(parts).decode("utf-8", "replace"))
        for ts, stream, parts in lines
    ]
