"""Per-container quotas: `processing.rate_limit` rules and the label `shipper.rate_limit`.

Applied by the intake, where every source's records pass (Docker's follower today, the CRI
source next), after processing: a multiline event counts as one line. A quota is lines/s
and/or bytes/s with a burst: a token bucket holding `rate x burst_s` of each. Two actions:

* `pause` (the default; loses nothing). A container's records go into the buffer as fast as
  its bucket admits them (a large batch in several appends, the intake waiting in between);
  the container's follower waits for the intake and reads no further, so the lines wait in
  the runtime's log and are read later, in order, exactly once, at the quota's pace. This bucket runs on the shipper's clock (it limits how
  fast a container is *read*: a backlog, too, is read at the quota's pace). Each container
  waits in its own task before the buffer, so a neighbour is never held up. A container held
  back counts as busy for the rotation-risk warning, which then names the rate limit.
* `drop`. Records over the quota are dropped, counted per container and in
  `shipper_records_dropped_total{reason="rate_limit"}`, and one summary record per interval
  goes into the container's stream. This bucket runs on the records' own timestamps, not on
  when they are read: what is judged is how fast the container *wrote* (a backlog read fast
  after an outage is not dropped for being read fast), and the decisions are a function of
  the stream, so reading the same lines again after a crash decides the same. The limiter's
  state as of the lines a checkpoint covers is saved with the checkpoint (`committed`), so a
  restart continues the bucket and the interval's counts where they were.

Summary records: one per container and interval of `summary_interval_s` (aligned to the
epoch, by the records' timestamps) in which something was dropped. It is written with the
first record of a later interval, or, for a container gone quiet, once the interval is over
by the clock and nothing was put for the container for a while (`due_summary`).
`@timestamp` is the first dropped record's time, `event.start`/`event.end` the first and
last, `shipper.rate_limit.dropped_lines`/`dropped_bytes` the counts, `log.flags:
["rate_limited"]`. Its `_id` is made of the container and the interval's start
(`encoder.summary_id`): writing it again after a restart is answered 409, nothing doubles.

Label `shipper.rate_limit` (pod annotations will use the same text): comma-separated
`key=value` with the rule's keys: `lines_per_s=100,bytes_per_s=1m,burst_s=5,action=drop`
(sizes as Docker writes them: 512k, 1m, 1.5g). With a matching rule too, each limit and the
burst is the lower of the two (a label tightens an operator's quota, never lifts it), and the
label's `action`, if given, wins (the team that owns the logs decides whether to lose some).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from shipper.config import RateLimitConfig, RateLimitRule
from shipper.lines.timestamps import format_timestamp
from shipper.model import ContainerMeta, LogRecord, record_field
from shipper.pipeline.encoder import ContainerDocument, encode_event, summary_id
from shipper.pipeline.labels import RATE_LIMIT
from shipper.sources.checkpoint import LimiterState
from shipper.sources.rotation import parse_size
from shipper.sources.selection import rule_matches

LABEL_RULE = "label"  # the rule name of a quota set by the label alone
RATE_LIMITED_FLAG = "rate_limited"
DEFAULT_BURST_S = 5.0
_STATE_VERSION = 1
# Tokens are floats: a refill that should reach exactly what a record needs may fall short by
# a rounding error, and a wait for that error would be a busy loop.
_EPSILON = 1e-9
_TIMESTAMP_FIELD = record_field("timestamp_ns")
_SIZE_FIELD = record_field("size")


@dataclass(frozen=True, slots=True)
class QuotaSpec:
    rule: str  # rule id, "label", or "<rule id>+label"
    lines_per_s: float | None
    bytes_per_s: float | None
    burst_s: float
    action: str  # pause | drop

    @property
    def line_capacity(self) -> float:
        return math.inf if self.lines_per_s is None else self.lines_per_s * self.burst_s

    @property
    def byte_capacity(self) -> float:
        return math.inf if self.bytes_per_s is None else self.bytes_per_s * self.burst_s

    def describe(self) -> str:
        limits = []
        if self.lines_per_s is not None:
            limits.append(f"{self.lines_per_s:g} lines/s")
        if self.bytes_per_s is not None:
            limits.append(f"{self.bytes_per_s:g} bytes/s")
        return f"{self.rule!r}: {', '.join(limits)}, burst {self.burst_s:g} s"


class _Hint(NamedTuple):
    lines_per_s: float | None
    bytes_per_s: float | None
    burst_s: float | None
    action: str | None


def parse_hint(text: str) -> _Hint | str:
    """The label's value as a hint, or a sentence saying what is wrong with it."""
    values: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not eq or not value:
            return f"{part.strip()!r} is not key=value"
        if key not in ("lines_per_s", "bytes_per_s", "burst_s", "action"):
            return f"unknown key {key!r} (lines_per_s, bytes_per_s, burst_s, action)"
        values[key] = value
    lines = bytes_ = burst = None
    try:
        if "lines_per_s" in values:
            lines = float(values["lines_per_s"])
        if "burst_s" in values:
            burst = float(values["burst_s"])
    except ValueError as exc:
        return f"not a number: {exc}"
    if "bytes_per_s" in values:
        size = parse_size(values["bytes_per_s"])
        if size is None:
            return f"bytes_per_s={values['bytes_per_s']!r} is not a size (1048576, 512k, 1m)"
        bytes_ = float(size)
    for name, number in (("lines_per_s", lines), ("bytes_per_s", bytes_), ("burst_s", burst)):
        if number is not None and not (number > 0 and math.isfinite(number)):
            return f"{name} must be greater than 0"
    action = values.get("action", "").lower() or None
    if action not in (None, "pause", "drop"):
        return f"action={action!r} is not pause or drop"
    return _Hint(lines, bytes_, burst, action)


def resolve_quota(cfg: RateLimitConfig, meta: ContainerMeta) -> tuple[QuotaSpec | None, str]:
    """The container's quota (None: none), and a warning about its label ("" if none)."""
    rule: RateLimitRule | None = next((r for r in cfg.rules if rule_matches(r, meta)), None)
    text = meta.hints.get(RATE_LIMIT)
    hint = parse_hint(text) if text is not None else None
    warning = ""
    if isinstance(hint, str):
        warning = f"label {RATE_LIMIT}={text!r} ignored: {hint}"
        hint = None
    if hint is not None and rule is None and hint.lines_per_s is None and hint.bytes_per_s is None:
        warning = f"label {RATE_LIMIT}={text!r} ignored: it needs lines_per_s or bytes_per_s"
        hint = None
    if rule is None and hint is None:
        return None, warning
    if rule is None:
        assert hint is not None
        return (
            QuotaSpec(
                LABEL_RULE,
                hint.lines_per_s,
                hint.bytes_per_s,
                hint.burst_s or DEFAULT_BURST_S,
                hint.action or "pause",
            ),
            warning,
        )
    spec = QuotaSpec(
        rule.id,
        rule.lines_per_s,
        None if rule.bytes_per_s is None else float(rule.bytes_per_s),
        rule.burst_s,
        rule.action,
    )
    if hint is None:
        return spec, warning
    return (
        QuotaSpec(
            f"{rule.id}+{LABEL_RULE}",
            _lower(spec.lines_per_s, hint.lines_per_s),
            _lower(spec.bytes_per_s, hint.bytes_per_s),
            _lower(spec.burst_s, hint.burst_s) or spec.burst_s,
            hint.action or spec.action,
        ),
        warning,
    )


def _lower(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


class PauseGate:
    """The `pause` bucket, on the shipper's monotonic clock (pure: time is passed in)."""

    def __init__(self, spec: QuotaSpec, now_s: float) -> None:
        self.spec = spec
        self._lines = spec.line_capacity
        self._bytes = spec.byte_capacity
        self._at = now_s

    def admit(self, sizes: Sequence[int], now_s: float) -> tuple[int, float]:
        """How many of the next records (given their sizes, in order) the bucket admits now,
        their tokens taken; when none, how long until the first one is admitted.

        A record larger than the bucket is admitted when the bucket is full (it then owes
        the difference): the average rate holds, whatever the sizes.
        """
        spec = self.spec
        elapsed = max(0.0, now_s - self._at)
        self._at = now_s
        line_rate, byte_rate = spec.lines_per_s, spec.bytes_per_s
        line_cap, byte_cap = spec.line_capacity, spec.byte_capacity
        if line_rate is not None:
            self._lines = min(line_cap, self._lines + elapsed * line_rate)
        if byte_rate is not None:
            self._bytes = min(byte_cap, self._bytes + elapsed * byte_rate)
        need_line = min(1.0, line_cap) - _EPSILON
        admitted = 0
        for size in sizes:
            if self._lines < need_line or self._bytes < min(float(size), byte_cap) - _EPSILON:
                break
            self._lines -= 1
            self._bytes -= size
            admitted += 1
        if admitted or not sizes:
            return admitted, 0.0
        wait = 0.0
        if line_rate is not None and self._lines < need_line:
            wait = (need_line + _EPSILON - self._lines) / line_rate
        if byte_rate is not None:
            need_bytes = min(float(sizes[0]), byte_cap)
            if self._bytes < need_bytes - _EPSILON:
                wait = max(wait, (need_bytes - self._bytes) / byte_rate)
        return 0, wait

    def refund(self, lines: int, nbytes: int) -> None:
        """Gives back what `admit` took for records that did not go into the buffer."""
        self._lines = min(self.spec.line_capacity, self._lines + lines)
        self._bytes = min(self.spec.byte_capacity, self._bytes + nbytes)


@dataclass(frozen=True, slots=True)
class DropSummary:
    """What one interval dropped: the content of its summary record."""

    window_start_ns: int  # identifies the interval (the record's `_id`)
    window_end_ns: int
    first_ns: int  # timestamps of the first and the last record dropped in it
    last_ns: int
    lines: int
    bytes: int
    rule: str
    limit: str  # the quota, described: rule and limits


def summary_entry(document: ContainerDocument, summary: DropSummary) -> bytes:
    """The summary record of an interval, as a buffer entry of the container's stream."""
    first, last = format_timestamp(summary.first_ns), format_timestamp(summary.last_ns)
    message = (
        f"{summary.lines} line(s), {summary.bytes} bytes, of this container were dropped by "
        f"the shipper between {first} and {last}: over its rate limit {summary.limit}"
    )
    fields = {
        "event.start": first,
        "event.end": last,
        "shipper.rate_limit.dropped_lines": summary.lines,
        "shipper.rate_limit.dropped_bytes": summary.bytes,
        "shipper.rate_limit.rule": summary.rule,
    }
    doc_id = summary_id(document.container_id, summary.window_start_ns)
    return encode_event(document, doc_id, summary.first_ns, message, (RATE_LIMITED_FLAG,), fields)


@dataclass(slots=True)
class DropDecision:
    kept: list[LogRecord]
    dropped_lines: int = 0
    summaries: list[DropSummary] = field(default_factory=list)


@dataclass(slots=True)
class _DropState:
    last_ns: int = 0  # newest record timestamp seen (0: none yet, the bucket is full)
    lines: float = 0.0  # tokens
    bytes: float = 0.0
    window_start_ns: int = 0  # the interval being counted (0: none yet)
    window_end_ns: int = 0
    dropped_lines: int = 0  # in that interval
    dropped_bytes: int = 0
    first_dropped_ns: int = 0
    last_dropped_ns: int = 0

    def as_tuple(self) -> LimiterState:
        # A dimension without a limit has an endless bucket: saved as 0 (JSON has no
        # infinity), read back as endless again (`of`).
        return (
            _STATE_VERSION,
            self.last_ns,
            _finite(self.lines),
            _finite(self.bytes),
            self.window_start_ns,
            self.window_end_ns,
            self.dropped_lines,
            self.dropped_bytes,
            self.first_dropped_ns,
            self.last_dropped_ns,
        )

    @classmethod
    def of(cls, state: LimiterState | None, spec: QuotaSpec) -> _DropState:
        if state is not None and len(state) == 10 and state[0] == _STATE_VERSION:
            _, last, lines, nbytes, w_start, w_end, d_lines, d_bytes, first, last_d = state
            return cls(
                int(last),
                min(float(lines), spec.line_capacity) if spec.lines_per_s else math.inf,
                min(float(nbytes), spec.byte_capacity) if spec.bytes_per_s else math.inf,
                int(w_start),
                int(w_end),
                int(d_lines),
                int(d_bytes),
                int(first),
                int(last_d),
            )
        return cls(lines=spec.line_capacity, bytes=spec.byte_capacity)


def _finite(tokens: float) -> float:
    return tokens if math.isfinite(tokens) else 0.0


class DropLimiter:
    """The `drop` bucket, on the records' timestamps; decisions depend on the stream only.

    `decide` changes the live state; after the records (and summaries) are in the buffer the
    caller calls `commit`, or `rollback` if they could not be written, so that a retry of the
    same records decides the same and the saved state matches the lines a checkpoint covers.
    """

    def __init__(self, spec: QuotaSpec, interval_ns: int, state: LimiterState | None) -> None:
        self.spec = spec
        self.interval_ns = interval_ns
        self._state = _DropState.of(state, spec)
        self._committed = self._state.as_tuple()

    @property
    def committed(self) -> LimiterState:
        return self._committed

    def commit(self) -> None:
        self._committed = self._state.as_tuple()

    def rollback(self) -> None:
        self._state = _DropState.of(self._committed, self.spec)

    def decide(self, records: Sequence[LogRecord]) -> DropDecision:
        spec, state = self.spec, self._state
        line_rate, byte_rate = spec.lines_per_s, spec.bytes_per_s
        line_cap, byte_cap = spec.line_capacity, spec.byte_capacity
        need_line = min(1.0, line_cap) - _EPSILON
        decision = DropDecision([])
        kept = decision.kept
        interval = self.interval_ns
        for record, ts, size in zip(
            records, map(_TIMESTAMP_FIELD, records), map(_SIZE_FIELD, records), strict=True
        ):
            if ts >= state.window_end_ns:
                if state.dropped_lines:
                    decision.summaries.append(self._close_window())
                state.window_start_ns = ts - ts % interval
                state.window_end_ns = state.window_start_ns + interval
            if ts > state.last_ns:
                if state.last_ns:
                    elapsed_s = (ts - state.last_ns) / 1e9
                    if line_rate is not None:
                        state.lines = min(line_cap, state.lines + elapsed_s * line_rate)
                    if byte_rate is not None:
                        state.bytes = min(byte_cap, state.bytes + elapsed_s * byte_rate)
                state.last_ns = ts
            if (line_rate is None or state.lines >= need_line) and (
                byte_rate is None or state.bytes >= min(float(size), byte_cap) - _EPSILON
            ):
                state.lines -= 1
                state.bytes -= size
                kept.append(record)
                continue
            decision.dropped_lines += 1
            # A record stamped before the interval (stdout/stderr jitter across its start) is
            # counted in the interval being counted; the summary's span includes it.
            if not state.dropped_lines or ts < state.first_dropped_ns:
                state.first_dropped_ns = ts
            state.dropped_lines += 1
            state.dropped_bytes += size
            state.last_dropped_ns = max(state.last_dropped_ns, ts)
        return decision

    @property
    def dropped_since_summary(self) -> int:
        """Records dropped in the interval being counted (its summary is not written yet)."""
        return self._state.dropped_lines

    def due_summary(self, now_ns: int, grace_ns: int) -> DropSummary | None:
        """The summary of an interval that is over by `now_ns` (plus `grace_ns` for lines
        still on their way), if it dropped anything; its counts start afresh."""
        state = self._state
        if not state.dropped_lines or now_ns < state.window_end_ns + grace_ns:
            return None
        return self._close_window()

    def _close_window(self) -> DropSummary:
        state = self._state
        summary = DropSummary(
            state.window_start_ns,
            state.window_end_ns,
            state.first_dropped_ns,
            state.last_dropped_ns,
            state.dropped_lines,
            state.dropped_bytes,
            self.spec.rule,
            self.spec.describe(),
        )
        state.dropped_lines = state.dropped_bytes = 0
        state.first_dropped_ns = state.last_dropped_ns = 0
        return summary


class ContainerQuota:
    """A container's quota and its bucket; rebuilt when the quota in force changes."""

    def __init__(
        self, spec: QuotaSpec, interval_ns: int, now_s: float, state: LimiterState | None
    ) -> None:
        self.spec = spec
        self.gate = PauseGate(spec, now_s) if spec.action == "pause" else None
        self.limiter = DropLimiter(spec, interval_ns, state) if spec.action == "drop" else None
