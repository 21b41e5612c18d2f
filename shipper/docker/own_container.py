"""Finds the id of the container the shipper itself runs in, if it runs in one.

So it does not ship its own logs by default (a feedback loop: each line it logs about
shipping would be shipped, and logged about...). Docker bind-mounts the container's
`hostname`, `hosts` and `resolv.conf` from `/var/lib/docker/containers/<id>/`, which shows in
/proc/self/mountinfo whatever the network mode; cgroup v1 paths also carry the id.
"""

from __future__ import annotations

import re
from pathlib import Path

_ID_IN_MOUNT = re.compile(r"/containers/([0-9a-f]{64})/(?:hostname|hosts|resolv\.conf)")
_ID_IN_CGROUP = re.compile(r"(?:docker[-/])([0-9a-f]{64})")


def own_container_id(proc: Path = Path("/proc/self")) -> str | None:
    for name, pattern in (("mountinfo", _ID_IN_MOUNT), ("cgroup", _ID_IN_CGROUP)):
        try:
            text = (proc / name).read_text(errors="replace")
        except OSError:
            continue
        match = pattern.search(text)
        if match:
            return match.group(1)
    return None
