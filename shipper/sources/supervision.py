"""A follower that fails is started again: one container's bug must not stop the others.

Every source runs one follower task per container. An unexpected exception in one (a bug,
an I/O error nobody foresaw) is logged and counted, and the follower starts over from its
checkpoint after a capped backoff: the checkpoint counts only lines already in the buffer,
so nothing is lost and, by the deterministic ids, nothing is stored twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from shipper import events
from shipper.backoff import Backoff


async def run_restarting(
    run: Callable[[], Awaitable[None]],
    container_id: str,
    *,
    max_backoff_s: float,
    gate: asyncio.Semaphore | None = None,
) -> None:
    """Awaits `run()` until it returns, starting it again after each failure; `gate`, if
    given, is held while it runs (to bound how many catch up at once)."""
    backoff = Backoff(base_s=0.5, cap_s=max(1.0, max_backoff_s))
    while True:
        try:
            async with gate if gate is not None else contextlib.nullcontext():
                await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            delay = backoff.next_delay_s()
            events.sources.follower_crashed(container_id=container_id, error=exc, delay_s=delay)
            await asyncio.sleep(delay)
