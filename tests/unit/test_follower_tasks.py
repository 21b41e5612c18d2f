"""FollowerTasks: the bookkeeping both discoveries share around their followers' tasks."""

from __future__ import annotations

import asyncio
from typing import Any

from shipper import telemetry
from shipper.sources.supervision import CATCH_UP_CONCURRENCY, FollowerTasks


class _Keeper:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def follower_started(self, follower: _Follower) -> None:
        self.calls.append(("started", follower.container_id))

    def follower_ended(self, follower: _Follower) -> None:
        self.calls.append(("ended", follower.container_id))

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected call: {name}")


class _Follower:
    def __init__(self, container_id: str, *, failures: int = 0) -> None:
        self.container_id = container_id
        self.failures = failures
        self.runs = 0
        self.release = asyncio.Event()
        self.running = asyncio.Event()

    def checkpoint(self) -> Any:
        raise AssertionError("not asked here")

    async def run(self) -> None:
        self.runs += 1
        if self.runs <= self.failures:
            raise OSError("a bug nobody foresaw")
        self.running.set()
        await self.release.wait()


def followed() -> float:
    return telemetry.containers_followed._value.get()  # type: ignore[attr-defined, no-any-return]


async def test_a_follower_runs_to_its_end_and_every_trace_of_it_goes() -> None:
    keeper = _Keeper()
    tasks: FollowerTasks[_Follower] = FollowerTasks(keeper, max_backoff_s=0.01)  # type: ignore[arg-type]
    ended: list[str] = []
    follower = _Follower("c1", failures=1)
    tasks.start(follower, catch_up=False, ended=lambda f: ended.append(f.container_id))
    assert tasks.get("c1") is follower and keeper.calls == [("started", "c1")]
    await asyncio.wait_for(follower.running.wait(), 5)
    assert follower.runs == 2  # started again after the failure
    assert followed() == 1
    task = tasks.task("c1")
    assert task is not None
    follower.release.set()
    await task
    assert tasks.followers == {} and tasks.task("c1") is None
    assert keeper.calls == [("started", "c1"), ("ended", "c1")]
    assert ended == ["c1"] and followed() == 0


async def test_a_follower_its_source_does_not_select_is_never_counted_as_followed() -> None:
    keeper = _Keeper()
    tasks: FollowerTasks[_Follower] = FollowerTasks(keeper, max_backoff_s=0.01)  # type: ignore[arg-type]
    asked = asyncio.Event()

    async def not_selected() -> bool:
        asked.set()
        return False

    counts: list[float] = []
    tasks.start(_Follower("c1"), catch_up=False, selected=not_selected)
    task = tasks.task("c1")
    assert task is not None
    await asked.wait()
    counts.append(followed())
    await task
    assert counts == [0] and followed() == 0
    assert keeper.calls == [("started", "c1"), ("ended", "c1")]


async def test_catching_up_is_bounded_and_stop_cancels_every_task() -> None:
    keeper = _Keeper()
    tasks: FollowerTasks[_Follower] = FollowerTasks(keeper, max_backoff_s=0.01)  # type: ignore[arg-type]
    followers = [_Follower(f"c{n}") for n in range(CATCH_UP_CONCURRENCY + 4)]
    for follower in followers:
        tasks.start(follower, catch_up=True)
    live = _Follower("live")
    tasks.start(live, catch_up=False)
    await asyncio.wait_for(live.running.wait(), 5)  # a running container never waits
    await asyncio.sleep(0.05)
    assert sum(f.running.is_set() for f in followers) == CATCH_UP_CONCURRENCY
    other = asyncio.create_task(asyncio.sleep(3600))
    await asyncio.wait_for(tasks.stop(other), 5)
    assert other.cancelled() and tasks.followers == {} and followed() == 0
    assert sorted(c for c in keeper.calls if c[0] == "ended") == sorted(
        ("ended", f.container_id) for f in [*followers, live]
    )
