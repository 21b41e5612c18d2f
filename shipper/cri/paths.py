"""Where kubelet has the runtime write a container's logs, and what those paths tell (pure).

    <log root>/<namespace>_<pod name>_<pod uid>/<container name>/<attempt>.log
    <log root>/.../<attempt>.log.<YYYYMMDD-HHMMSS>        a rotation (kubelet's local time)
    <log root>/.../<attempt>.log.<YYYYMMDD-HHMMSS>.gz     an older rotation, compressed

The log root is `/var/log/pods` on the node (`cri.log_directory` where this process sees it).
Namespaces, pod names and pod uids cannot contain `_` (DNS labels and subdomains, UUIDs), so
the pod directory's name splits into exactly three parts. The attempt is kubelet's restart
count: a container started again writes `<attempt + 1>.log` (and is another container id).

Rotations of one file sort by their stamp: kubelet stamps them with one clock, to the second,
and rotates a container at most every 10 s. Kubelet compresses a rotation by writing
`X.tmp`, renaming it to `X.gz` and deleting `X`, so for a moment both `X` and `X.gz` exist
with the same lines: only one of them is a file to read (`X`, which is already there).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

_ROTATION_STAMP: Final = re.compile(r"\d{8}-\d{6}")
_ATTEMPT_FILE: Final = re.compile(r"(0|[1-9]\d{0,8})\.log")


@dataclass(frozen=True, slots=True)
class PodDirectory:
    namespace: str
    pod_name: str
    pod_uid: str

    @property
    def name(self) -> str:
        return f"{self.namespace}_{self.pod_name}_{self.pod_uid}"


@dataclass(frozen=True, slots=True)
class LogPath:
    """One attempt's log file: `<root>/<pod directory>/<container>/<attempt>.log`."""

    root: Path
    pod: PodDirectory
    container_name: str
    attempt: int

    @property
    def path(self) -> Path:
        return self.root / self.pod.name / self.container_name / f"{self.attempt}.log"

    @property
    def namespace(self) -> str:
        return self.pod.namespace

    @property
    def pod_name(self) -> str:
        return self.pod.pod_name

    @property
    def pod_uid(self) -> str:
        return self.pod.pod_uid


@dataclass(frozen=True, slots=True)
class Rotation:
    """A rotated file of a log: `path` is `<log>.<stamp>` or `<log>.<stamp>.gz`."""

    path: Path
    stamp: str  # YYYYMMDD-HHMMSS, kubelet's local time when it rotated
    compressed: bool


def parse_pod_directory(name: str) -> PodDirectory | None:
    """`<namespace>_<pod name>_<pod uid>`, or None if the name is not shaped so."""
    parts = name.split("_")
    if len(parts) != 3 or not all(parts):
        return None
    return PodDirectory(*parts)


def parse_attempt(file_name: str) -> int | None:
    """`<attempt>.log` → the attempt; None for any other name (rotations included)."""
    if _ATTEMPT_FILE.fullmatch(file_name) is None:
        return None
    return int(file_name[:-4])


def parse_log_path(path: str | Path, root: str | Path | None = None) -> LogPath | None:
    """What a log file's path says, or None if it is not kubelet's layout.

    With `root`, the path must lie directly in that layout under it. Without, the last three
    components are read and the root is what is above them: the runtime reports its own view
    of the path (ContainerStatus.log_path), which may be mounted elsewhere here.
    """
    path = Path(path)
    parts = path.parts
    if len(parts) < 4:
        return None
    pod = parse_pod_directory(parts[-3])
    attempt = parse_attempt(parts[-1])
    container_name = parts[-2]
    if pod is None or attempt is None or not container_name:
        return None
    found_root = Path(*parts[:-3])
    if root is not None and Path(root) != found_root:
        return None
    return LogPath(found_root, pod, container_name, attempt)


def relocate(runtime_path: str, log_directory: str | Path) -> LogPath | None:
    """The runtime's path of a log file, as this process sees it under `log_directory`."""
    reported = parse_log_path(runtime_path)
    if reported is None:
        return None
    return LogPath(Path(log_directory), reported.pod, reported.container_name, reported.attempt)


def rotations(log: Path, names: list[str] | None = None) -> list[Rotation]:
    """The rotated files of `log`, oldest first (`names`: the directory's listing, if known).

    Where both `X` and `X.gz` exist (kubelet is compressing `X`), only `X` is listed: it
    holds the same lines and was there first. Leftover `X.tmp` files are not rotations.
    """
    if names is None:
        try:
            names = os.listdir(log.parent)
        except (FileNotFoundError, NotADirectoryError):
            return []
    prefix = log.name + "."
    plain: dict[str, Path] = {}
    compressed: dict[str, Path] = {}
    for name in names:
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix) :]
        if rest.endswith(".gz"):
            stamp = rest[:-3]
            if _ROTATION_STAMP.fullmatch(stamp):
                compressed[stamp] = log.parent / name
        elif _ROTATION_STAMP.fullmatch(rest):
            plain[rest] = log.parent / name
    found = [Rotation(path, stamp, False) for stamp, path in plain.items()]
    found += [
        Rotation(path, stamp, True) for stamp, path in compressed.items() if stamp not in plain
    ]
    return sorted(found, key=lambda rotation: rotation.stamp)
