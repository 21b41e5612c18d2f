"""The parts of a container's lines → its `LogRecord`s: joining, capping, decoding, order.

A runtime hands over a line as one or more parts. Docker cuts lines longer than 16 KiB into
*partial* messages, all stamped with the first part's time; the CRI files do the same with a
`P` tag on every part but the last, which is tagged `F`, and stamp each part with its own
time. A line cut short by its container's stop has parts but no last one. Whatever the
runtime, the joining is this:

* a part that is not *complete* is held for its stream, and the next part of that stream
  continues it; the complete one ends it. The record keeps the first part's timestamp.
* the line keeps at most `max_line_bytes` bytes; a longer one keeps its start, cut at a UTF-8
  character boundary, and is flagged `truncated`. Its `size` counts every byte the runtime
  wrote.
* on a TTY, the terminal turned the program's `\\n` into `\\r\\n`: the `\\r` is dropped.
* bytes that are not UTF-8 are replaced (U+FFFD) and the record is flagged `invalid_utf8`.

A held line also ends without its last part when its container stopped mid-line. Docker's
parts all carry the first part's timestamp, so there a part with another timestamp cannot
continue the held line: it ended, and the part starts the next one (`parts_share_timestamp`).
The CRI parts carry their own, so any part continues. And every held line ends with its
stream (`finish`).
"""

from __future__ import annotations

from collections import deque
from typing import Final

from shipper.lines.seq import SeqCounter
from shipper.model import STDERR, STDOUT, LogRecord

TRUNCATED_FLAG: Final = "truncated"
INVALID_UTF8_FLAG: Final = "invalid_utf8"

# tuple.__new__ skips NamedTuple's Python-level __new__: a third of the cost of a record.
_new_tuple: Final = tuple.__new__


class _Slot:
    """The place of a split line in the output, filled when the line is complete."""

    __slots__ = ("record",)

    def __init__(self) -> None:
        self.record: LogRecord | None = None


class _HeldLine:
    """The parts of a line received so far."""

    __slots__ = ("kept", "last_ns", "parts", "seen", "slot", "timestamp_ns")

    def __init__(self, timestamp_ns: int) -> None:
        self.timestamp_ns = timestamp_ns  # the first part's
        self.last_ns = timestamp_ns  # the newest part's (later only where parts have their own)
        self.parts: list[bytes] = []  # what is kept of them, at most max_line_bytes in all
        self.kept = 0  # bytes in `parts`
        self.seen = 0  # bytes of every part
        self.slot: _Slot | None = None


class LineAssembler:
    """Builds the records of one container's lines from their parts, in order."""

    def __init__(
        self, container_id: str, *, max_line_bytes: int, tty: bool, parts_share_timestamp: bool
    ) -> None:
        self.container_id = container_id
        self.max_line_bytes = max_line_bytes
        self.tty = tty
        self.parts_share_timestamp = parts_share_timestamp
        self.seq = SeqCounter()
        # (first, newest) part timestamps of joined lines whose parts were stamped at
        # different times: a resume between the two would read the line's tail without its
        # head, so positions keep clear of them (`StreamPosition.note_spans`).
        self.spans: list[tuple[int, int]] = []
        self._held: dict[str, _HeldLine] = {}  # per stream, a line not complete yet
        self._queue: deque[LogRecord | _Slot] = deque()  # records behind a held line
        # What the C hot path needs to build records as `_record` does (see shipper/native.py).
        self.native_ctx = (LogRecord, container_id, STDOUT, STDERR, ())

    @property
    def idle(self) -> bool:
        """No line is held: the next part starts a line, and its record can leave at once."""
        return not self._held and not self._queue

    @property
    def newest_ns(self) -> int:
        """The newest timestamp of a record made so far (0 before the first)."""
        return self.seq.newest_ns

    def add_part(
        self, stream: str, timestamp_ns: int, content: bytes, complete: bool, out: list[LogRecord]
    ) -> None:
        """A part of a line of `stream` (without its newline); `complete`: it ends the line.
        It continues the line held for its stream, if there is one, else it starts one."""
        held = self._held.get(stream)
        if held is not None and self.parts_share_timestamp and held.timestamp_ns != timestamp_ns:
            self.end_line(stream, out)
            held = None
        if held is None:
            if complete and self.tty and content.endswith(b"\r"):
                content = content[:-1]
            if complete and len(content) <= self.max_line_bytes:
                # A whole line in one part, the common case.
                self._emit(self._record(stream, timestamp_ns, content, len(content), ()), out)
                return
            held = _HeldLine(timestamp_ns)
        elif timestamp_ns > held.last_ns:
            held.last_ns = timestamp_ns
        room = self.max_line_bytes - held.kept
        if room > 0:
            piece = content[:room]
            held.parts.append(piece)
            held.kept += len(piece)
        held.seen += len(content)
        if complete:
            self._held.pop(stream, None)
            self._emit_joined(stream, held, out)
        elif held.slot is None:
            # The line's place in the output is where its first part came: records of the
            # other stream that complete meanwhile wait behind it (see `_emit`).
            held.slot = _Slot()
            self._queue.append(held.slot)
            self._held[stream] = held

    def end_line(self, stream: str, out: list[LogRecord]) -> None:
        """The line held for `stream` ends without a last part (its container stopped)."""
        held = self._held.pop(stream, None)
        if held is not None:
            self._emit_joined(stream, held, out)

    def finish(self, out: list[LogRecord]) -> None:
        """The streams ended: every held line is a record."""
        for stream in list(self._held):
            self.end_line(stream, out)

    def take_spans(self) -> list[tuple[int, int]]:
        """The `spans` found since the last call."""
        spans, self.spans = self.spans, []
        return spans

    def _emit_joined(self, stream: str, held: _HeldLine, out: list[LogRecord]) -> None:
        if held.last_ns != held.timestamp_ns:
            self.spans.append((held.timestamp_ns, held.last_ns))
        content = b"".join(held.parts)
        size = held.seen
        flags: tuple[str, ...] = ()
        if size > held.kept:
            flags = (TRUNCATED_FLAG,)
            if self.max_line_bytes > 0:
                content = _cut_at_character_boundary(content)
        elif self.tty and content.endswith(b"\r"):
            content = content[:-1]
            size -= 1
        record = self._record(stream, held.timestamp_ns, content, size, flags)
        if held.slot is None:
            self._emit(record, out)
        else:
            held.slot.record = record
            self._drain(out)

    def _emit(self, record: LogRecord, out: list[LogRecord]) -> None:
        """Records leave in the order their first parts arrived, whatever the stream.

        A resumed read skips the lines a checkpoint counts, by count: that is exact only if
        a read that ended early (at a container's stop) gave a prefix of what a longer read
        gives. So a line of one stream must not overtake a split line of the other that
        began before it, however the split line ends (its last part, or the stream's end).
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

    def _record(
        self, stream: str, timestamp_ns: int, content: bytes, size: int, flags: tuple[str, ...]
    ) -> LogRecord:
        seq = self.seq.next_seq(stream, timestamp_ns)
        try:
            message = content.decode("utf-8")
        except UnicodeDecodeError:
            message = content.decode("utf-8", "replace")
            flags = (*flags, INVALID_UTF8_FLAG)
        record = (self.container_id, timestamp_ns, stream, seq, message, flags, None, size)
        return _new_tuple(LogRecord, record)


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
