"""CPU, memory and descriptor figures of processes, read from /proc (Linux only).

CPU is utime + stime of the process itself (all its threads), not of its children.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far (0.0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            raw = stat.read()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def peak_rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmHWM") / 1024


def rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmRSS") / 1024


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except FileNotFoundError:
        return 0


def fd_kinds(pid: int) -> dict[str, int]:
    """Open descriptors by kind (socket, pipe, anon_inode:[eventpoll], file), to tell a leak
    from a connection pool."""
    kinds: dict[str, int] = {}
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return kinds
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        kind = target.split(":", 1)[0] if target.startswith(("socket:", "pipe:")) else target
        if kind.startswith("/"):
            kind = "file"
        kinds[kind] = kinds.get(kind, 0) + 1
    return dict(sorted(kinds.items()))


def threads(pid: int) -> int:
    return _status_kb(pid, "Threads")


def pids_named(*names: str) -> list[int]:
    """Processes whose command name (comm) starts with one of `names`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as comm:
                name = comm.read().strip()
        except OSError:
            continue
        if name.startswith(names):
            found.append(int(entry))
    return found


@dataclass
class CpuMeter:
    """CPU seconds used by a fixed set of processes between start() and stop()."""

    pids: list[int]
    _start: dict[int, float] | None = None
    seconds: float = 0.0

    def start(self) -> CpuMeter:
        self._start = {pid: cpu_seconds(pid) for pid in self.pids}
        return self

    def stop(self) -> float:
        assert self._start is not None
        self.seconds = sum(max(0.0, cpu_seconds(pid) - t0) for pid, t0 in self._start.items())
        return self.seconds
