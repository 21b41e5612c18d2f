"""Warns when a container's unread backlog risks being rotated away by Docker.

The shipper never drops a line itself: when the buffer is full or the disk is, it stops
reading and Docker keeps the logs. But Docker keeps them only within the json-file or local
driver's rotation limits (`max-size` x `max-file`); a container that writes faster than we
read for long enough has its oldest unread lines deleted by Docker before we get to them.
That loss cannot be prevented from here, only made visible early.

The backlog is estimated without touching the log files (the shipper may only have the
API socket): the container's write rate is measured from the Docker timestamps and sizes of
the lines we did take (so it is the rate the container wrote at, not the rate we read at),
and multiplied by how far the newest line taken lags behind the wall clock. Lines in the
files are bigger than the lines themselves (json-file wraps each one in JSON with a
timestamp; local in a protobuf frame): a per-line overhead is added. The estimate is only
made while the follower is busy (a hand-over to the buffer is pending, i.e. reading is
paused, or one finished in the last seconds, i.e. reading is live or catching up) and the
container runs: an idle or stopped container has no backlog growing.

Everything here is pure (time is passed in); the checkpointer (`sources/checkpointer.py`)
feeds it and acts on the result.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shipper.model import ContainerMeta, LogRecord

# Warn when the estimated backlog reaches this share of what the driver keeps. Half, not
# nearly all: the newest file is partly filled already when the backlog starts, and with
# max-file 1 a rotation empties the only file, so the real margin is below max-size x max-file.
DEFAULT_RISK_RATIO = 0.5
# Bytes a line takes in the driver's file beyond its own bytes.
_LINE_OVERHEAD_BYTES = {"json-file": 64, "local": 32}
# Docker's defaults for the local driver (daemon-wide log-opts may differ; they show up in
# the container's LogConfig.Config when set).
_LOCAL_DEFAULT_MAX_SIZE = 20 * 1024 * 1024
_LOCAL_DEFAULT_MAX_FILE = 5

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


def parse_size(text: str) -> int | None:
    """Docker's size syntax (`units.RAMInBytes`: "10m", "1.5g", "512kb", 1024-based)."""
    match = _SIZE.match(text)
    if match is None:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


@dataclass(frozen=True, slots=True)
class RotationLimits:
    max_size_bytes: int
    max_files: int
    line_overhead_bytes: int

    @property
    def capacity_bytes(self) -> int:
        """What the driver keeps at most: max-size x max-file."""
        return self.max_size_bytes * self.max_files


def rotation_limits(log_driver: str, log_opts: Mapping[str, str]) -> RotationLimits | None:
    """The rotation limits of a container's log driver; None when nothing is rotated away."""
    if log_driver == "json-file":
        max_size = parse_size(log_opts.get("max-size", "-1"))
        if max_size is None or max_size <= 0:
            return None  # no max-size: json-file never rotates
        max_files = _positive_int(log_opts.get("max-file"), default=1)
    elif log_driver == "local":
        max_size = parse_size(log_opts.get("max-size", "")) or _LOCAL_DEFAULT_MAX_SIZE
        if log_opts.get("max-size", "").strip() == "-1":
            return None
        max_files = _positive_int(log_opts.get("max-file"), default=_LOCAL_DEFAULT_MAX_FILE)
    else:
        return None
    return RotationLimits(max_size, max_files, _LINE_OVERHEAD_BYTES[log_driver])


def backlog_at_risk(
    backlog_bytes: float, limits: RotationLimits, ratio: float = DEFAULT_RISK_RATIO
) -> bool:
    """The decision: does the unread backlog come close to what Docker keeps?"""
    return backlog_bytes >= ratio * limits.capacity_bytes


def estimate_backlog_bytes(
    write_rate_bytes_per_s: float, newest_taken_ns: int, now_ns: int
) -> float:
    """Bytes the container wrote after the newest line we took, at its recent write rate."""
    lag_s = max(0.0, (now_ns - newest_taken_ns) / 1e9)
    return write_rate_bytes_per_s * lag_s


@dataclass(frozen=True, slots=True)
class RotationRisk:
    container_id: str
    container_name: str
    backlog_bytes: int
    capacity_bytes: int
    lag_s: float
    rate_limited: bool = False  # held back by its rate limit (action pause) right now


class _Container:
    __slots__ = (
        "at_risk",
        "last_put_end",
        "limits",
        "meta",
        "newest_ns",
        "put_since",
        "throttled",
        "window",
    )

    def __init__(self, meta: ContainerMeta) -> None:
        self.meta = meta
        self.limits = rotation_limits(meta.log_driver, meta.log_opts)
        # Per batch taken: (oldest timestamp, newest timestamp, bytes in the driver's files).
        self.window: deque[tuple[int, int, int]] = deque()
        self.newest_ns = 0
        self.put_since: float | None = None
        self.last_put_end = 0.0
        self.at_risk = False
        self.throttled = False  # waiting for its rate limit (pause) right now


class RotationWatch:
    """Per-container write rate and backlog; reports each container once per risk episode."""

    def __init__(
        self,
        ratio: float = DEFAULT_RISK_RATIO,
        window_s: float = 10.0,
        busy_grace_s: float = 2.0,
    ) -> None:
        self._ratio = ratio
        self._window_ns = int(window_s * 1e9)
        self._busy_grace_s = busy_grace_s
        self._containers: dict[str, _Container] = {}

    def container_changed(self, meta: ContainerMeta) -> None:
        state = self._containers.get(meta.id)
        if state is None:
            self._containers[meta.id] = _Container(meta)
        else:
            state.meta = meta
            state.limits = rotation_limits(meta.log_driver, meta.log_opts)

    def forget(self, container_id: str) -> None:
        self._containers.pop(container_id, None)

    def put_started(self, container_id: str, now_monotonic: float) -> None:
        state = self._containers.get(container_id)
        if state is not None and state.limits is not None:
            state.put_since = now_monotonic

    def throttled(self, container_id: str, waiting: bool) -> None:
        """A container's put waits for its rate limit (pause): it is busy, and held back by
        the shipper on purpose, which the warning says."""
        state = self._containers.get(container_id)
        if state is not None:
            state.throttled = waiting

    def put_finished(
        self, container_id: str, records: Sequence[LogRecord], now_monotonic: float
    ) -> None:
        state = self._containers.get(container_id)
        if state is None or state.limits is None or not records:
            return
        state.put_since = None
        state.last_put_end = now_monotonic
        stamps = [record.timestamp_ns for record in records]
        size = sum(record.size for record in records)
        size += len(records) * state.limits.line_overhead_bytes
        state.window.append((min(stamps), max(stamps), size))
        state.newest_ns = max(state.newest_ns, max(stamps))
        horizon = state.newest_ns - self._window_ns
        while len(state.window) > 1 and state.window[0][1] < horizon:
            state.window.popleft()

    def write_rate(self, container_id: str) -> float:
        """Bytes per second (of the driver's files) the container wrote recently."""
        state = self._containers.get(container_id)
        if state is None or not state.window:
            return 0.0
        oldest = min(first for first, _, _ in state.window)
        # At least a second: a burst written at once is no sustained rate.
        span_s = max(1.0, (state.newest_ns - oldest) / 1e9)
        return sum(size for _, _, size in state.window) / span_s

    def check(self, now_ns: int, now_monotonic: float) -> tuple[list[RotationRisk], int]:
        """Containers that newly came at risk, and how many are at risk now."""
        newly: list[RotationRisk] = []
        at_risk = 0
        for container_id, state in self._containers.items():
            limits = state.limits
            if limits is None or not state.window or not state.meta.running:
                state.at_risk = False
                continue
            busy = state.put_since is not None or (
                now_monotonic - state.last_put_end <= self._busy_grace_s
            )
            if not busy:
                state.at_risk = False
                continue
            backlog = estimate_backlog_bytes(self.write_rate(container_id), state.newest_ns, now_ns)
            if backlog_at_risk(backlog, limits, self._ratio):
                at_risk += 1
                if not state.at_risk:
                    state.at_risk = True
                    newly.append(
                        RotationRisk(
                            container_id,
                            state.meta.name,
                            int(backlog),
                            limits.capacity_bytes,
                            round(max(0.0, (now_ns - state.newest_ns) / 1e9), 1),
                            state.throttled,
                        )
                    )
            elif backlog < 0.5 * self._ratio * limits.capacity_bytes:
                state.at_risk = False  # hysteresis: a new episode is reported again
        return newly, at_risk


def _positive_int(text: str | None, *, default: int) -> int:
    try:
        value = int(text) if text is not None else default
    except ValueError:
        return default
    return value if value > 0 else default
