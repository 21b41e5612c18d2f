"""Where a container the shipper has no position for begins: decided once per storage.

`start_at` (`beginning` | `now` | a duration back from now such as `10m`) answers the
question an operator has when installing the shipper on a host whose containers have logged
for months: ship all of that, or start from here? It applies only at the **first start on a
storage**. The decision is one time, `start_ns`, written to `first-start.json` (tmp → fsync →
rename → fsync of the directory) *before anything is read*, and read back by every later
start, which therefore never decides again, whatever `start_at` says by then:

* containers without a position begin at `start_ns` (the logs API's and the json-file
  reader's `since`, both exact to the nanosecond);
* a container started later writes nothing before it starts, so `start_ns` is its first line:
  such containers are always read from their first line (the exactly-once promise) without
  any list of "containers seen at the first start" to keep;
* `kill -9` during the first minutes changes nothing: the restart finds the file, reads from
  the positions saved so far, and from `start_ns` where none was saved yet. It neither ships
  the history it chose to skip nor loses a line after `start_ns`;
* `shipper backfill --since` still fetches older history on purpose.

"First start" means a storage holding no checkpoints and no buffer (`StorageLayout`). A storage
that holds them but no `first-start.json` was used by a shipper from before this file: its
positions stand, containers without one are read from their first line, and that is recorded
as the decision (`storage_was_new: false`).

`start_ns` is taken from the runtime's clock where it tells it (Docker's `SystemTime`), so
that a container started just after the first start on a daemon whose clock lags ours does
not have its first lines stamped before `start_ns`.

File format (`first-start.json` under storage.path)::

    {"version": 1, "start_ns": 1700000000123456789 | null, "start_at": "now",
     "chosen_by": "--start-at", "decided_at_ns": 1700000000123456789, "storage_was_new": true}
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from shipper import events
from shipper.backoff import Backoff
from shipper.config import Config
from shipper.docker.api import DockerClient, DockerError
from shipper.durations import parse_duration_s
from shipper.errors import ConfigError
from shipper.layout import StorageLayout
from shipper.lines.timestamps import TimestampError, parse_timestamp
from shipper.sources.checkpoint import Checkpoint

if TYPE_CHECKING:  # the CRI client (gRPC) is not loaded for `shipper status`
    from shipper.cri.runtime import CriRuntimeClient

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class FirstStart:
    """The decision, as made at the first start on this storage."""

    start_ns: int | None  # where containers without a position begin; None: their first line
    start_at: str  # the setting that was in force then: "beginning", "now", "10m"
    chosen_by: str  # where that setting came from ("--start-at", "the default", ...)
    decided_at_ns: int
    storage_was_new: bool  # False: the storage predates this file, start_at was not applied

    def start_without_position(self) -> Checkpoint | None:
        """The position of a container that has none saved."""
        return None if self.start_ns is None else Checkpoint(self.start_ns, 0)


def start_ns_for(start_at: str, now_ns: int) -> int | None:
    """The pure decision: `beginning` → None, `now` → now, a duration → that long before now."""
    if start_at == "beginning":
        return None
    if start_at == "now":
        return now_ns
    seconds = parse_duration_s(start_at)
    if seconds is None:  # the config validated it: not reached
        raise ValueError(f"not a start_at value: {start_at!r}")
    return max(1, now_ns - int(seconds * 1e9))


class FirstStartFileError(Exception):
    pass


class FirstStartStore:
    def __init__(self, layout: StorageLayout) -> None:
        self._layout = layout
        self._path = layout.first_start_file

    def load(self) -> FirstStart | None:
        """The recorded decision; None if there is none yet."""
        try:
            raw = orjson.loads(self._path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError) as exc:
            raise FirstStartFileError(f"{self._path} is unreadable: {exc}") from exc
        try:
            if raw["version"] != FORMAT_VERSION:
                raise FirstStartFileError(f"{self._path} has an unknown format version")
            start_ns = raw["start_ns"]
            return FirstStart(
                None if start_ns is None else int(start_ns),
                str(raw["start_at"]),
                str(raw["chosen_by"]),
                int(raw["decided_at_ns"]),
                bool(raw["storage_was_new"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FirstStartFileError(f"{self._path} is malformed: {exc!r}") from exc

    def save(self, decision: FirstStart) -> None:
        """Writes the decision durably (tmp → fsync → rename → fsync of the directory)."""
        body = orjson.dumps(
            {
                "version": FORMAT_VERSION,
                "start_ns": decision.start_ns,
                "start_at": decision.start_at,
                "chosen_by": decision.chosen_by,
                "decided_at_ns": decision.decided_at_ns,
                "storage_was_new": decision.storage_was_new,
            }
        )
        tmp = self._path.with_name(self._path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self._path)
            directory = os.open(self._layout.root, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


def first_start(
    layout: StorageLayout, start_at: str, chosen_by: str, now_ns: int
) -> tuple[FirstStart, bool]:
    """The decision in force, and whether it was made just now (this is the first start).

    Call it before the disk buffer is opened (opening creates it) and before anything is
    read. Raises FirstStartFileError when a recorded decision cannot be read, OSError when a
    new one cannot be written (nothing was read yet: the start fails and can be retried).
    """
    store = FirstStartStore(layout)
    recorded = store.load()
    if recorded is not None:
        return recorded, False
    if layout.holds_positions():
        decision = FirstStart(None, start_at, chosen_by, now_ns, storage_was_new=False)
    else:
        decision = FirstStart(start_ns_for(start_at, now_ns), start_at, chosen_by, now_ns, True)
    store.save(decision)
    return decision, True


# ------------------------------------------------------------------- at the agent's start


async def decide_at_start(
    layout: StorageLayout,
    config: Config,
    client: DockerClient | CriRuntimeClient,
    stop: asyncio.Event,
    *,
    start_at_from_flag: bool,
) -> tuple[FirstStart, bool] | None:
    """`first_start` as the agent calls it: an unreadable record is reported and read as
    "from the first line", `now` is the runtime's clock, and a full disk is waited out.
    None if `stop` was set while waiting for space to record it."""
    try:
        recorded = FirstStartStore(layout).load()
    except FirstStartFileError as exc:
        events.storage.first_start_unreadable(error=exc)
        return FirstStart(None, "beginning", "an unreadable first-start.json", 0, False), False
    if recorded is not None:
        return recorded, False
    now_ns = time.time_ns()
    if not layout.holds_positions():
        now_ns = await runtime_clock_ns(client)
    origin = start_at_origin(config, from_flag=start_at_from_flag)
    backoff = Backoff(base_s=1.0, cap_s=30.0)
    while True:
        try:
            return first_start(layout, config.start_at, origin, now_ns)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise ConfigError(
                    "storage.path",
                    f"cannot write {layout.first_start_file}: {exc.strerror}",
                ) from None
            # Nothing was read yet: waiting changes nothing of what will be shipped.
            delay = backoff.next_delay_s()
            events.storage.disk_full_at_first_start(storage_path=layout.root, delay_s=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            if stop.is_set():
                return None


def say_start_position(decision: FirstStart, first: bool, start_at_now: str) -> None:
    """The start log's word on where containers without a position begin."""
    if first and decision.storage_was_new:
        events.lifecycle.first_start(
            start_ns=decision.start_ns,
            start_at=decision.start_at,
            chosen_by=decision.chosen_by,
        )
        return
    if start_at_now != decision.start_at or not decision.storage_was_new:
        events.lifecycle.start_at_stands(
            start_ns=decision.start_ns,
            start_at_now=start_at_now,
            start_at_then=decision.start_at if decision.storage_was_new else None,
            decided_at_ns=decision.decided_at_ns,
        )


def start_at_origin(config: Config, *, from_flag: bool) -> str:
    """Which setting chose `start_at`, for the log and `first-start.json`."""
    if from_flag:
        return "--start-at"
    for variable in ("SHIPPER_START_AT", "SHIPPER_DOCKER_START_AT"):
        if variable in os.environ:
            return f"the environment variable {variable}"
    if "start_at" in config.model_fields_set:
        return "the config file"
    return "the default"


async def runtime_clock_ns(client: DockerClient | CriRuntimeClient) -> int:
    """Now, by the Docker daemon's clock (its lines are stamped by it); ours if it is away.
    A CRI runtime stamps its lines with this node's clock, which is ours."""
    if not isinstance(client, DockerClient):
        return time.time_ns()
    docker = client
    try:
        async with asyncio.timeout(5):
            info = await docker.info()
        return parse_timestamp(str(info.get("SystemTime") or "").encode("ascii", "replace"))
    except (DockerError, TimeoutError, TimestampError):
        return time.time_ns()
