"""Finds the container (and Kubernetes pod) the shipper itself runs in, if any.

So it does not ship its own logs by default (a feedback loop: each line it logs about
shipping would be shipped, and logged about...). The sources, most trustworthy first:

1. `/proc/self/cgroup`: the process's own cgroup. cgroup v1 (and v2 with the host's cgroup
   namespace) names the container: `/docker/<id>` (cgroupfs driver), `.../docker-<id>.scope`
   (systemd driver), `/kubepods/<qos>/pod<uid>/<id>` (kubelet + cri-dockerd). Under cgroup v2
   with a private cgroup namespace (Docker's default there) it is just `0::/`.
2. The roots of the cgroup mounts in `/proc/self/mountinfo`: the same paths, seen from the
   mount table (a cgroup v1 hierarchy mounted without a cgroup namespace).
3. The files Docker bind-mounts from `<data-root>/containers/<id>/`: `hostname`, `hosts`,
   `resolv.conf`. These belong to the container that owns the *network namespace*: with
   `--network container:X` (every pod under kubelet + cri-dockerd joins its pause container;
   shared-network sidecars) they are X's, not ours. So they are only the last resort, and
   the detection says so (`source`), for the caller to log.

For Kubernetes the pod's uid is a better key than a container id that may not be visible:
the chart passes it from the downward API as `POD_UID`, and every container kubelet starts
through cri-dockerd carries it as the label `io.kubernetes.pod.uid` (see `own_pod_uid`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# One path segment naming a container: `<id>`, `docker-<id>.scope`, `cri-dockerd-<id>.scope`.
_ID_SEGMENT = re.compile(r"(?:[a-z][a-z0-9-]*-)?([0-9a-f]{64})(?:\.scope)?")
_NETWORK_FILE = re.compile(r"/containers/([0-9a-f]{64})/(?:hostname|hosts|resolv\.conf)$")
# Kubernetes object uids are RFC 4122 UUIDs.
_POD_UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
POD_UID_ENV = "POD_UID"

Source = Literal["cgroup", "cgroup_mount", "network_files"]


@dataclass(frozen=True, slots=True)
class OwnContainer:
    id: str
    # network_files: maybe the container whose network namespace we share, not our own.
    source: Source


def id_in_cgroup_path(path: str) -> str | None:
    """The innermost container id in a cgroup path (nested Docker lists the outer one first;
    a process in a sub-cgroup of its container, e.g. `/docker/<id>/init.scope`, is still in
    that container)."""
    found = None
    for segment in path.split("/"):
        match = _ID_SEGMENT.fullmatch(segment)
        if match:
            found = match.group(1)
    return found


def id_from_cgroup(text: str) -> str | None:
    """From /proc/self/cgroup: `hierarchy:controllers:path` lines, v1 and v2 (`0::path`)."""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            found = id_in_cgroup_path(parts[2])
            if found:
                return found
    return None


def _mount_fields(line: str) -> tuple[str, str, str] | None:
    """(root, mount point, filesystem type) of one /proc/self/mountinfo line."""
    fields = line.split(" ")
    try:
        separator = fields.index("-", 6)  # optional fields end with a lone "-"
    except ValueError:
        return None
    if separator + 1 >= len(fields):
        return None
    return fields[3], fields[4], fields[separator + 1]


def id_from_cgroup_mounts(mountinfo: str) -> str | None:
    """From the roots of cgroup/cgroup2 mounts, e.g. `/docker/<id>` on /sys/fs/cgroup/cpu."""
    for line in mountinfo.splitlines():
        fields = _mount_fields(line)
        if fields and fields[2] in ("cgroup", "cgroup2"):
            found = id_in_cgroup_path(fields[0])
            if found:
                return found
    return None


def id_from_network_files(mountinfo: str) -> str | None:
    """From the bind mounts of hostname/hosts/resolv.conf: the network namespace's owner."""
    for line in mountinfo.splitlines():
        fields = _mount_fields(line)
        if fields:
            match = _NETWORK_FILE.search(fields[0])
            if match:
                return match.group(1)
    return None


def detect_own_container(proc: Path = Path("/proc/self")) -> OwnContainer | None:
    def read(name: str) -> str:
        try:
            return (proc / name).read_text(errors="replace")
        except OSError:
            return ""

    cgroup, mountinfo = read("cgroup"), read("mountinfo")
    candidates: tuple[tuple[Source, str | None], ...] = (
        ("cgroup", id_from_cgroup(cgroup)),
        ("cgroup_mount", id_from_cgroup_mounts(mountinfo)),
        ("network_files", id_from_network_files(mountinfo)),
    )
    for source, found in candidates:
        if found:
            return OwnContainer(found, source)
    return None


def own_container_id(proc: Path = Path("/proc/self")) -> str | None:
    detected = detect_own_container(proc)
    return detected.id if detected else None


def own_pod_uid(environ: Mapping[str, str] | None = None) -> str | None:
    """The pod uid the downward API put in POD_UID, if it looks like one (lower-cased, as
    kubelet writes the `io.kubernetes.pod.uid` label); None outside Kubernetes."""
    value = (os.environ if environ is None else environ).get(POD_UID_ENV, "").strip().lower()
    return value if _POD_UID.fullmatch(value) else None
