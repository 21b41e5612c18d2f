"""Discovery stops when asked, even while it waits for a destroyed container's follower."""

from __future__ import annotations

import asyncio
from typing import Any

from shipper.docker.api import ContainerEvent
from shipper.sources.discovery import Discovery
from shipper.sources.follower import FollowerSettings


class _Keeper:
    def __init__(self) -> None:
        self.destroyed: list[str] = []

    def container_destroyed(self, container_id: str) -> None:
        self.destroyed.append(container_id)

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected call: {name}")


async def test_cancelling_discovery_during_a_destroy_wait_is_not_swallowed() -> None:
    keeper = _Keeper()
    discovery = Discovery(None, None, keeper, FollowerSettings())  # type: ignore[arg-type]
    # A follower still busy (its reading is paused: the buffer is full).
    follower = asyncio.create_task(asyncio.sleep(3600))
    discovery._tasks["c1"] = follower
    event = ContainerEvent("destroy", "c1", 0, {})
    handling = asyncio.create_task(discovery._on_event(event))
    await asyncio.sleep(0.1)  # inside the 2 s grace for the follower
    handling.cancel()  # shutdown
    done, _ = await asyncio.wait({handling}, timeout=1.0)
    assert done and handling.cancelled()
    await asyncio.sleep(0)
    assert follower.cancelled()


async def test_a_follower_that_ends_in_the_grace_lets_the_destroy_complete() -> None:
    keeper = _Keeper()
    discovery = Discovery(None, None, keeper, FollowerSettings())  # type: ignore[arg-type]
    follower = asyncio.create_task(asyncio.sleep(0.05))
    discovery._tasks["c1"] = follower
    await discovery._on_event(ContainerEvent("destroy", "c1", 0, {}))
    assert keeper.destroyed == ["c1"]


async def test_a_follower_cancelled_by_someone_else_does_not_stop_discovery() -> None:
    keeper = _Keeper()
    discovery = Discovery(None, None, keeper, FollowerSettings())  # type: ignore[arg-type]
    follower = asyncio.create_task(asyncio.sleep(3600))
    discovery._tasks["c1"] = follower
    asyncio.get_running_loop().call_later(0.05, follower.cancel)
    await discovery._on_event(ContainerEvent("destroy", "c1", 0, {}))
    assert keeper.destroyed == ["c1"]
