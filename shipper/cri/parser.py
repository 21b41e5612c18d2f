"""CRI log lines → a container's `LogRecord`s (pure): the grammar of kubelet's log files.

    <timestamp> SP <stream> SP <tag> SP <message> LF
    2026-12-06T15:27:24.719627914Z stdout F hello
    2026-12-06T21:00:44.701456155+05:30 stderr P first part of a long line

(docs/cri.md has the measured details.) The timestamp is RFC 3339 with up to nine fraction
digits and `Z` or an offset: it is normalised to UTC nanoseconds by the one timestamp rule
every reader shares. The stream is `stdout` or `stderr`. The tag is `F` (the message ends a
line) or `P` (a part: the line goes on in the stream's next line, or the stream ended there);
kubelet reads the tag as `:`-separated with the first one deciding, and so does this. The
message is raw bytes, possibly empty, kept as the file has them.

`CriDecoder` turns a container's files, concatenated, into records: the parts of a line are
joined by the shared `LineAssembler` (shipper/lines), which keeps the first part's
timestamp, caps the line at `max_line_bytes` (flag `truncated`), decodes UTF-8 (flag
`invalid_utf8`) and gives each record its `seq`. A `P` at the end of one file is continued by
the same stream's first line in the next. Records stamped before `since_ns` were taken
before: they are dropped *after* joining, so a line whose first part is older than `since`
is never shipped as a tail of its own.

The common line, a whole one (`F`) in valid UTF-8 within `max_line_bytes` while no line is
held, is read by `scan_cri` in shipper/_native.c where it was built (shipper/native.py
decides): a faster copy of these rules for that case only, which stops at any other line
and leaves it to the code here (tests/unit/test_native.py checks the two agree).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, NamedTuple

from shipper.lines.assembler import LineAssembler
from shipper.lines.timestamps import TimestampError, parse_timestamp
from shipper.model import STDERR, STDOUT, LogRecord, record_field
from shipper.native import ScanCri, native

_STREAMS: Final = {b"stdout": STDOUT, b"stderr": STDERR}
_TIMESTAMP_FIELD: Final = record_field("timestamp_ns")
PARTIAL_TAG: Final = b"P"
FULL_TAG: Final = b"F"


class CriLine(NamedTuple):
    timestamp_ns: int
    stream: str
    complete: bool  # tag F: the message ends the line
    message: bytes


class InvalidLine(ValueError):
    """A line not in the CRI log grammar."""


def parse_line(line: bytes) -> CriLine:
    """One line without its newline; raises InvalidLine if it is not a CRI log line."""
    first = line.find(b" ")
    second = line.find(b" ", first + 1)
    if first <= 0 or second < 0:
        raise InvalidLine(f"not a CRI log line: {line[:60]!r}")
    stream = _STREAMS.get(line[first + 1 : second])
    if stream is None:
        raise InvalidLine(f"unknown stream in a CRI log line: {line[:60]!r}")
    third = line.find(b" ", second + 1)
    tags = line[second + 1 :] if third < 0 else line[second + 1 : third]
    tag = tags.split(b":", 1)[0]
    if tag != FULL_TAG and tag != PARTIAL_TAG:
        raise InvalidLine(f"unknown tag in a CRI log line: {line[:60]!r}")
    try:
        timestamp_ns = parse_timestamp(line[:first])
    except TimestampError as exc:
        raise InvalidLine(str(exc)) from None
    message = b"" if third < 0 else line[third + 1 :]
    return CriLine(timestamp_ns, stream, tag == FULL_TAG, message)


def _scan_no_lines(data: bytes, pos: int, *_: object) -> int:
    """Without the C hot path: takes none, so `_line` reads every line."""
    return pos


# Chosen once, at import (shipper/native.py decides whether the C hot path is usable).
_scan_cri: ScanCri = native.scan_cri if native is not None else _scan_no_lines


def line_timestamp(data: bytes) -> int | None:
    """The timestamp of the first line of `data` (a file's first bytes); None if none."""
    space = data.find(b" ")
    if space <= 0 or b"\n" in data[:space]:
        return None
    try:
        return parse_timestamp(data[:space])
    except TimestampError:
        return None


def last_parts(data: bytes) -> dict[str, bool]:
    """For each stream with a line in `data` (whole lines): whether its last line there is a
    part (`P`), i.e. its line goes on in what the runtime wrote after `data`.

    Found from the end with a byte search per stream (a file can be megabytes, and a stream
    that wrote little has its last line far back): an occurrence of ` stdout ` counts only
    where it follows a line's timestamp, not inside a message.
    """
    found: dict[str, bool] = {}
    for name, stream in _STREAMS.items():
        needle = b" " + name + b" "
        end = len(data)
        while (at := data.rfind(needle, 0, end)) >= 0:
            start = data.rfind(b"\n", 0, at) + 1
            if b" " not in data[start:at]:
                line_end = data.find(b"\n", at)
                try:
                    parsed = parse_line(data[start : len(data) if line_end < 0 else line_end])
                except InvalidLine:
                    parsed = None
                if parsed is not None:
                    found[stream] = not parsed.complete
                    break
            end = at + len(needle) - 1
    return found


def open_streams(data: bytes) -> frozenset[str]:
    """The streams whose last line in `data` is a part (see `last_parts`)."""
    return frozenset(stream for stream, partial in last_parts(data).items() if partial)


class CriDecoder:
    """Turns the bytes of a container's CRI log files into its records, in order.

    `feed` takes chunks cut anywhere (a line split across chunks waits for its rest); an
    empty chunk says a file ended, and a torn last line of it (never written whole) is
    dropped as invalid. `finish` when the container's output ended: a line left in parts
    (the `P` a stopped container leaves) is a record too.

    `continued`: streams whose first line here continues a line of a file not read (see
    tail.py): its parts up to the one that ends it are dropped, as that line is older than
    `since_ns`.
    """

    def __init__(
        self,
        container_id: str,
        *,
        max_line_bytes: int,
        since_ns: int = 0,
        continued: Iterable[str] = (),
    ) -> None:
        self.container_id = container_id
        self.since_ns = since_ns
        self._assembler = LineAssembler(
            container_id, max_line_bytes=max_line_bytes, tty=False, parts_share_timestamp=False
        )
        self._pending = b""
        self._dropping = set(continued)
        self.invalid_lines = 0

    def feed(self, chunk: bytes) -> list[LogRecord]:
        out: list[LogRecord] = []
        if not chunk:  # the end of a file: a line without its newline was torn
            if self._pending:
                self._pending = b""
                self.invalid_lines += 1
            return out
        data = self._pending + chunk if self._pending else chunk
        end = data.rfind(b"\n") + 1
        self._pending = data[end:]
        if end == 0:
            return out
        body = data[:end] if end < len(data) else data
        if _scan_cri is _scan_no_lines:
            # Without the C hot path, every line is read here, from one split (11% fewer
            # instructions per line than the loop below, measured with callgrind).
            read_line = self._line
            for line in body[:-1].split(b"\n"):
                read_line(line, out)
            return self._since(out)
        assembler = self._assembler
        pos = 0
        handed_back = False
        while pos < end:
            if assembler.idle and not self._dropping:
                # The C hot path takes the whole lines in the common form, up to the first
                # that is not: that one is read below, by the rules here.
                pos = _scan_cri(
                    body,
                    pos,
                    out,
                    assembler.native_ctx,
                    self.since_ns,
                    assembler.max_line_bytes,
                    assembler.seq.runs,
                )
                if pos >= end:
                    break
            newline = body.index(b"\n", pos)
            self._line(body[pos:newline], out)
            handed_back = True
            pos = newline + 1
        # (The C path makes no record stamped before `since`: only the lines read here can.)
        return self._since(out) if handed_back else out

    def _line(self, line: bytes, out: list[LogRecord]) -> None:
        """One line (without its newline), by the grammar and the shared line rules."""
        try:
            timestamp_ns, stream, complete, message = parse_line(line)
        except InvalidLine:
            self.invalid_lines += 1
            return
        if self._dropping and stream in self._dropping:
            if complete:
                self._dropping.discard(stream)
            return
        self._assembler.add_part(stream, timestamp_ns, message, complete, out)

    def finish(self) -> list[LogRecord]:
        """The container's output ended: every line still in parts is a record."""
        out: list[LogRecord] = []
        if self._pending:
            self._pending = b""
            self.invalid_lines += 1
        self._assembler.finish(out)
        return self._since(out)

    def _since(self, records: list[LogRecord]) -> list[LogRecord]:
        since = self.since_ns
        if not since or not records or min(map(_TIMESTAMP_FIELD, records)) >= since:
            return records
        return [record for record in records if record.timestamp_ns >= since]
