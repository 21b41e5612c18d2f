"""How far each container has been read, kept so a restart neither loses nor repeats lines.

A checkpoint is `(since_ns, skip)`: resume the logs stream with Docker's `since=since_ns`
(inclusive, nanosecond precision) and drop the first `skip` lines it returns, because they
were taken before. This is exact as long as the lines taken form a prefix of the stream
(they do: the shipper takes lines in stream order) and no line still to come carries a
timestamp earlier than `since_ns`.

Docker stamps stdout and stderr in separate goroutines, so two lines of one container can
reach its log file in the opposite order of their timestamps. `since_ns` is therefore held
`slack_ns` behind the newest timestamp taken; the lines in that window are re-read on resume
and skipped by count. A line stamped more than `slack_ns` earlier than one before it in the
stream could still be missed; the default second is orders of magnitude above the jitter.

Under Podman the parts of a split line carry the times conmon read them, and the line the
time of its first part, so `since` must not fall after a line's first part and at or before
its last: the resume would start with the line's tail. The decoder reports such lines'
first and last part times (`note_spans`), and `since` goes back to the first part of any
line it would cut. Podman's `since` is applied to every part on its own, like Docker's.

A container with a rate limit that drops (`sources/quota.py`) also keeps the limiter's state
as of the lines the checkpoint covers, so that a restart continues its bucket and its summary
record where they were instead of starting them afresh: an opaque list of numbers, written
only by the quota module (older shippers ignore the key).

A source may keep what it needs to resume a container with its position (`source_state`,
a JSON object only the source reads): the CRI source keeps the container's log file, whether
it was read to its end, and the metadata its documents carry, so that lines read after the
pod is gone (deleted while the shipper was down, say) still carry it. Its `name` is what
`shipper status` shows without the agent.

Containers without a saved position begin where the first start on this storage decided
(`first_start.py`): `CheckpointBook(..., unknown_start=...)`.

File format (`checkpoints.json` under storage.path), written tmp → fsync → rename → fsync(dir):
    {"version": 1, "containers": {"<id>": {"since_ns": 1700000000123456789, "skip": 3,
                                           "rate_limit": [...]}}}   # rate_limit: optional
A container of a source that keeps state has a `source` key beside them (older shippers,
which read `since_ns` and `skip` only, ignore it):
    "<id>": {"since_ns": ..., "skip": ..., "source": {"kind": "cri", "name": "ns/pod/ctr",
             "log_path": "/var/log/pods/ns_pod_uid/ctr/0.log", "finished": false,
             "meta": {...}}}
(`shipper/sources/cri/follower.py` writes and reads the CRI one; see `cri_state` there.)
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import orjson

from shipper.durable import raise_if_disk_full, replace_atomically
from shipper.layout import StorageLayout

FORMAT_VERSION = 1
DEFAULT_SLACK_NS = 1_000_000_000


# A rate limiter's state, opaque here (see `sources/quota.py`): ints stay exact in JSON.
LimiterState = tuple[int | float, ...]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    since_ns: int
    skip: int
    rate_limit: LimiterState | None = None
    # What the source keeps with the position (see the module docstring); None: nothing.
    source_state: Mapping[str, Any] | None = None


class StreamPosition:
    """Tracks the lines taken from one container and turns them into a checkpoint."""

    def __init__(self, start: Checkpoint | None = None, slack_ns: int = DEFAULT_SLACK_NS) -> None:
        # The position only: what a source keeps with it is the source's to add.
        self._start = Checkpoint(start.since_ns, start.skip) if start else Checkpoint(0, 0)
        self._slack_ns = slack_ns
        self._newest = 0
        # Recently taken lines batch by batch, newest batch last: (newest, oldest, timestamps).
        self._recent: deque[tuple[int, int, list[int]]] = deque()
        # (first, last) part timestamps of split lines whose parts differ in time (Podman).
        self._spans: list[tuple[int, int]] = []
        self.lines_taken = 0

    @property
    def start(self) -> Checkpoint:
        return self._start

    def take(
        self, timestamps: list[int], oldest: int | None = None, newest: int | None = None
    ) -> None:
        """Marks the next lines of the stream (in stream order) as taken; `oldest` and
        `newest` are min and max of `timestamps` when the caller has them already."""
        if not timestamps:
            return
        if newest is None:
            newest = max(timestamps)
        if oldest is None:
            oldest = min(timestamps)
        if newest > self._newest:
            self._newest = newest
        self._recent.append((newest, oldest, timestamps))
        self.lines_taken += len(timestamps)
        horizon = self._newest - self._slack_ns
        if self._spans:
            horizon = self._uncut(horizon)
            self._spans = [span for span in self._spans if span[1] >= horizon]
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()

    def note_spans(self, spans: list[tuple[int, int]]) -> None:
        """(first, last) part timestamps of split lines read, whose parts differ in time."""
        self._spans.extend(spans)

    def _uncut(self, since: int) -> int:
        """`since`, moved back to the first part of every noted line it would cut in two
        (repeatedly: the earlier `since` may cut another), but never before the start."""
        floor = self._start.since_ns
        moved = True
        while moved:
            moved = False
            for first, last in self._spans:
                if first < since <= last and max(first, floor) < since:
                    since = max(first, floor)
                    moved = True
        return since

    def checkpoint(self) -> Checkpoint:
        if self.lines_taken <= self._start.skip:
            # Still re-reading the lines skipped on resume: the start already counts them,
            # and lines further in that were taken before are not known to this tracker yet.
            return self._start
        # Never resume before the start: lines before it were not fed to this tracker,
        # so they could not be counted.
        since = max(self._newest - self._slack_ns, self._start.since_ns)
        if self._spans:
            since = self._uncut(since)
        skip = 0
        for newest, oldest, batch in self._recent:
            if oldest >= since:
                skip += len(batch)  # wholly inside the window: no need to look at each line
            elif newest >= since:
                skip += sum(map(since.__le__, batch))
        return Checkpoint(since, skip)


class CheckpointStore:
    """All containers' checkpoints in one small file, replaced atomically."""

    def __init__(self, directory: Path) -> None:
        self._path = StorageLayout(directory).checkpoints_file
        self._directory = directory

    def load(self) -> dict[str, Checkpoint]:
        try:
            raw = orjson.loads(self._path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, orjson.JSONDecodeError) as exc:
            # An unreadable checkpoint file must not stop shipping; the caller logs it and
            # containers are read from their start (deterministic ids keep ES free of doubles).
            raise CheckpointFileError(f"{self._path} is unreadable: {exc}") from exc
        if not isinstance(raw, dict) or raw.get("version") != FORMAT_VERSION:
            raise CheckpointFileError(f"{self._path} has an unknown format version")
        result: dict[str, Checkpoint] = {}
        for container_id, entry in (raw.get("containers") or {}).items():
            with contextlib.suppress(KeyError, TypeError, ValueError):
                state = entry.get("source")
                result[str(container_id)] = Checkpoint(
                    int(entry["since_ns"]),
                    int(entry["skip"]),
                    _limiter_state(entry),
                    state if isinstance(state, dict) else None,
                )
        return result

    def save(self, checkpoints: Mapping[str, Checkpoint]) -> None:
        """Replaces the file atomically; on ENOSPC the previous file stays intact."""
        body = orjson.dumps(
            {
                "version": FORMAT_VERSION,
                "containers": {cid: _entry(cp) for cid, cp in sorted(checkpoints.items())},
            }
        )
        try:
            replace_atomically(self._path, body)
        except OSError as exc:
            raise_if_disk_full(exc, f"saving checkpoints in {self._directory}")
            raise


class CheckpointFileError(Exception):
    pass


def _entry(checkpoint: Checkpoint) -> dict[str, object]:
    entry: dict[str, object] = {"since_ns": checkpoint.since_ns, "skip": checkpoint.skip}
    if checkpoint.rate_limit is not None:
        entry["rate_limit"] = list(checkpoint.rate_limit)
    if checkpoint.source_state is not None:
        entry["source"] = checkpoint.source_state
    return entry


def _limiter_state(entry: Mapping[str, object]) -> LimiterState | None:
    state = entry.get("rate_limit")
    if not isinstance(state, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in state
    ):
        return None  # absent, or not ours: the limiter starts afresh, nothing else changes
    return tuple(state)


class HasCheckpoint(Protocol):
    """A follower, as far as positions go."""

    container_id: str

    def checkpoint(self) -> Checkpoint: ...


class CheckpointKeeper(Protocol):
    """What a source's discovery asks of the positions (`CheckpointBook` keeps them)."""

    def start_of(self, container_id: str) -> Checkpoint | None: ...

    def saved(self, container_id: str) -> Checkpoint | None: ...

    def follower_started(self, follower: HasCheckpoint) -> None: ...

    def follower_ended(self, follower: HasCheckpoint) -> None: ...

    def container_destroyed(self, container_id: str) -> None: ...

    def known_containers(self) -> set[str]: ...


class CheckpointBook:
    """Every container's position: live followers' in memory, the others as last saved.

    `snapshot()` is taken *before* the buffer is synced and the result saved after, so a saved
    checkpoint never counts a line whose record is not durably in the buffer.
    """

    def __init__(
        self,
        store: CheckpointStore,
        saved: Mapping[str, Checkpoint],
        unknown_start: Checkpoint | None = None,
    ) -> None:
        self._store = store
        self._saved = dict(saved)
        # Where a container without a saved position begins (first_start.py); None: its
        # first line.
        self._unknown_start = unknown_start
        # Each container's rate limiter state as of the lines taken (set by the composition
        # root: the intake's limiters); saved with the position.
        self._limiter_state: Callable[[str], LimiterState | None] | None = None
        self._live: dict[str, HasCheckpoint] = {}
        self._destroyed: set[str] = set()
        self._last_written: dict[str, Checkpoint] = {}
        self._dirty = True

    def start_of(self, container_id: str) -> Checkpoint | None:
        self._destroyed.discard(container_id)
        return self._saved.get(container_id, self._unknown_start)

    def saved_limiter_states(self) -> dict[str, LimiterState]:
        """The rate limiter states saved with the positions (to restore the limiters)."""
        return {cid: cp.rate_limit for cid, cp in self._saved.items() if cp.rate_limit is not None}

    def keep_limiter_states(self, states: Callable[[str], LimiterState | None]) -> None:
        self._limiter_state = states

    def _with_state(self, container_id: str, checkpoint: Checkpoint) -> Checkpoint:
        if self._limiter_state is None:
            return checkpoint
        state = self._limiter_state(container_id)
        return (
            checkpoint if state == checkpoint.rate_limit else replace(checkpoint, rate_limit=state)
        )

    def saved(self, container_id: str) -> Checkpoint | None:
        """The position last saved for a container (or kept when its follower ended)."""
        return self._saved.get(container_id)

    def follower_started(self, follower: HasCheckpoint) -> None:
        self._live[follower.container_id] = follower

    def follower_ended(self, follower: HasCheckpoint) -> None:
        if self._live.get(follower.container_id) is follower:
            del self._live[follower.container_id]
        if follower.container_id in self._destroyed:
            self._destroyed.discard(follower.container_id)
            return
        self._saved[follower.container_id] = self._with_state(
            follower.container_id, follower.checkpoint()
        )
        self._dirty = True

    def container_destroyed(self, container_id: str) -> None:
        # Its records already read are in the buffer and ship on their own (the buffer does
        # not need the position for that); the position is of no more use since the
        # container's logs are gone with it, so it goes at once.
        if self._live.pop(container_id, None) is not None:
            self._destroyed.add(container_id)  # its follower is still finishing: do not save
        if self._saved.pop(container_id, None) is not None:
            self._dirty = True

    def known_containers(self) -> set[str]:
        return set(self._saved) | set(self._live)

    def snapshot(self) -> dict[str, Checkpoint]:
        current = dict(self._saved)
        for container_id, follower in self._live.items():
            current[container_id] = self._with_state(container_id, follower.checkpoint())
        return current

    def save(self, snapshot: Mapping[str, Checkpoint]) -> bool:
        """Writes the snapshot if it differs from the last one written; True if written."""
        if not self._dirty and snapshot == self._last_written:
            return False
        self._store.save(snapshot)
        self._last_written = dict(snapshot)
        self._dirty = False
        return True
