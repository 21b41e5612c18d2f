"""Finds every container and keeps exactly one follower per container that has logs to read.

The event stream is opened *before* containers are listed, so a container started between
the two is seen by one or the other (or both: starting a follower is idempotent). Docker
answers the events request before it has subscribed us, so the request also asks for the
events of the last seconds (`since`): whatever happened in that gap is replayed. Losing the
daemon (socket gone, dockerd restarting) ends the event stream; we reconnect with backoff,
negotiate the API version again (a restart is often an upgrade) and list again, and every
follower resumes from its own checkpoint. A daemon that answers but refuses our API version
(or answers with errors) is not "lost": it is reported as what it is, in the log and in
`not_ready_reason`, and retried with the same backoff.

Podman serves the same API (see shipper.docker.engine); the negotiation tells which engine
answers. Its events differ in one way that matters here: a removed container's event is
`remove` (Docker: `destroy`). Its extra actions (`init`, `cleanup`, ...) are counted and
otherwise ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable

from shipper import events, telemetry
from shipper.backoff import Backoff
from shipper.docker.api import (
    ApiVersionRefused,
    ContainerEvent,
    ContainerGone,
    DockerClient,
    DockerError,
    DockerRequestFailed,
    DockerUnavailable,
)
from shipper.docker.engine import DOCKER, containers_path_of
from shipper.model import ContainerMeta
from shipper.sources.checkpoint import CheckpointKeeper
from shipper.sources.docker.follower import ContainerFollower, FollowerSettings, Intake
from shipper.sources.supervision import FollowerTasks

# How far back the event stream replays on (re)connection: covers the gap between Docker
# answering and subscribing, and a daemon clock a little behind ours.
_EVENT_REPLAY_S = 5.0
# A container removed: Docker says "destroy", Podman "remove" (its compatible events keep
# libpod's action names, except "died", which it sends as "die").
_DESTROYED = frozenset({"destroy", "remove"})


class Discovery:
    def __init__(
        self,
        docker: DockerClient,
        intake: Intake,
        checkpoints: CheckpointKeeper,
        settings: FollowerSettings,
        select: Callable[[ContainerMeta], bool] = lambda meta: True,
    ) -> None:
        self._docker = docker
        self._intake = intake
        self._checkpoints = checkpoints
        self._settings = settings
        self._select = select
        self._running: FollowerTasks[ContainerFollower] = FollowerTasks(
            checkpoints, max_backoff_s=settings.max_backoff_s
        )
        self._releases: set[asyncio.Task[None]] = set()  # destroyed containers being let go
        self._stopping = False
        self.connected = False
        self._problem: str | None = None  # why not connected, when the daemon told us
        # Docker's containers directory as seen here (files mode): configured, else the
        # engine's DockerRootDir + /containers, learnt at each connection.
        self._containers_path = settings.containers_path
        self._engine_seen: tuple[object, ...] | None = None
        self.listed_once = asyncio.Event()

    @property
    def followers(self) -> dict[str, ContainerFollower]:
        return self._running.followers

    @property
    def not_ready_reason(self) -> str | None:
        """Why the Docker side is not ready (for /readyz and `shipper status`), or None."""
        if self.connected:
            return None
        return self._problem or "Docker API not reachable"

    async def run(self) -> None:
        backoff = Backoff(base_s=0.2, cap_s=self._settings.max_backoff_s)
        first = True
        while not self._stopping:
            try:
                # At every (re)connection: a daemon restart is often an upgrade.
                await self._connect()
                since = time.time() - _EVENT_REPLAY_S
                async with self._docker.event_stream(since_s=since) as stream:
                    self.connected = True
                    self._problem = None
                    if not first:
                        events.docker.reconnected()
                    first = False
                    await self._list_and_follow()
                    backoff.reset()
                    async for event in stream:
                        await self._on_event(event)
                raise DockerUnavailable("the event stream ended")
            except ApiVersionRefused as exc:
                # The daemon answers, but not in a version we speak: say so, and what to do.
                self.connected = False
                self._problem = f"Docker API version refused: {exc}"
                delay = backoff.next_delay_s()
                events.docker.api_version_refused(error=exc, delay_s=delay)
                await asyncio.sleep(delay)
            except DockerRequestFailed as exc:
                self.connected = False
                self._problem = f"Docker API answers with errors: {exc}"
                delay = backoff.next_delay_s()
                events.docker.request_failed(error=exc, status=exc.status, delay_s=delay)
                await asyncio.sleep(delay)
            except DockerUnavailable as exc:
                self.connected = False
                self._problem = None
                delay = backoff.next_delay_s()
                events.docker.lost(error=exc, delay_s=delay)
                await asyncio.sleep(delay)

    async def _connect(self) -> None:
        """Negotiates the API version; on the host, learns where the engine keeps its log
        files. Logs the engine the first time and whenever it changed."""
        version = await self._docker.negotiate()
        engine = self._docker.engine
        # Podman's logs are read through its API only: no files to look for.
        on_docker = engine is None or engine.runtime == DOCKER
        if self._settings.containers_path is None and on_docker:
            self._containers_path = (
                containers_path_of(await self._docker.info()) or self._containers_path
            )
        seen = (engine, version, self._containers_path)
        if seen != self._engine_seen:
            self._engine_seen = seen
            events.docker.engine_connected(
                engine_version=engine.engine if engine else "unknown",
                engine=engine.describe() if engine else "unknown",
                api_version=str(version),
                containers_path=self._containers_path,
                runtime=engine.runtime if engine else "unknown",
            )

    async def stop(self) -> None:
        """Stops every follower (their positions stay with the checkpoint keeper)."""
        self._stopping = True
        await self._running.stop(*self._releases)

    async def _list_and_follow(self) -> None:
        containers = await self._docker.list_containers(all_containers=True)
        present = {str(c["Id"]) for c in containers}
        for container_id in self._checkpoints.known_containers() - present:
            # Removed while we were away: its lines already read are in the buffer.
            self._checkpoints.container_destroyed(container_id)
        for summary in containers:
            running = summary.get("State") == "running"
            self._ensure_follower(str(summary["Id"]), catch_up=not running)
        self.listed_once.set()

    async def _on_event(self, event: ContainerEvent) -> None:
        telemetry.docker_events.labels(event.action.split(":")[0]).inc()
        action = event.action
        if action == "die":
            follower = self._running.get(event.container_id)
            if follower is not None:
                follower.run_ended(event.time_ns)
        elif action == "start":
            self._ensure_follower(event.container_id, catch_up=False)
        elif action == "rename":
            follower = self._running.get(event.container_id)
            if follower is not None:
                with contextlib.suppress(ContainerGone):
                    follower.rename(await self._docker.inspect(event.container_id))
        elif action in _DESTROYED:
            # In a task of its own: waiting for the follower must not hold up the events of
            # other containers (a "die" that decides about another's next run, say).
            release = asyncio.create_task(
                self._release(event.container_id), name=f"release-{event.container_id[:12]}"
            )
            self._releases.add(release)
            release.add_done_callback(self._releases.discard)

    async def _release(self, container_id: str) -> None:
        """A destroyed container: let its follower finish, then drop what is kept for it."""
        task = self._running.task(container_id)
        if task is not None:
            # Let it finish reading what is left: the log file may still be readable a
            # moment; if not, its checkpoint simply goes.
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=2.0)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    # We are being stopped ourselves, not just the follower: swallowing
                    # that would leave shutdown waiting on us forever.
                    raise
        self._checkpoints.container_destroyed(container_id)
        self._intake.forget(container_id)

    def _ensure_follower(self, container_id: str, *, catch_up: bool) -> None:
        existing = self._running.get(container_id)
        if existing is not None:
            existing.wake.set()  # it re-inspects before ending, so it sees the new start
            return
        settings = self._settings
        if self._containers_path != settings.containers_path:
            settings = dataclasses.replace(settings, containers_path=self._containers_path)
        follower = ContainerFollower(
            container_id,
            self._docker,
            self._intake,
            self._checkpoints.start_of(container_id),
            settings,
            select=self._select,
        )
        # Selected in its task (the inspect may wait for the daemon): containers that are
        # not shipped are never counted as followed.
        self._running.start(
            follower, catch_up=catch_up, selected=lambda: self._selected(container_id)
        )

    async def _selected(self, container_id: str) -> bool:
        """Whether the container is shipped; waits while the daemon cannot tell us, since
        following an excluded container (or our own) is worse than starting late."""
        backoff = Backoff(base_s=0.2, cap_s=self._settings.max_backoff_s)
        while True:
            try:
                meta = await self._docker.inspect(container_id)
            except ContainerGone:
                return False  # nothing left to read
            except DockerError:
                await asyncio.sleep(backoff.next_delay_s())
                continue
            return self._select(meta)
