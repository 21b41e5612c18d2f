"""How much history Docker holds for the containers the shipper would read: log sizes on disk
(reported by `sources/history.py` at the first start on a storage).

A container's size counts where its log files are visible here (the json-file driver's
`<id>-json.log` and its rotations, `.1`, `.2.gz`, under `docker.containers_path`); other
drivers' and invisible files are counted apart.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from shipper.docker.api import ContainerGone, DockerClient
from shipper.docker.engine import containers_path_of
from shipper.model import ContainerMeta
from shipper.sources.history import HistorySize


def log_files_size(meta: ContainerMeta, containers_path: str | None) -> int | None:
    """Bytes of the container's log files (current and rotated), None when not visible."""
    if not meta.log_path or containers_path is None:
        return None
    log_path = Path(meta.log_path)
    if log_path.parent.name != meta.id:
        return None  # not the json-file layout (the local driver tells no LogPath)
    # Docker's data-root may be mounted elsewhere here: keep `<id>/<file>`, as the reader does.
    directory = Path(containers_path) / meta.id
    stem = log_path.name
    total = 0
    found = False
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.startswith(stem):
                    with contextlib.suppress(OSError):
                        total += entry.stat(follow_symlinks=False).st_size
                        found = True
    except OSError:
        return None
    return total if found else None


async def measure(
    docker: DockerClient, containers_path: str | None, select: Callable[[ContainerMeta], bool]
) -> HistorySize:
    """The selected containers' log sizes (raises DockerError if Docker cannot tell).
    `containers_path` None: the engine's own, as discovery finds it on the host."""
    if containers_path is None:
        containers_path = containers_path_of(await docker.info())
    containers = visible = size = 0
    for summary in await docker.list_containers(all_containers=True):
        try:
            meta = await docker.inspect(str(summary["Id"]))
        except ContainerGone:
            continue
        if not select(meta):
            continue
        containers += 1
        files = log_files_size(meta, containers_path)
        if files is not None:
            visible += 1
            size += files
    return HistorySize(containers, visible, size)
