"""Finds every pod container on the node and keeps one follower per container to read.

Two sources of truth, one for each question: the runtime's CRI API says which containers
exist (id, pod, state, image), kubelet's log directory says where their lines are and when
something new appears. An inotify watch on the log directory, on each pod's directory and
on each container's directory (new pods, new containers, new attempt files after a restart)
triggers a listing at once, so a new container is followed within a moment of its first
line; a listing every `LIST_INTERVAL_S` is the safety net, and tells followers that their
container exited (the tail then reads its files to their end).

Each container is handled once: followed (running, or exited with lines left to read),
skipped (selection), or done (its checkpoint says it was read to its end). A container the
runtime no longer lists but whose position is saved (its pod was deleted, say while the
shipper was down) is read to its end from its files with the metadata kept with the
position, and its position is dropped once its files are gone (kubelet deletes them after
the pod): until then a restart must not read them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from shipper import events
from shipper.backoff import Backoff
from shipper.cri.metadata import container_meta, meta_from_state
from shipper.cri.paths import parse_pod_directory, relocate, rotations
from shipper.cri.runtime import (
    ContainerSummary,
    CriRuntimeClient,
    NotCriV1,
    NotFound,
    Pod,
    RuntimeUnavailable,
    RuntimeVersion,
)
from shipper.model import ContainerMeta
from shipper.sources.checkpoint import CheckpointKeeper
from shipper.sources.cri.follower import CriContainerFollower, CriFollowerSettings, cri_state
from shipper.sources.delivery import Intake
from shipper.sources.files import DirectoryWatcher
from shipper.sources.supervision import FollowerTasks

LIST_INTERVAL_S: Final = 10.0
POLL_INTERVAL_S: Final = 1.0  # the listing's interval where inotify is not available
DEBOUNCE_S: Final = 0.05  # events come in bursts (a pod: its directory, then containers')
# IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_DELETE_SELF: a directory's entries come and go.
_TREE_EVENTS: Final = 0x100 | 0x080 | 0x200 | 0x400


class CriDiscovery:
    def __init__(
        self,
        runtime: CriRuntimeClient,
        log_directory: Path,
        intake: Intake,
        checkpoints: CheckpointKeeper,
        settings: CriFollowerSettings,
        *,
        annotations: Sequence[str] = (),
        node_name: str = "",
        select: Callable[[ContainerMeta], bool] = lambda meta: True,
    ) -> None:
        self._runtime = runtime
        self._log_directory = log_directory
        self._intake = intake
        self._checkpoints = checkpoints
        self._settings = settings
        self._annotations = tuple(annotations)
        self._node_name = node_name
        self._select = select
        self._running: FollowerTasks[CriContainerFollower] = FollowerTasks(
            checkpoints, max_backoff_s=settings.max_backoff_s
        )
        # Containers the runtime lists that need nothing more (skipped by selection, read to
        # their end, without a log file), until the runtime forgets them.
        self._handled: dict[str, str] = {}
        self._watcher: DirectoryWatcher | None = None
        self._watched: set[Path] = set()
        self._changed = asyncio.Event()
        self.version: RuntimeVersion | None = None
        self.connected = False
        self.listed_once = asyncio.Event()
        self._problem: str | None = None

    @property
    def followers(self) -> dict[str, CriContainerFollower]:
        return self._running.followers

    @property
    def not_ready_reason(self) -> str | None:
        """Why the runtime side is not ready (for /readyz and `shipper status`), or None."""
        if self.connected:
            return None
        return self._problem or f"the CRI runtime at {self._runtime.socket_path} does not answer"

    async def run(self) -> None:
        self._watcher = DirectoryWatcher()
        backoff = Backoff(base_s=0.2, cap_s=self._settings.max_backoff_s)
        try:
            while True:
                try:
                    if self.version is None:
                        self._connected(await self._runtime.version())
                    self._watch_tree()
                    await self._list_and_follow()
                    self.connected = True
                    backoff.reset()
                except (RuntimeUnavailable, NotCriV1) as exc:
                    self._problem = f"CRI runtime not reachable: {exc}"
                    if self.connected:
                        events.cri.lost(socket=self._runtime.socket_path, error=exc)
                    self.connected = False
                    await asyncio.sleep(backoff.next_delay_s())
                    continue
                await self._wait_for_change()
        finally:
            self._watcher.close()

    async def stop(self) -> None:
        """Stops every follower (their positions stay with the checkpoint keeper)."""
        await self._running.stop()

    def _connected(self, version: RuntimeVersion) -> None:
        self.version = version
        events.cri.connected(
            runtime=version.name,
            runtime_version=version.version,
            cri_api=version.api_version,
            socket=self._runtime.socket_path,
            log_directory=self._log_directory,
        )

    @property
    def runtime_name(self) -> str:
        return (self.version.name if self.version is not None else "").lower()

    # -- listing -------------------------------------------------------------------------------

    async def _list_and_follow(self) -> None:
        listed = await self._runtime.list_containers()
        present = {summary.id: summary for summary in listed}
        pods: dict[str, Pod] | None = None
        for container_id, summary in present.items():
            follower = self._running.get(container_id)
            if follower is not None:
                if summary.state == "exited":
                    follower.nudge.set()  # its tail asks, and reads to the end
                continue
            if container_id in self._handled:
                continue
            if pods is None:
                pods = {pod.id: pod for pod in await self._runtime.list_pods()}
            await self._consider(summary, pods.get(summary.pod_sandbox_id))
        for container_id in list(self._handled):
            if container_id not in present:
                del self._handled[container_id]
        for container_id in self._checkpoints.known_containers() - present.keys():
            if container_id not in self._running.followers:
                self._gone(container_id)
        self.listed_once.set()

    async def _consider(self, summary: ContainerSummary, pod: Pod | None) -> None:
        """A container seen for the first time: follow it, or say why not."""
        try:
            container = await self._runtime.container(summary.id)
        except NotFound:
            return  # removed meanwhile
        log = relocate(container.log_path, self._log_directory) if container.log_path else None
        if log is None:
            self._handled[summary.id] = "no_log"
            return
        saved = self._checkpoints.saved(summary.id)
        state = cri_state(saved)
        if state is not None and state.get("finished") and container.state != "running":
            self._handled[summary.id] = "finished"
            return
        meta = container_meta(
            container,
            pod,
            log,
            runtime=self.runtime_name,
            annotations=self._annotations,
            node_name=self._node_name,
        )
        if not self._select(meta):
            self._handled[summary.id] = "not_selected"
            return
        self._start(
            CriContainerFollower(
                summary.id,
                log.path,
                meta,
                self._intake,
                self._checkpoints.start_of(summary.id),
                self._settings,
                self._runtime,
            ),
            catch_up=container.state != "running",
        )

    def _gone(self, container_id: str) -> None:
        """A saved position of a container the runtime no longer knows."""
        saved = self._checkpoints.saved(container_id)
        state = cri_state(saved)
        if state is None:
            return  # not ours (a Docker container's, from a run with the other source)
        log_path = str(state.get("log_path") or "")
        if not log_path or not _files_exist(Path(log_path)):
            # Kubelet deleted its files: nothing is left to read; its lines already read
            # are in the buffer and ship on their own.
            self._checkpoints.container_destroyed(container_id)
            self._intake.forget(container_id)
            return
        if state.get("finished"):
            return  # read to its end; kept until the files go, so it is not read again
        try:
            meta = meta_from_state(container_id, log_path, state.get("meta") or {})
        except (KeyError, TypeError, ValueError) as exc:
            events.cri.checkpoint_state_unreadable(container_id=container_id, error=exc)
            return
        self._start(
            CriContainerFollower(
                container_id,
                Path(log_path),
                meta,
                self._intake,
                self._checkpoints.start_of(container_id),
                self._settings,
                None,
            ),
            catch_up=True,
        )

    def _start(self, follower: CriContainerFollower, *, catch_up: bool) -> None:
        # Selected before it starts (the metadata is at hand): counted as followed at once.
        self._running.start(follower, catch_up=catch_up, ended=self._ended)

    def _ended(self, follower: CriContainerFollower) -> None:
        if follower.finished:
            self._handled[follower.container_id] = "finished"

    # -- watching the log directory ------------------------------------------------------------

    def _watch_tree(self) -> None:
        """inotify watches on the log directory, each pod's and each container's directory."""
        watcher = self._watcher
        if watcher is None or not watcher.available:
            return
        wanted = {self._log_directory}
        with contextlib.suppress(OSError):
            for pod_entry in os.scandir(self._log_directory):
                if not pod_entry.is_dir() or parse_pod_directory(pod_entry.name) is None:
                    continue
                wanted.add(Path(pod_entry.path))
                with contextlib.suppress(OSError):
                    wanted.update(
                        Path(entry.path) for entry in os.scandir(pod_entry.path) if entry.is_dir()
                    )
        for directory in wanted - self._watched:
            # Every directory wakes the same listing.
            if watcher.watch(directory, "", mask=_TREE_EVENTS, event=self._changed) is not None:
                self._watched.add(directory)
        for directory in self._watched - wanted:
            watcher.unwatch(directory)
            self._watched.discard(directory)

    async def _wait_for_change(self) -> None:
        watching = self._watcher is not None and self._watcher.available and self._watched
        interval = LIST_INTERVAL_S if watching else POLL_INTERVAL_S
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout=interval)
        if self._changed.is_set():
            await asyncio.sleep(DEBOUNCE_S)
            self._changed.clear()


def _files_exist(log: Path) -> bool:
    return log.exists() or bool(rotations(log))
