"""Pure parser of the logs API body: frames → timestamped lines → `LogRecord`s.

What Docker sends for `GET /containers/{id}/logs?timestamps=1`:

* Non-TTY containers: a multiplexed stream of frames. Each frame is an 8-byte header
  (stream id: 1 stdout, 2 stderr; three zero bytes; big-endian u32 payload size) and a payload.
  Docker writes one frame per log message, and the payload is
  `<RFC 3339 timestamp with 9 fraction digits> <message>`.
* TTY containers: the same messages without any frame header (everything is stdout).

A message ends with `\\n` unless Docker split a long line: its log copier cuts lines at 16 KiB
into *partial* messages that all carry the first part's timestamp, and only the last part
ends with `\\n`. We join the parts into one record (shipper/lines/assembler.py). A message also lacks the `\\n` when the
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
Timestamps, joining and `seq` follow the rules every source shares (shipper/lines); the C hot
path takes the frames in the exact form Docker writes, and this code reads the rest.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Final

from shipper.lines.assembler import LineAssembler
from shipper.lines.timestamps import TimestampError, parse_timestamp
from shipper.model import STDERR, STDOUT, LogRecord, record_field
from shipper.native import ScanFrames, native

DOCKER_PARTIAL_BYTES: Final = 16 * 1024
DEFAULT_MAX_LINE_BYTES: Final = 1024 * 1024

_HEADER_BYTES: Final = 8
_FRAME_SIZE: Final = struct.Struct(">I")  # the payload size, at offset 4 of the header
# RFC3339NanoFixed as Docker writes it: 2026-11-28T04:10:00.123456789Z (always UTC here).
_TTY_TIMESTAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d) ")
# Inside a TTY message: the exact form the logs API prefixes messages with (RFC3339NanoFixed).
_TTY_EMBEDDED_TIMESTAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")
_API_TIMESTAMP_BYTES: Final = 30  # 2026-11-28T04:10:00.123456789Z
_TIMESTAMP_MAX_BYTES: Final = 36  # longest form, with a numeric offset, plus the space
_TIMESTAMP_FIELD = record_field("timestamp_ns")


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


def _scan_no_frames(data: bytes, pos: int, *_: object) -> int:
    """Without the C hot path: takes none, so `_message` reads every frame."""
    return pos


# Chosen once, at import (shipper/native.py decides whether the C hot path is usable).
_scan_frames: ScanFrames = native.scan_frames if native is not None else _scan_no_frames


class LogStreamDecoder:
    """Turns the logs API body of one container into records, chunk by chunk.

    Each record gets its `seq` (shipper/lines/seq.py). A decoder started at a checkpoint's
    `since` computes the same `seq`s as one that read from the start, because every line with
    a timestamp at or after `since` is re-read.

    Lines stamped before `since_ns` are dropped. Docker 20.10 never sends them, but a current
    engine (seen on 28.5) starts at the first line stamped at or after `since` and sends every
    line after it in the file, including a line of the other stream stamped a little earlier
    that its copier wrote later (stdout and stderr are stamped by separate goroutines). Those
    lines were taken before the checkpoint and are not counted in its `skip`; dropping them
    here gives the records the json-file decoder gives, whichever engine answers. Within one
    stream timestamps only grow, so dropping them changes no `seq`. Podman filters every
    message by its own time, and reports that time cut to the second (up to 5.7), which may
    be before `since`: nothing is dropped there (`StreamDialect.filters_since_itself`).

    `take_spans()` gives the `(first, last)` part timestamps of joined lines whose parts were
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
        # Docker stamps every part of a split line with the first part's timestamp: a message
        # with another one starts a new line, and the held part ended its container's run.
        self._lines = LineAssembler(
            container_id,
            max_line_bytes=max_line_bytes,
            tty=tty,
            parts_share_timestamp=dialect.parts_share_timestamp,
        )
        self._pending = b""  # bytes received but not yet parsed (a split header/frame)
        self._tty_message_ts: int | None = None  # TTY: timestamp of the message being read
        self._tty_message_bytes = 0
        self.invalid_timestamps = 0

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
            self._lines.add_part(STDOUT, self._tty_message_ts, self._pending, False, out)
        self._pending = b""
        self._tty_message_ts = None
        self._lines.finish(out)
        return self._since(out) if self.since_ns and out else out

    @property
    def spans(self) -> list[tuple[int, int]]:
        """Spans found and not taken yet (see the class docstring)."""
        return self._lines.spans

    def take_spans(self) -> list[tuple[int, int]]:
        """The spans found since the last call (see the class docstring)."""
        return self._lines.take_spans()

    def _since(self, records: list[LogRecord]) -> list[LogRecord]:
        """Without the lines stamped before `since_ns` (see the class docstring)."""
        since = self.since_ns
        if min(map(_TIMESTAMP_FIELD, records)) >= since:
            return records  # the common case: one pass in C, and the very list back
        return [r for r in records if r.timestamp_ns >= since]

    # -- multiplexed streams ------------------------------------------------------------------

    def _feed_multiplexed(self, chunk: bytes, out: list[LogRecord]) -> None:
        data = self._pending + chunk if self._pending else chunk
        pos = 0
        end = len(data)
        lines = self._lines
        max_size = self.max_line_bytes + _API_TIMESTAMP_BYTES + 2
        # Framed TTY lines (Podman) end in the terminal's "\r\n": the C scan (which would keep
        # the "\r") takes none of them, every frame goes through `_message`.
        scan = not self.tty
        while end - pos >= _HEADER_BYTES:
            if scan and lines.idle:
                # The C hot path takes the frames in the exact form Docker writes, up to the
                # first that is not (or none, without it); that one is read below.
                pos = _scan_frames(data, pos, out, lines.native_ctx, max_size, lines.seq.runs)
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
            ts = self._lines.newest_ns
            content = payload
        complete = content.endswith(b"\n")
        if complete:
            content = content[:-1]
        self._lines.add_part(stream, ts, content, complete, out)

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
                    self._tty_message_ts = self._lines.newest_ns
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
                self._lines.add_part(STDOUT, self._tty_message_ts, data[pos:cut], True, out)
                pos = cut
                self._tty_message_ts = None
            elif newline >= 0:
                self._lines.add_part(STDOUT, self._tty_message_ts, data[pos:newline], True, out)
                pos = newline + 1
                self._tty_message_ts = None
            elif end - pos >= room:
                # Docker cut the line here; the next part starts with its own timestamp.
                self._lines.add_part(
                    STDOUT, self._tty_message_ts, data[pos : pos + room], False, out
                )
                pos += room
                self._tty_message_ts = None
            else:
                # Part of a message: consume it, remember how far into the 16 KiB we are;
                # hold back a tail that could be the start of a later run's timestamp.
                keep = max(pos, end - _API_TIMESTAMP_BYTES)
                if keep == pos:
                    break
                self._lines.add_part(STDOUT, self._tty_message_ts, data[pos:keep], False, out)
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
