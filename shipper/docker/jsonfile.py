"""Pure parser of Docker's json-file log files: file bytes → the same `LogRecord`s as the API.

What the json-file driver writes, one JSON object per line and per message:

    {"log":"GET /health 200\\n","stream":"stdout","time":"2026-11-28T04:13:43.517053725Z"}

* `log` is the message: it ends with `\\n` unless Docker cut a long line into 16 KiB
  *partial* messages (same timestamp; only the last part ends with `\\n`), or the container
  stopped in the middle of a line. Bytes that are not UTF-8 were replaced by U+FFFD when
  Docker wrote the file, so the logs API, which reads this very file, sends the same text.
* `time` is RFC 3339 with the fraction's trailing zeros trimmed (the API pads to 9 digits);
  both parse to the same nanoseconds.
* `attrs` (log-opt labels/env) may be present; it is not part of the line.

The logs API serves exactly these messages, in file order, dropping those stamped before
`since`. This decoder does the same and then joins the messages as `LogStreamDecoder` does,
with the same rules (shipper/lines: timestamps, joining and truncation, `seq`), so a line read
from the file and through the API gets the same record and hence the same Elasticsearch `_id`.
"""

from __future__ import annotations

import json
from typing import Final

import orjson

from shipper.docker.frames import DEFAULT_MAX_LINE_BYTES, LogStreamDecoder
from shipper.lines.timestamps import TimestampError, parse_timestamp
from shipper.model import STDERR, STDOUT, LogRecord
from shipper.native import ScanJsonFile, native

_STREAMS: Final = {"stdout": STDOUT, "stderr": STDERR}


def _scan_no_lines(data: bytes, pos: int, *_: object) -> int:
    """Without the C hot path: takes none, so `_line` reads every line."""
    return pos


# Chosen once, at import (shipper/native.py decides whether the C hot path is usable).
_scan_jsonfile: ScanJsonFile = native.scan_jsonfile if native is not None else _scan_no_lines


class JsonFileDecoder(LogStreamDecoder):
    """Turns the concatenated bytes of a container's json-file logs into records.

    `feed` takes chunks cut anywhere (a line split across chunks waits for its rest);
    lines stamped before `since_ns` are dropped, exactly as the API's `since` does.
    """

    def __init__(
        self,
        container_id: str,
        *,
        tty: bool,
        since_ns: int = 0,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        super().__init__(container_id, tty=tty, max_line_bytes=max_line_bytes, since_ns=since_ns)
        self.invalid_lines = 0

    def feed(self, chunk: bytes) -> list[LogRecord]:
        data = self._pending + chunk if self._pending else chunk
        end = data.rfind(b"\n") + 1
        self._pending = data[end:]
        out: list[LogRecord] = []
        body = data[:end]
        lines = self._lines
        pos = 0
        while pos < end:
            if lines.idle:
                # The C hot path takes the lines in the exact form the json-file driver
                # writes, up to the first that is not (or none, without it): read below.
                pos = _scan_jsonfile(
                    body,
                    pos,
                    out,
                    lines.native_ctx,
                    self.since_ns,
                    self.max_line_bytes,
                    self.tty,
                    lines.seq.runs,
                )
                if pos >= end:
                    break
            newline = body.index(b"\n", pos)
            if pos == newline:
                self._line(b"", out)  # an empty line: not an entry
            else:
                # (`splitlines`: a lone \r ends a line too, for whoever wrote the file.)
                for line in body[pos:newline].splitlines():
                    self._line(line, out)
            pos = newline + 1
        return out

    def _line(self, line: bytes, out: list[LogRecord]) -> None:
        """One line: orjson, else the standard library (lone surrogates)."""
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            lenient = self._lenient(line)
            if lenient is not None:
                log, time_text, stream = lenient
                ts = self._timestamp(time_text)
                if ts >= self.since_ns:
                    self._part(log, ts, stream, out)
            return
        try:
            log = entry["log"]
            time_text = entry["time"]
            name = entry.get("stream")
        except (KeyError, TypeError, AttributeError):
            self.invalid_lines += 1  # not a json-file entry: skip it
            return
        if type(log) is not str or type(time_text) is not str:
            self.invalid_lines += 1
            return
        ts = self._timestamp(time_text)
        if ts >= self.since_ns:
            self._part(log, ts, STDERR if name == "stderr" else STDOUT, out)

    def _part(self, log: str, ts: int, stream: str, out: list[LogRecord]) -> None:
        """A message (a line, or a part of a long one): the same joining as the API's."""
        content = log.encode("utf-8", "surrogatepass")
        complete = content.endswith(b"\n")
        self._lines.add_part(stream, ts, content[:-1] if complete else content, complete, out)

    def _timestamp(self, text: str) -> int:
        """The entry's time; one that is not RFC 3339 is counted, and stamped like the line
        before it."""
        try:
            return parse_timestamp(text.encode("ascii", "replace"))
        except TimestampError:
            self.invalid_timestamps += 1
            return self._lines.newest_ns

    def _lenient(self, line: bytes) -> tuple[str, str, str] | None:
        """A line orjson refuses (e.g. a lone surrogate escape): the standard library's view."""
        try:
            entry = json.loads(line)
            log, time_text = entry["log"], entry["time"]
            stream = _STREAMS.get(entry.get("stream"), STDOUT)
            parse_timestamp(str(time_text).encode("ascii", "replace"))
        except (ValueError, KeyError, TypeError):
            self.invalid_lines += 1  # not a json-file entry (e.g. a torn write): skip it
            return None
        # Go's JSON decoder, which serves this file through the logs API, turns a lone
        # surrogate escape into U+FFFD: so do we (and a str with one could not be encoded).
        text = str(log).encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return text, str(time_text), stream
