"""Discovery stops when asked, even while it waits for a destroyed container's follower."""

from __future__ import annotations

import asyncio
from typing import Any

from shipper.docker.api import ContainerEvent
from shipper.sources.docker.discovery import Discovery
from shipper.sources.docker.follower import FollowerSettings


class _Keeper:
    def __init__(self) -> None:
        self.destroyed: list[str] = []
        self.following: set[str] = set()

    def follower_started(self, follower: _Follower) -> None:
        self.following.add(follower.container_id)

    def follower_ended(self, follower: _Follower) -> None:
        self.following.discard(follower.container_id)

    def container_destroyed(self, container_id: str) -> None:
        self.destroyed.append(container_id)

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected call: {name}")


class _Intake:
    def __init__(self) -> None:
        self.forgotten: list[str] = []

    def forget(self, container_id: str) -> None:
        self.forgotten.append(container_id)


class _Follower:
    """A follower whose reading takes `seconds` (an hour: still busy, its buffer full)."""

    def __init__(self, container_id: str, seconds: float = 3600) -> None:
        self.container_id = container_id
        self.seconds = seconds
        self.ended: list[int] = []

    def checkpoint(self) -> Any:
        raise AssertionError("not asked here")

    async def run(self) -> None:
        await asyncio.sleep(self.seconds)

    def run_ended(self, died_at_ns: int) -> None:
        self.ended.append(died_at_ns)


def _follow(discovery: Discovery, follower: _Follower) -> asyncio.Task[None]:
    """Runs `follower` as the discovery runs its own (selected without asking the daemon)."""

    async def selected() -> bool:
        return True

    discovery._running.start(follower, catch_up=False, selected=selected)  # type: ignore[arg-type]
    task = discovery._running.task(follower.container_id)
    assert task is not None
    return task


async def test_stopping_discovery_during_a_destroy_wait_ends_the_wait_and_the_follower() -> None:
    keeper = _Keeper()
    intake = _Intake()
    discovery = Discovery(None, intake, keeper, FollowerSettings())  # type: ignore[arg-type]
    # A follower still busy (its reading is paused: the buffer is full).
    follower = _follow(discovery, _Follower("c1"))
    await discovery._on_event(ContainerEvent("destroy", "c1", 0, {}))
    await asyncio.sleep(0.1)  # inside the 2 s grace for the follower
    (release,) = discovery._releases
    await asyncio.wait_for(discovery.stop(), timeout=1.0)  # shutdown
    assert release.cancelled() and follower.cancelled()
    assert keeper.destroyed == [] and intake.forgotten == []
    assert keeper.following == set() and discovery.followers == {}


async def test_a_destroy_wait_does_not_hold_up_other_containers_events() -> None:
    keeper = _Keeper()
    intake = _Intake()
    discovery = Discovery(None, intake, keeper, FollowerSettings())  # type: ignore[arg-type]
    _follow(discovery, _Follower("c1"))
    other = _Follower("c2")
    _follow(discovery, other)
    await asyncio.wait_for(discovery._on_event(ContainerEvent("destroy", "c1", 0, {})), 0.1)
    await asyncio.wait_for(discovery._on_event(ContainerEvent("die", "c2", 42, {})), 0.1)
    assert other.ended == [42]  # handled at once, while c1's follower still has its grace
    await discovery.stop()


async def test_a_follower_that_ends_in_the_grace_lets_the_destroy_complete() -> None:
    keeper = _Keeper()
    intake = _Intake()
    discovery = Discovery(None, intake, keeper, FollowerSettings())  # type: ignore[arg-type]
    _follow(discovery, _Follower("c1", seconds=0.05))
    await discovery._on_event(ContainerEvent("destroy", "c1", 0, {}))
    await asyncio.gather(*discovery._releases)
    assert keeper.destroyed == ["c1"]
    assert intake.forgotten == ["c1"]


async def test_a_follower_cancelled_by_someone_else_does_not_stop_discovery() -> None:
    keeper = _Keeper()
    intake = _Intake()
    discovery = Discovery(None, intake, keeper, FollowerSettings())  # type: ignore[arg-type]
    follower = _follow(discovery, _Follower("c1"))
    asyncio.get_running_loop().call_later(0.05, follower.cancel)
    await discovery._on_event(ContainerEvent("destroy", "c1", 0, {}))
    await asyncio.gather(*discovery._releases)
    assert keeper.destroyed == ["c1"]
    assert intake.forgotten == ["c1"]
