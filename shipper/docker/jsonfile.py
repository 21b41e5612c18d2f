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
from typing import Any, Final

import orjson

from shipper.docker.frames import (
    DEFAULT_MAX_LINE_BYTES,
    LogStreamDecoder,
    TimestampError,
    parse_timestamp,
)
from shipper.model import STDERR, STDOUT, LogRecord
from shipper.native import native

_new_tuple: Final = tuple.__new__

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
        super().__init__(container_id, tty=tty, max_line_bytes=max_line_bytes, since_ns=since_ns)
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
        body = data[:end]
        if native is not None:
            self._feed_native(body, out)
            return out
        # Every json-file line is one JSON object and JSON strings hold no raw newline, so the
        # lines joined by commas are one array: one orjson call for the whole chunk. A chunk
        # with a line it refuses (torn, empty, a lone surrogate) is taken line by line.
        if body == b"\n":  # a lone empty line would read as an empty array: no line at all
            self._line(b"", out)
            return out
        try:
            entries = orjson.loads(b"[" + body[:-1].replace(b"\n", b",") + b"]")
        except orjson.JSONDecodeError:
            for line in body.splitlines():
                self._line(line, out)
            return out
        self._entries(entries, out)
        return out

    def _feed_native(self, body: bytes, out: list[LogRecord]) -> None:
        """`feed` with its fast loop in C: the C scan takes every line in the exact form the
        json-file driver writes; each line it stops at goes through `_line`, as in the
        line-by-line fallback (which gives what the whole-chunk parse gives, line by line)."""
        assert native is not None
        pos = 0
        end = len(body)
        while pos < end:
            if not self._partial and not self._queue:
                state = self.run_state()
                pos = native.scan_jsonfile(
                    body,
                    pos,
                    out,
                    self._native_ctx,
                    self.since_ns,
                    self.max_line_bytes,
                    self.tty,
                    state,
                )
                self.set_run_state(state)
                if pos >= end:
                    break
            newline = body.index(b"\n", pos)
            for line in body[pos:newline].splitlines():
                self._line(line, out)
            if pos == newline:
                self._line(b"", out)  # an empty line: what splitlines of the chunk gives
            pos = newline + 1

    def _entries(self, entries: list[Any], out: list[LogRecord]) -> None:
        """The hot loop: complete lines in the common form are built inline, with the run
        counters and the timestamp cache in locals; anything else takes `_entry`."""
        append = out.append
        container_id = self.container_id
        since = self.since_ns
        max_bytes = self.max_line_bytes
        tty = self.tty
        run_ts, run_count = self._run_ts, self._run_count
        last_text, last_ts = self._ts_cache
        # "YYYY-MM-DDTHH:MM:SS." of the last second seen, and that second in ns.
        second_text, second_ns = self._text_second
        second_text += "."
        scales = _FRACTION_SCALE
        newest = self._newest_ts
        for entry in entries:
            try:
                log = entry["log"]
                time_text = entry["time"]
                name = entry.get("stream")
            except (KeyError, TypeError, AttributeError):
                self.invalid_lines += 1  # not a json-file entry: skip it
                continue
            if type(log) is not str or type(time_text) is not str:
                self.invalid_lines += 1
                continue
            if time_text == last_text:
                ts = last_ts
            else:
                # The same second as the line before (nearly always): only the fraction,
                # which json-file writes with its trailing zeros trimmed, is new.
                digits = time_text[20:-1]
                if (
                    time_text.startswith(second_text)
                    and time_text[-1:] == "Z"
                    and 0 < len(digits) <= 9
                    and digits.isascii()
                    and digits.isdigit()
                ):
                    ts = second_ns + int(digits) * scales[len(digits)]
                    last_text, last_ts = time_text, ts
                else:
                    invalid_before = self.invalid_timestamps
                    self._newest_ts = newest  # what an invalid one is stamped with
                    ts = self._timestamp(time_text)
                    second_text, second_ns = self._text_second
                    second_text += "."
                    # Not an invalid one: each is counted, and stamped like the line before.
                    if self.invalid_timestamps == invalid_before:
                        last_text, last_ts = time_text, ts
            if ts < since:
                continue
            stream = STDERR if name == "stderr" else STDOUT
            if log[-1:] == "\n" and not self._partial:
                message = log[:-1]
                if tty and message[-1:] == "\r":
                    message = message[:-1]
                size = len(message) if message.isascii() else len(message.encode())
                if size <= max_bytes:
                    if ts == run_ts.get(stream):
                        seq = run_count[stream]
                        run_count[stream] = seq + 1
                    else:
                        seq = 0
                        run_ts[stream] = ts
                        run_count[stream] = 1
                    if ts > newest:
                        newest = ts
                    append(
                        _new_tuple(
                            LogRecord, (container_id, ts, stream, seq, message, (), None, size)
                        )
                    )
                    continue
            self._newest_ts = newest
            self._part(log, ts, stream, out)
            newest = self._newest_ts
        self._newest_ts = newest
        self._ts_cache = (last_text, last_ts)

    def _line(self, line: bytes, out: list[LogRecord]) -> None:
        """One line on its own: orjson, else the standard library (lone surrogates)."""
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
        self._entries([entry], out)

    def _part(self, log: str, ts: int, stream: str, out: list[LogRecord]) -> None:
        """A part of a long line, a line to truncate, or anything joined: the byte-level
        path of the API decoder, so both modes build the same records."""
        if log[-1:] == "\n" and stream not in self._partial:
            message = log[:-1]
            if self.tty and message[-1:] == "\r":
                message = message[:-1]
            size = len(message) if message.isascii() else len(message.encode())
            if size <= self.max_line_bytes:
                self._emit(self._text_record(stream, ts, message, size), out)
                return
        content = log.encode("utf-8", "surrogatepass")
        complete = content.endswith(b"\n")
        self._add_part(stream, ts, content[:-1] if complete else content, complete, out)

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
        # Go's JSON decoder, which serves this file through the logs API, turns a lone
        # surrogate escape into U+FFFD: so do we (and a str with one could not be encoded).
        text = str(log).encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return text, str(time_text), stream
