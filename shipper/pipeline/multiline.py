"""Joins the lines of one multi-line event (stack traces, indented continuations) per stream.

Semantics follow Filebeat's `multiline.pattern/negate/match` so existing configs carry over:
a line "continues" when `pattern` is found in it XOR `negate`;
  - match=after: a continuing line is appended to the event before it; any other line starts
    a new event (and sends the previous one);
  - match=before: a continuing line waits for the lines after it; the first non-continuing
    line ends the event and it is sent.
The presets (`java`, `python`, `go`) are match=after classifiers that keep a little state,
because a single regex cannot tell that `ValueError: x` ends a Python traceback while the same
line elsewhere starts an event.

stdout and stderr are joined separately: interleaving them would splice unrelated output into
a trace. Where Filebeat drops lines beyond `max_lines`, we cut the event there and start
another piece, flagging every piece `multiline_split`: no line is ever lost, and the pieces
stay adjacent in Elasticsearch by timestamp. A joined event keeps the first line's identity
(container_id, timestamp_ns, stream, seq), so the document `_id` is the same whenever the
lines are read again after a restart, as long as the caller does not checkpoint past
`oldest_pending()`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from shipper.model import LogRecord
from shipper.pipeline.stats import ProcessorStats

Classifier = Callable[[str], bool]  # True: the line continues an event (may keep state)

MULTILINE_FLAG = "multiline"
SPLIT_FLAG = "multiline_split"
PRESETS = ("java", "python", "go")


def _java() -> Classifier:
    # printStackTrace indents frames ("\tat ...", "\t... 3 more", "\tSuppressed: ...") and
    # starts each cause at column 0 with "Caused by: ". The exception's own first line
    # ("Exception in thread ...", "java.lang.X: ...") is not indented and starts the event.
    prefixes = (" ", "\t", "Caused by: ")
    return lambda message: message.startswith(prefixes)


_PY_NONE, _PY_TRACE, _PY_AFTER_EXC, _PY_BLANK1, _PY_CHAIN, _PY_BLANK2 = range(6)
_PY_CHAIN_HEADERS = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)


class _PythonTraceback:
    """Python traceback: header, indented frames, then the unindented exception line.

    Chained exceptions ("During handling of the above exception ...") keep going in the same
    event through their blank lines. One blank line after a traceback's last line is taken
    into the event because only the next line can tell whether a chain follows.
    """

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = _PY_NONE

    def __call__(self, message: str) -> bool:
        state = self.state
        if message.startswith((" ", "\t")):
            return True  # frames, source lines, carets, exception groups, indented output
        if not message:
            if state == _PY_AFTER_EXC:
                self.state = _PY_BLANK1
                return True
            if state == _PY_CHAIN:
                self.state = _PY_BLANK2
                return True
            return state == _PY_TRACE
        if message.startswith("Traceback (most recent call last):"):
            self.state = _PY_TRACE
            return state == _PY_BLANK2
        if state == _PY_TRACE:
            self.state = _PY_AFTER_EXC  # "ValueError: bad input" ends this traceback
            return True
        if state == _PY_BLANK1 and message.startswith(_PY_CHAIN_HEADERS):
            self.state = _PY_CHAIN
            return True
        self.state = _PY_NONE
        return False


_GO_FRAME = re.compile(r"[\w./\-*()\[\]{}]+\(.*\)$")  # main.(*S).run(0xc0, {0x1, 0x2})
_GO_CONT_PREFIXES = (
    " ",
    "\t",
    "goroutine ",
    "created by ",
    "[signal ",
    "runtime stack:",
    "...additional frames elided...",
    "exit status ",
)


class _GoPanic:
    """Go panic / fatal error: everything up to the end of the goroutine dumps."""

    __slots__ = ("in_panic",)

    def __init__(self) -> None:
        self.in_panic = False

    def __call__(self, message: str) -> bool:
        if message.startswith(("panic: ", "fatal error: ")):
            self.in_panic = True
            return False
        if self.in_panic and (
            not message or message.startswith(_GO_CONT_PREFIXES) or _GO_FRAME.match(message)
        ):
            return True
        self.in_panic = False
        return False


def _pattern_classifier(pattern: re.Pattern[str], negate: bool) -> Classifier:
    search = pattern.search
    if negate:
        return lambda message: search(message) is None
    return lambda message: search(message) is not None


@dataclass(frozen=True, slots=True)
class MultilineSpec:
    """How one container's lines join, resolved from its labels or a config rule."""

    preset: str | None  # java | python | go, or None for a pattern
    pattern: re.Pattern[str] | None
    negate: bool
    match: Literal["after", "before"]
    max_lines: int
    max_bytes: int
    flush_timeout_s: float

    def new_classifier(self) -> Classifier:
        """A fresh classifier: presets keep state, so each stream needs its own."""
        if self.preset == "java":
            return _java()
        if self.preset == "python":
            return _PythonTraceback()
        if self.preset == "go":
            return _GoPanic()
        assert self.pattern is not None
        return _pattern_classifier(self.pattern, self.negate)


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class _Stream:
    __slots__ = ("classify", "last_s", "lines", "nbytes", "split")

    def __init__(self, classify: Classifier) -> None:
        self.classify = classify
        self.lines: list[LogRecord] = []
        self.nbytes = 0
        self.split = False  # the pending event continues one cut at a limit
        self.last_s = 0.0  # monotonic time its last line arrived


class MultilineJoiner:
    """Per-container, per-stream joining; fed whole batches, holds at most one event a stream."""

    def __init__(self, spec: MultilineSpec, stats: ProcessorStats) -> None:
        self.spec = spec
        self._stats = stats
        self._streams: dict[str, _Stream] = {}

    def push(self, records: Iterable[LogRecord], now_s: float) -> list[LogRecord]:
        out: list[LogRecord] = []
        streams = self._streams
        after = self.spec.match == "after"
        max_lines, max_bytes = self.spec.max_lines, self.spec.max_bytes
        for record in records:
            stream = streams.get(record.stream)
            if stream is None:
                stream = streams[record.stream] = _Stream(self.spec.new_classifier())
            stream.last_s = now_s
            size = _utf8_len(record.message)
            continues = stream.classify(record.message)
            lines = stream.lines
            if after and not continues and lines:
                self._emit(stream, out, cut=False)
                lines = stream.lines
            elif lines and (len(lines) >= max_lines or stream.nbytes + 1 + size > max_bytes):
                self._emit(stream, out, cut=True)
                lines = stream.lines
            if lines:
                stream.nbytes += 1 + size
            else:
                stream.nbytes = size
            lines.append(record)
            if not after and not continues:
                self._emit(stream, out, cut=False)
        return out

    def flush_due(self, now_s: float) -> list[LogRecord]:
        out: list[LogRecord] = []
        timeout = self.spec.flush_timeout_s
        for stream in self._streams.values():
            if stream.lines and now_s - stream.last_s >= timeout:
                self._emit(stream, out, cut=False)
        return out

    def flush_all(self) -> list[LogRecord]:
        out: list[LogRecord] = []
        for stream in self._streams.values():
            if stream.lines:
                self._emit(stream, out, cut=False)
        return out

    def next_deadline(self) -> float | None:
        deadlines = [s.last_s for s in self._streams.values() if s.lines]
        return min(deadlines) + self.spec.flush_timeout_s if deadlines else None

    def pending_heads(self) -> list[tuple[int, str, int]]:
        """(timestamp_ns, stream, seq) of the first line held for each stream."""
        return [
            (s.lines[0].timestamp_ns, s.lines[0].stream, s.lines[0].seq)
            for s in self._streams.values()
            if s.lines
        ]

    def held_lines(self) -> int:
        return sum(len(s.lines) for s in self._streams.values())

    def held_identities(self) -> list[tuple[int, str, int]]:
        return [(r.timestamp_ns, r.stream, r.seq) for s in self._streams.values() for r in s.lines]

    def oldest_pending(self) -> tuple[int, int] | None:
        held = [
            (s.lines[0].timestamp_ns, s.lines[0].seq) for s in self._streams.values() if s.lines
        ]
        return min(held) if held else None

    def _emit(self, stream: _Stream, out: list[LogRecord], *, cut: bool) -> None:
        lines = stream.lines
        split = stream.split or cut
        if cut:
            self._stats.multiline_splits += 1
        stream.lines, stream.nbytes, stream.split = [], 0, cut
        if len(lines) == 1 and not split:
            out.append(lines[0])
            return
        first = lines[0]
        flags = list(first.flags)
        for line in lines[1:]:
            flags.extend(flag for flag in line.flags if flag not in flags)
        if len(lines) > 1:
            flags.append(MULTILINE_FLAG)
            self._stats.multiline_events += 1
            self._stats.multiline_lines += len(lines)
        if split:
            flags.append(SPLIT_FLAG)
        out.append(
            first._replace(
                message="\n".join([line.message for line in lines]),
                flags=tuple(flags),
                size=sum(line.size for line in lines),
            )
        )
