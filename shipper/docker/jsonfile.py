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
`since`. This decoder does the same and then reuses `LogStreamDecoder`'s joining, truncation
and `seq` counting, so a line read from the file and through the API gets the same record
and hence the same Elasticsearch `_id`.
"""

from __future__ import annotations

import json
from typing import Final

import orjson

from shipper.docker.frames import (
    DEFAULT_MAX_LINE_BYTES,
    LogStreamDecoder,
    TimestampError,
    parse_timestamp,
)
from shipper.model import STDERR, STDOUT, LogRecord

_STREAMS: Final = {"stdout": STDOUT, "stderr": STDERR}
_FRACTION_SCALE: Final = tuple(10 ** (9 - n) for n in range(10))


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
        super().__init__(container_id, tty=tty, max_line_bytes=max_line_bytes)
        self.since_ns = since_ns
        self.invalid_lines = 0
        self._ts_cache: tuple[str, int] = ("", 0)
        self._text_second: tuple[str, int] = ("", 0)  # "YYYY-MM-DDTHH:MM:SS" (UTC) → its ns

    def feed(self, chunk: bytes) -> list[LogRecord]:
        data = self._pending + chunk if self._pending else chunk
        end = data.rfind(b"\n") + 1
        self._pending = data[end:]
        out: list[LogRecord] = []
        if end == 0:
            return out
        loads = orjson.loads
        since = self.since_ns
        max_bytes = self.max_line_bytes
        partial = self._partial
        for line in data[:end].splitlines():
            try:
                entry = loads(line)
                log = entry["log"]
                time_text = entry["time"]
                stream = _STREAMS.get(entry.get("stream"), STDOUT)
            except (orjson.JSONDecodeError, KeyError, TypeError):
                entry = self._lenient(line)
                if entry is None:
                    continue
                log, time_text, stream = entry
            ts = self._timestamp(time_text)
            if ts < since:
                continue
            if log[-1:] == "\n" and stream not in partial:
                message = log[:-1]
                if self.tty and message[-1:] == "\r":
                    message = message[:-1]
                size = len(message) if message.isascii() else len(message.encode())
                if size <= max_bytes:
                    out.append(self._text_record(stream, ts, message, size))
                    continue
            # A part of a long line, or a line to truncate: the byte-level path of the API.
            content = log.encode("utf-8", "surrogatepass")
            complete = content.endswith(b"\n")
            self._add_part(stream, ts, content[:-1] if complete else content, complete, out)
        return out

    def _timestamp(self, text: str) -> int:
        # Consecutive lines often share their timestamp text (partials always do).
        cached_text, cached_ts = self._ts_cache
        if text == cached_text:
            return cached_ts
        # Same second as the last line (nearly always): only the fraction is new.
        seconds_text, epoch_ns = self._text_second
        if text[19:20] == "." and text[-1:] == "Z" and text[:19] == seconds_text:
            digits = text[20:-1]
            if 0 < len(digits) <= 9 and digits.isdigit() and digits.isascii():
                scale: int = _FRACTION_SCALE[len(digits)]
                ts = epoch_ns + int(digits) * scale
                self._ts_cache = (text, ts)
                return ts
        try:
            ts = parse_timestamp(text.encode("ascii", "replace"))
            self._text_second = (
                (text[:19], ts - ts % 1_000_000_000) if text[-1:] == "Z" else ("", 0)
            )
        except TimestampError:
            self.invalid_timestamps += 1
            return self._last_timestamp()
        self._ts_cache = (text, ts)
        return ts

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
        return str(log), str(time_text), stream
