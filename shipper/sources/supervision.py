"""One task per container's follower, and a follower that fails is started again.

Every source runs one follower task per container (`FollowerTasks`, which both discoveries
use). An unexpected exception in one (a bug, an I/O error nobody foresaw) is logged and
counted, and the follower starts over from its checkpoint after a capped backoff
(`run_restarting`): the checkpoint counts only lines already in the buffer, so nothing is
lost and, by the deterministic ids, nothing is stored twice; one container's bug must not
stop the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, Generic, Protocol, TypeVar

from shipper import events, telemetry
from shipper.backoff import Backoff
from shipper.sources.checkpoint import CheckpointKeeper, HasCheckpoint

# Followers of stopped containers (catching up on a finished log) read at most this many at
# once: a host with thousands of old containers must not open them all together.
CATCH_UP_CONCURRENCY: Final = 16


class Follower(HasCheckpoint, Protocol):
    """A container's follower: `run` reads from its checkpoint until the container ends."""

    async def run(self) -> None: ...


F = TypeVar("F", bound=Follower)


class FollowerTasks(Generic[F]):
    """A discovery's followers, one task each, and the bookkeeping every source shares.

    A follower's task runs it restarting (`run_restarting`), gated while it catches up on a
    stopped container; the checkpoint keeper is told when it starts and ends (so positions
    are saved from the follower while it runs); `shipper_containers_followed` counts the
    followers whose logs are read, which a source may decide only in the task (`selected`).
    """

    def __init__(self, checkpoints: CheckpointKeeper, *, max_backoff_s: float) -> None:
        self._checkpoints = checkpoints
        self._max_backoff_s = max_backoff_s
        self.followers: dict[str, F] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._shipping: set[str] = set()
        self._catch_up = asyncio.Semaphore(CATCH_UP_CONCURRENCY)

    def get(self, container_id: str) -> F | None:
        return self.followers.get(container_id)

    def task(self, container_id: str) -> asyncio.Task[None] | None:
        return self._tasks.get(container_id)

    def start(
        self,
        follower: F,
        *,
        catch_up: bool,
        selected: Callable[[], Awaitable[bool]] | None = None,
        ended: Callable[[F], None] | None = None,
    ) -> None:
        """Runs `follower` in a task of its own. `selected`, if given, is asked first: a
        follower it refuses ends at once and was never counted as followed. `ended` is
        called when the task ends, however it ends."""
        container_id = follower.container_id
        self.followers[container_id] = follower
        self._checkpoints.follower_started(follower)
        self._tasks[container_id] = asyncio.create_task(
            self._run(follower, catch_up, selected, ended), name=f"follow-{container_id[:12]}"
        )

    async def _run(
        self,
        follower: F,
        catch_up: bool,
        selected: Callable[[], Awaitable[bool]] | None,
        ended: Callable[[F], None] | None,
    ) -> None:
        container_id = follower.container_id
        try:
            if selected is not None and not await selected():
                return
            self._shipping.add(container_id)
            telemetry.containers_followed.set(len(self._shipping))
            await run_restarting(
                follower.run,
                container_id,
                max_backoff_s=self._max_backoff_s,
                gate=self._catch_up if catch_up else None,
            )
        finally:
            self.followers.pop(container_id, None)
            self._tasks.pop(container_id, None)
            self._checkpoints.follower_ended(follower)
            if ended is not None:
                ended(follower)
            self._shipping.discard(container_id)
            telemetry.containers_followed.set(len(self._shipping))

    async def stop(self, *others: asyncio.Task[None]) -> None:
        """Cancels every follower's task (and `others`) and waits for them to end."""
        tasks: Iterable[asyncio.Task[None]] = [*self._tasks.values(), *others]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


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
