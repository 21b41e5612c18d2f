"""How much history a first start finds: the selected containers' log sizes on disk.

Told at the first start on a storage (`first_start.py`), so an operator sees what
`start_at` means in bytes before anything is shipped. Each source measures its own files
(`sources/docker/history.py`: the json-file logs; `sources/cri/history.py`: kubelet's CRI log
files); this module reports what they found. Read-only and best effort: a container counts
where its files are visible here, the others are counted apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shipper import events
from shipper.sources.first_start import FirstStart

# Listing and inspecting thousands of containers can take a while; the report is not worth
# more than this, and reading goes on meanwhile.
MEASURE_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class HistorySize:
    containers: int  # selected containers
    visible: int  # of which the log files could be measured
    bytes: int  # their size on disk, rotations included


async def report(
    measure: Callable[[], Awaitable[HistorySize]],
    decision: FirstStart,
    failures: tuple[type[Exception], ...],
) -> None:
    """At the first start: how much history the containers hold, and what is skipped.
    `failures`: the runtime's errors that mean it could not tell."""
    could_not_tell: tuple[type[Exception], ...] = (TimeoutError, *failures)
    try:
        async with asyncio.timeout(MEASURE_TIMEOUT_S):
            size = await measure()
    except could_not_tell as exc:
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
