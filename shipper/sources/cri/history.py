"""How much history the runtime's pods hold for the containers the shipper would read: the
CRI log files' sizes on disk (reported by `sources/history.py` at the first start on a
storage).

A container counts as the CRI source would follow it: listed by the runtime with a log file
under `cri.log_directory` and selected by its metadata (`cri/metadata.py`); its size is its
attempt's file and the rotations kubelet keeps beside it (`N.log`, `N.log.<stamp>`,
`N.log.<stamp>.gz`, as `cri/paths.rotations` lists them).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from shipper.cri.metadata import container_meta
from shipper.cri.paths import relocate, rotations
from shipper.cri.runtime import CriRuntimeClient, NotFound
from shipper.model import ContainerMeta
from shipper.sources.history import HistorySize


def log_files_size(log: Path) -> int | None:
    """Bytes of a container attempt's log file and its rotations; None when none is visible."""
    total = 0
    found = False
    for path in (log, *(rotation.path for rotation in rotations(log))):
        with contextlib.suppress(OSError):
            total += os.stat(path, follow_symlinks=False).st_size
            found = True
    return total if found else None


async def measure(
    runtime: CriRuntimeClient,
    log_directory: Path,
    select: Callable[[ContainerMeta], bool],
    *,
    annotations: Sequence[str],
    node_name: str,
) -> HistorySize:
    """The selected containers' log sizes (raises the runtime's errors if it cannot tell)."""
    runtime_name = (await runtime.version()).name.lower()
    pods = {pod.id: pod for pod in await runtime.list_pods()}
    containers = visible = size = 0
    for summary in await runtime.list_containers():
        try:
            container = await runtime.container(summary.id)
        except NotFound:
            continue  # removed meanwhile
        log = relocate(container.log_path, log_directory) if container.log_path else None
        if log is None:
            continue  # no log file: the CRI source has nothing of it to read
        meta = container_meta(
            container,
            pods.get(summary.pod_sandbox_id),
            log,
            runtime=runtime_name,
            annotations=annotations,
            node_name=node_name,
        )
        if not select(meta):
            continue
        containers += 1
        files = log_files_size(log.path)
        if files is not None:
            visible += 1
            size += files
    return HistorySize(containers, visible, size)
