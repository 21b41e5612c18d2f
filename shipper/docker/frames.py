"""Pure parser of the logs API body: frames → timestamped lines → `LogRecord`s.

What Docker sends for `GET /containers/{id}/logs?timestamps=1`:

* Non-TTY containers: a multiplexed stream of frames. Each frame is an 8-byte header
  (stream id: 1 stdout, 2 stderr; three zero bytes; big-endian u32 payload size) and a payload.
  Docker writes one frame per log message, and the payload is
  `<RFC 3339 timestamp with 9 fraction digits> <message>`.
* TTY containers: the same messages without any frame header (everything is stdout).

A message ends with `\\n` unless Docker split a long line: its log copier cuts lines at 16 KiB
into *partial* messages that all carry the first part's timestamp, and only the last part
ends with `\\n`. We join the parts into one record. A message also lacks the `\\n` when the
container stopped in the middle of a line (the copier flushes what it has at EOF); the
container's next run then writes messages with later timestamps. So a part continues only
into the next message *of its stream with the very same timestamp*; any other message ends
the line first. In the raw TTY stream part boundaries are invisible: a message that reaches
16 KiB without a newline continues after the next timestamp (exactly how Docker cut it), and
a line cut by a stop ends where a later Docker timestamp follows it without a newline.

Podman serves the same API, with two differences in this body (`StreamDialect`): its own
logs endpoint, which the shipper reads, frames a TTY container's messages too, and the parts
of a split line carry the times conmon read them, not the first part's. There a part
continues into the next message of its stream, whatever its timestamp, as `podman logs`
joins them; the line keeps its first part's timestamp.

Network chunks split frames, headers and timestamps anywhere; the parser keeps what it has
not consumed and works on whole chunks (one pass, `bytes.find`, no per-byte Python work).
"""

from __future__ import annotations

import calendar
import re
import struct
import time
from collections import deque
from dataclasses import dataclass
from typing import Final

from shipper.model import STDERR, STDOUT, LogRecord, record_field
from shipper.native import native

DOCKER_PARTIAL_BYTES: Final = 16 * 1024
DEFAULT_MAX_LINE_BYTES: Final = 1024 * 1024

_HEADER_BYTES: Final = 8
_FRAME_SIZE: Final = struct.Struct(">I")  # the payload size, at offset 4 of the header
_STREAMS: Final = {0: STDOUT, 1: STDOUT, 2: STDERR}
# RFC3339NanoFixed as Docker writes it: 2026-11-28T04:10:00.123456789Z (always UTC here).
_TIMESTAMP_FIELD = record_field("timestamp_ns")
_TTY_TIMESTAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d) ")
# Inside a TTY message: the exact form the logs API prefixes messages with (RFC3339NanoFixed).
_TTY_EMBEDDED_TIMESTAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")
_API_TIMESTAMP_BYTES: Final = 30  # 2026-11-28T04:10:00.123456789Z
_TIMESTAMP_MAX_BYTES: Final = 36  # longest form, with a numeric offset, plus the space

_epoch_seconds_cache: dict[bytes, int] = {}
_new_tuple: Final = tuple.__new__
_FRACTION_SCALE: Final = tuple(10 ** (9 - n) for n in range(10))


@dataclass(frozen=True, slots=True)
class StreamDialect:
    """How an engine lays out the logs API body, where Docker and Podman differ."""

    # A TTY container's messages come in frames too (Podman's libpod endpoint), instead of
    # Docker's raw stream.
    framed_tty: bool
    # Every part of a split line carries the first part's timestamp (Docker), so a message
    # with another timestamp starts a new line; otherwise (conmon stamps each part when it
    # read it) a part continues into the next message of its stream, whatever its time.
    parts_share_timestamp: bool
    # Sends only messages stamped at or after `since`, each judged by its own time (Podman),
    # so none is dropped here, even where the time it reports is cut to the second.
    filters_since_itself: bool = False


DOCKER_STREAM: Final = StreamDialect(framed_tty=False, parts_share_timestamp=True)
PODMAN_STREAM: Final = StreamDialect(
    framed_tty=True, parts_share_timestamp=False, filters_since_itself=True
)


class _Slot:
    """The place of a split line in the output, filled when the line is complete."""

    __slots__ = ("record",)

    def __init__(self) -> None:
        self.record: LogRecord | None = None


class TimestampError(ValueError):
    """A message did not start with a timestamp in the form Docker writes."""


def parse_timestamp(raw: bytes) -> int:
    """Docker's RFC 3339 timestamp → nanoseconds since the epoch, exact to the nanosecond."""
    seconds_part = raw[:19]
    epoch = _epoch_seconds_cache.get(seconds_part)
    if epoch is None:
        try:
            epoch = calendar.timegm(
                time.strptime(seconds_part.decode("ascii"), "%Y-%m-%dT%H:%M:%S")
            )
        except (ValueError, UnicodeDecodeError):
            raise TimestampError(f"not a Docker timestamp: {raw[:40]!r}") from None
        if len(_epoch_seconds_cache) > 4096:  # one entry per second seen: keep it small
            _epoch_seconds_cache.clear()
        _epoch_seconds_cache[seconds_part] = epoch
    if raw[19:20] == b"." and raw[-1:] == b"Z":
        # The common form (API: 9 digits, json-file: trailing zeros trimmed), in one step.
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
    elif len(rest) == 6 and rest[:1] in (b"+", b"-") and rest[3:4] == b":":
        sign = 1 if rest[:1] == b"+" else -1
        offset = sign * (int(rest[1:3]) * 3600 + int(rest[4:6]) * 60)
    else:
        raise TimestampError(f"not a Docker timestamp: {raw[:40]!r}")
    return (epoch - offset) * 1_000_000_000 + nanos


def _epoch_ns(second: bytes) -> int:
    """ "YYYY-MM-DDTHH:MM:SS" (UTC) → its epoch in nanoseconds, or -1 if it is not one."""
    try:
        return parse_timestamp(second + b"Z")
    except TimestampError:
        return -1


def format_timestamp(ns: int) -> str:
    """Nanoseconds since the epoch → RFC 3339 with all nine fraction digits, in UTC."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


class LogStreamDecoder:
    """Turns the logs API body of one container into records, chunk by chunk.

    Each record gets its `seq`: its position among the lines of its stream that carry the same
    timestamp. A decoder started at a checkpoint's `since` computes the same `seq`s as one that
    read from the start, because every line with a timestamp at or after `since` is re-read.

    Lines stamped before `since_ns` are dropped. Docker 20.10 never sends them, but a current
    engine (seen on 28.5) starts at the first line stamped at or after `since` and sends every
    line after it in the file, including a line of the other stream stamped a little earlier
    that its copier wrote later (stdout and stderr are stamped by separate goroutines). Those
    lines were taken before the checkpoint and are not counted in its `skip`; dropping them
    here gives the records the json-file decoder gives, whichever engine answers. Within one
    stream timestamps only grow, so dropping them changes no `seq`. Podman filters every
    message by its own time, and reports that time cut to the second (up to 5.7), which may
    be before `since`: nothing is dropped there (`StreamDialect.filters_since_itself`).

    `spans` collects `(first, last)` part timestamps of the joined lines whose parts were
    stamped at different times (Podman only): a resume must not start between the two, or
    it would read the line's tail without its head (see `StreamPosition.note_spans`).
    """

    def __init__(
        self,
        container_id: str,
        *,
        tty: bool,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        since_ns: int = 0,
        dialect: StreamDialect = DOCKER_STREAM,
    ) -> None:
        self.container_id = container_id
        self.tty = tty
        self.max_line_bytes = max_line_bytes
        self.since_ns = 0 if dialect.filters_since_itself else since_ns
        self._raw_tty = tty and not dialect.framed_tty
        self._parts_share_timestamp = dialect.parts_share_timestamp
        # Per stream: the newest timestamp among the later parts of a split line, when it
        # differs from the first part's (never under Docker).
        self._last_part_ts: dict[str, int] = {}
        self.spans: list[tuple[int, int]] = []
        self._pending = b""  # bytes received but not yet parsed (a split header/frame)
        # Per stream: (timestamp_ns, parts, bytes kept, bytes seen, its place in the output)
        # of a line Docker split.
        self._partial: dict[str, tuple[int, list[bytes], int, int, _Slot | None]] = {}
        # Records held behind a split line that began before them (see `_emit`).
        self._queue: deque[LogRecord | _Slot] = deque()
        self._run_ts: dict[str, int] = {}
        self._run_count: dict[str, int] = {}
        self._newest_ts = 0
        # The last "YYYY-MM-DDTHH:MM:SS" seen by the fast path, and its epoch in ns (-1: bad).
        self._second: tuple[bytes, int] = (b"-", -1)  # "-": matches no timestamp
        self._tty_message_ts: int | None = None  # TTY: timestamp of the message being read
        self._tty_message_bytes = 0
        self.invalid_timestamps = 0
        # What the C hot path needs to build records as `_record` does (see shipper/native.py).
        self._native_ctx = (LogRecord, container_id, STDOUT, STDERR, ())

    # -- public API ---------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> list[LogRecord]:
        """Parses one network chunk; returns the records completed by it, in stream order."""
        out: list[LogRecord] = []
        if self._raw_tty:
            self._feed_tty(chunk, out)
        else:
            self._feed_multiplexed(chunk, out)
        return self._since(out) if self.since_ns and out else out

    def finish(self) -> list[LogRecord]:
        """The stream ended (container stopped): a last line without newline is still a record."""
        out: list[LogRecord] = []
        if self._raw_tty and self._pending and self._tty_message_ts is not None:
            self._add_part(STDOUT, self._tty_message_ts, self._pending, False, out)
        self._pending = b""
        self._tty_message_ts = None
        for stream in list(self._partial):
            self._flush_partial(stream, out)
        return self._since(out) if self.since_ns and out else out

    def _since(self, records: list[LogRecord]) -> list[LogRecord]:
        """Without the lines stamped before `since_ns` (see the class docstring)."""
        since = self.since_ns
        if min(map(_TIMESTAMP_FIELD, records)) >= since:
            return records  # the common case: one pass in C, and the very list back
        return [r for r in records if r.timestamp_ns >= since]

    # -- multiplexed streams ------------------------------------------------------------------

    def take_spans(self) -> list[tuple[int, int]]:
        """The `spans` found since the last call (see the class docstring)."""
        spans, self.spans = self.spans, []
        return spans

    def _feed_multiplexed(self, chunk: bytes, out: list[LogRecord]) -> None:
        if native is not None and not self.tty:
            self._feed_multiplexed_native(chunk, out)
            return
        data = self._pending + chunk if self._pending else chunk
        pos = 0
        end = len(data)
        # The hot loop: nearly every frame is one complete line in the exact form Docker
        # writes (`<30-byte timestamp> <text>\n`), so it is decoded inline, with the run
        # counters of both streams in locals, and everything else goes through `_message`.
        append = out.append
        unpack_size = _FRAME_SIZE.unpack_from
        container_id = self.container_id
        # Framed TTY lines (Podman) end in the terminal's "\r\n": none takes the fast path
        # (which keeps the "\r"), every frame goes through `_message`.
        max_size = -1 if self.tty else self.max_line_bytes + _API_TIMESTAMP_BYTES + 2
        partial = self._partial
        run_ts, run_count = self._run_ts, self._run_count
        out_ts, out_n = run_ts.get(STDOUT, -1), run_count.get(STDOUT, 0)
        err_ts, err_n = run_ts.get(STDERR, -1), run_count.get(STDERR, 0)
        second, second_ns = self._second
        newest = self._newest_ts
        while end - pos >= _HEADER_BYTES:
            (size,) = unpack_size(data, pos + 4)
            frame_end = pos + _HEADER_BYTES + size
            if frame_end > end:
                break
            if (
                _API_TIMESTAMP_BYTES < size <= max_size
                and data[frame_end - 1] == 10  # \n
                and data[pos + 38] == 32  # the space after the timestamp
                and data[pos + 37] == 90  # Z
                and data[pos + 27] == 46  # .
                and not partial
            ):
                if not data.startswith(second, pos + 8):
                    second = data[pos + 8 : pos + 27]
                    second_ns = _epoch_ns(second)
                fraction = data[pos + 28 : pos + 37]
                try:
                    text = data[pos + 39 : frame_end - 1].decode()
                except UnicodeDecodeError:
                    text = None  # replaced and flagged by the general path
                if second_ns >= 0 and text is not None and fraction.isdigit():
                    ts = second_ns + int(fraction)
                    if data[pos] == 2:
                        stream = STDERR
                        if ts == err_ts:
                            seq = err_n
                            err_n += 1
                        else:
                            seq, err_ts, err_n = 0, ts, 1
                    else:
                        stream = STDOUT
                        if ts == out_ts:
                            seq = out_n
                            out_n += 1
                        else:
                            seq, out_ts, out_n = 0, ts, 1
                    if ts > newest:
                        newest = ts
                    record = (container_id, ts, stream, seq, text, (), None, size - 32)
                    append(_new_tuple(LogRecord, record))
                    pos = frame_end
                    continue
            # The general path keeps its counters in the dicts: hand them over and back.
            if out_ts >= 0:
                run_ts[STDOUT], run_count[STDOUT] = out_ts, out_n
            if err_ts >= 0:
                run_ts[STDERR], run_count[STDERR] = err_ts, err_n
            self._newest_ts = newest
            stream = STDERR if data[pos] == 2 else STDOUT
            self._message(stream, data[pos + _HEADER_BYTES : frame_end], out)
            newest = self._newest_ts
            out_ts, out_n = run_ts.get(STDOUT, -1), run_count.get(STDOUT, 0)
            err_ts, err_n = run_ts.get(STDERR, -1), run_count.get(STDERR, 0)
            pos = frame_end
        if out_ts >= 0:
            run_ts[STDOUT], run_count[STDOUT] = out_ts, out_n
        if err_ts >= 0:
            run_ts[STDERR], run_count[STDERR] = err_ts, err_n
        self._newest_ts = newest
        self._second = (second, second_ns)
        self._pending = data[pos:]

    def _feed_multiplexed_native(self, chunk: bytes, out: list[LogRecord]) -> None:
        """`_feed_multiplexed` with its fast loop in C: the C scan takes every frame in the
        exact form, and each frame it stops at goes through `_message`, as in the loop above
        (a frame the Python fast path takes, `_message` turns into the same record)."""
        assert native is not None
        data = self._pending + chunk if self._pending else chunk
        pos = 0
        end = len(data)
        max_size = self.max_line_bytes + _API_TIMESTAMP_BYTES + 2
        while end - pos >= _HEADER_BYTES:
            if not self._partial and not self._queue:
                state = self.run_state()
                pos = native.scan_frames(data, pos, out, self._native_ctx, max_size, state)
                self.set_run_state(state)
                if end - pos < _HEADER_BYTES:
                    break
            (size,) = _FRAME_SIZE.unpack_from(data, pos + 4)
            frame_end = pos + _HEADER_BYTES + size
            if frame_end > end:
                break
            stream = STDERR if data[pos] == 2 else STDOUT
            self._message(stream, data[pos + _HEADER_BYTES : frame_end], out)
            pos = frame_end
        self._pending = data[pos:]

    def run_state(self) -> list[int]:
        """The run counters and newest timestamp as the C hot path takes them (-1: no run)."""
        run_ts, run_count = self._run_ts, self._run_count
        return [
            run_ts.get(STDOUT, -1),
            run_count.get(STDOUT, 0),
            run_ts.get(STDERR, -1),
            run_count.get(STDERR, 0),
            self._newest_ts,
        ]

    def set_run_state(self, state: list[int]) -> None:
        out_ts, out_n, err_ts, err_n, self._newest_ts = state
        if out_ts >= 0:
            self._run_ts[STDOUT], self._run_count[STDOUT] = out_ts, out_n
        if err_ts >= 0:
            self._run_ts[STDERR], self._run_count[STDERR] = err_ts, err_n

    def _message(self, stream: str, payload: bytes, out: list[LogRecord]) -> None:
        space = payload.find(b" ", 0, _TIMESTAMP_MAX_BYTES)
        try:
            if space < 0:
                raise TimestampError("no timestamp")
            ts = parse_timestamp(payload[:space])
            content = payload[space + 1 :]
        except TimestampError:
            # Never drop bytes: keep the whole payload, stamped like the line before it.
            self.invalid_timestamps += 1
            ts = self._last_timestamp()
            content = payload
        complete = content.endswith(b"\n")
        if complete:
            content = content[:-1]
        self._add_part(stream, ts, content, complete, out)

    # -- TTY streams --------------------------------------------------------------------------

    def _feed_tty(self, chunk: bytes, out: list[LogRecord]) -> None:
        data = self._pending + chunk if self._pending else chunk
        pos = 0
        end = len(data)
        while pos < end:
            if self._tty_message_ts is None:
                match = _TTY_TIMESTAMP.match(data, pos)
                if match is None:
                    if end - pos < _TIMESTAMP_MAX_BYTES and b" " not in data[pos:end]:
                        break  # a timestamp split across chunks: wait for the rest
                    # Not a timestamp where one must be: keep the bytes as a line of their own.
                    self.invalid_timestamps += 1
                    self._tty_message_ts = self._last_timestamp()
                else:
                    self._tty_message_ts = parse_timestamp(data[pos : match.end() - 1])
                    pos = match.end()
                self._tty_message_bytes = 0
                continue
            room = DOCKER_PARTIAL_BYTES - self._tty_message_bytes
            newline = data.find(b"\n", pos, pos + room)
            limit = newline if newline >= 0 else min(end, pos + room)
            cut = self._tty_run_boundary(data, pos, limit)
            if cut >= 0:
                # The container stopped mid-line and a later run's message follows.
                self._add_part(STDOUT, self._tty_message_ts, data[pos:cut], True, out)
                pos = cut
                self._tty_message_ts = None
            elif newline >= 0:
                self._add_part(STDOUT, self._tty_message_ts, data[pos:newline], True, out)
                pos = newline + 1
                self._tty_message_ts = None
            elif end - pos >= room:
                # Docker cut the line here; the next part starts with its own timestamp.
                self._add_part(STDOUT, self._tty_message_ts, data[pos : pos + room], False, out)
                pos += room
                self._tty_message_ts = None
            else:
                # Part of a message: consume it, remember how far into the 16 KiB we are;
                # hold back a tail that could be the start of a later run's timestamp.
                keep = max(pos, end - _API_TIMESTAMP_BYTES)
                if keep == pos:
                    break
                self._add_part(STDOUT, self._tty_message_ts, data[pos:keep], False, out)
                self._tty_message_bytes += keep - pos
                pos = keep
        self._pending = data[pos:]

    def _tty_run_boundary(self, data: bytes, pos: int, limit: int) -> int:
        """Where, inside the TTY message being read, a later run's message starts, or -1.

        A line cut by the container's stop has no newline, so the next run's timestamp
        follows it directly. Such a timestamp is taken as a boundary only in Docker's exact
        form, not at the start of the message (apps often begin lines with their own time),
        and only if it is later than the message's: an app's "now" is stamped by Docker
        after the app wrote it, so times apps print are earlier than Docker's.
        """
        start = pos + 1 if self._tty_message_bytes == 0 else pos
        match = _TTY_EMBEDDED_TIMESTAMP.search(data, start, limit + _API_TIMESTAMP_BYTES + 1)
        if match is None or match.start() >= limit or self._tty_message_ts is None:
            return -1
        try:
            later = parse_timestamp(match.group()[:-1]) > self._tty_message_ts
        except TimestampError:
            return -1
        return match.start() if later else -1

    # -- joining and record building ----------------------------------------------------------

    def _add_part(
        self, stream: str, ts: int, content: bytes, complete: bool, out: list[LogRecord]
    ) -> None:
        partial = self._partial.get(stream)
        if partial is not None and partial[0] != ts:
            if self._parts_share_timestamp:
                # Every part of a split line carries the first part's timestamp: a message
                # with another one starts a new line, and the held part ended its run.
                self._flush_partial(stream, out)
                partial = None
            elif ts > self._last_part_ts.get(stream, partial[0]):
                self._last_part_ts[stream] = ts
        if partial is None:
            if complete and self.tty and content.endswith(b"\r"):
                # The terminal turned the program's "\n" into "\r\n" (onlcr); undo that.
                content = content[:-1]
            if complete and len(content) <= self.max_line_bytes:
                self._emit(self._record(stream, ts, content, len(content), ()), out)
                return
            partial = (ts, [], 0, 0, None)
        first_ts, parts, kept, seen, slot = partial
        room = self.max_line_bytes - kept
        if room > 0:
            piece = content[:room]
            parts.append(piece)
            kept += len(piece)
        seen += len(content)
        if complete:
            # (A complete message longer than max_line_bytes never was in `_partial`.)
            self._partial.pop(stream, None)
            self._emit_joined(stream, first_ts, parts, kept, seen, slot, out)
        else:
            if slot is None:
                # The line's place in the output is where its first part came: records of
                # the other stream that complete meanwhile wait behind it (see `_emit`).
                slot = _Slot()
                self._queue.append(slot)
            self._partial[stream] = (first_ts, parts, kept, seen, slot)

    def _flush_partial(self, stream: str, out: list[LogRecord]) -> None:
        first_ts, parts, kept, seen, slot = self._partial.pop(stream)
        self._emit_joined(stream, first_ts, parts, kept, seen, slot, out)

    def _emit(self, record: LogRecord, out: list[LogRecord]) -> None:
        """Records leave in the order their first parts arrived, whatever the stream.

        A resumed read skips the lines a checkpoint counts, by count: that is exact only if
        a read that ended early (at a container's stop) gave a prefix of what a longer read
        gives. So a line of one stream must not overtake a split line of the other that
        began before it, however the split line ends (its last part, or the next message).
        """
        if self._queue:
            self._queue.append(record)
        else:
            out.append(record)

    def _drain(self, out: list[LogRecord]) -> None:
        queue = self._queue
        while queue:
            front = queue[0]
            if isinstance(front, _Slot):
                if front.record is None:
                    return
                out.append(front.record)
            else:
                out.append(front)
            queue.popleft()

    def _emit_joined(
        self,
        stream: str,
        ts: int,
        parts: list[bytes],
        kept: int,
        seen: int,
        slot: _Slot | None,
        out: list[LogRecord],
    ) -> None:
        last_ts = self._last_part_ts.pop(stream, None)
        if last_ts is not None:
            self.spans.append((ts, last_ts))
        content = b"".join(parts)
        if self.tty and seen == kept and content.endswith(b"\r"):
            content = content[:-1]
            seen -= 1
            kept -= 1
        flags: tuple[str, ...] = ("truncated",) if seen > kept else ()
        if seen > kept and self.max_line_bytes > 0:
            content = _cut_at_character_boundary(content)
        record = self._record(stream, ts, content, seen, flags)
        if slot is None:
            self._emit(record, out)
        else:
            slot.record = record
            self._drain(out)

    def _record(
        self, stream: str, ts: int, content: bytes, size: int, flags: tuple[str, ...]
    ) -> LogRecord:
        # seq: position of this line among the lines of its stream with the same timestamp.
        # Docker stamps each stream's lines in order from one goroutine, so equal timestamps
        # of a stream are adjacent and a run counter per stream is exact, in O(1) memory.
        if ts == self._run_ts.get(stream):
            seq = self._run_count[stream]
            self._run_count[stream] = seq + 1
        else:
            seq = 0
            self._run_ts[stream] = ts
            self._run_count[stream] = 1
        if ts > self._newest_ts:
            self._newest_ts = ts
        try:
            message = content.decode("utf-8")
        except UnicodeDecodeError:
            message = content.decode("utf-8", "replace")
            flags = (*flags, "invalid_utf8")
        return _new_tuple(
            LogRecord, (self.container_id, ts, stream, seq, message, flags, None, size)
        )

    def _text_record(self, stream: str, ts: int, message: str, size: int) -> LogRecord:
        """`_record` for a complete line that is already text (json-file), same `seq` rule."""
        if ts == self._run_ts.get(stream):
            seq = self._run_count[stream]
            self._run_count[stream] = seq + 1
        else:
            seq = 0
            self._run_ts[stream] = ts
            self._run_count[stream] = 1
        if ts > self._newest_ts:
            self._newest_ts = ts
        # tuple.__new__ skips NamedTuple's Python-level __new__: a third of the cost per line.
        return _new_tuple(LogRecord, (self.container_id, ts, stream, seq, message, (), None, size))

    def _last_timestamp(self) -> int:
        return self._newest_ts


def _cut_at_character_boundary(content: bytes) -> bytes:
    """Drops a UTF-8 sequence cut in half by truncation, so the kept text stays valid."""
    for back in range(1, min(4, len(content)) + 1):
        byte = content[-back]
        if byte < 0x80:
            return content
        if byte >= 0xC0:  # lead byte: is its sequence complete?
            needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return content if back >= needed else content[:-back]
    return content
