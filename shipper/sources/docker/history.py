"""How much history Docker holds for the containers the shipper would read: log sizes on disk.

Told at the first start on a storage (`first_start.py`), so an operator sees what
`start_at` means in bytes before anything is shipped. Read-only and best effort: a
container's size counts where its log files are visible here (the json-file driver's
`<id>-json.log` and its rotations, `.1`, `.2.gz`, under `docker.containers_path`); other
drivers' and invisible files are counted apart.
The CRI source will measure its own files the same way (`HistorySize`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shipper import events
from shipper.docker.api import ContainerGone, DockerClient, DockerError
from shipper.docker.engine import containers_path_of
from shipper.model import ContainerMeta
from shipper.sources.first_start import FirstStart


@dataclass(frozen=True, slots=True)
class HistorySize:
    containers: int  # selected containers
    visible: int  # of which the log files could be measured
    bytes: int  # their size on disk, rotations included


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


async def report(
    docker: DockerClient,
    containers_path: str | None,
    select: Callable[[ContainerMeta], bool],
    decision: FirstStart,
) -> None:
    """At the first start: how much history the containers hold, and what is skipped."""
    try:
        async with asyncio.timeout(60):
            size = await measure(docker, containers_path, select)
    except (DockerError, TimeoutError) as exc:
        events.lifecycle.history_not_measured(error=exc)
        return
    events.lifecycle.history_measured(
        containers=size.containers,
        log_bytes=size.bytes,
        containers_measured=size.visible,
        start_ns=decision.start_ns,
        start_at=decision.start_at,
        chosen_by=decision.chosen_by,
    )
