"""`shipper backfill --since DURATION [--container NAME...]`: ship existing history.

For each chosen container it reads `GET /containers/{id}/logs?since=<now-DURATION>&follow=0`
and sends the lines down the agent's own path: the same decoder (so the same `seq`), the
same processing rules, the same encoder (so the same `_id`s and documents), a disk buffer
and the Elasticsearch sink with its retries, templates, routing and dead letters. A line
the agent has shipped already is answered 409 by Elasticsearch and stored once; running a
backfill twice, or beside a running agent, stores nothing twice.

The buffer is a temporary one in `<storage.path>/backfill-<pid>/`, removed at the end,
also when interrupted: everything is still in Docker, so the remedy is to run it again.

Containers are chosen by `--container` (name or id prefix), else every container the
selection rules ship; the selection rules (labels `shipper.enable=false`, excludes) apply
to named containers too. A multiline event cut by the start of the window is shipped from
its first line inside the window, which gives it a different `_id` from the agent's.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from shipper import logsetup, telemetry
from shipper.commands import preflight
from shipper.commands.secrets import config_secrets
from shipper.config import Config
from shipper.durations import EXAMPLES as DURATION_EXAMPLES
from shipper.durations import parse_duration_s
from shipper.errors import ConfigError
from shipper.layout import StorageLayout

_CONNECT_TIMEOUT_S = 60.0


def parse_duration(text: str) -> float:
    """'90s', '15m', '2h', '7d', '1w', '1h30m', or plain seconds; ConfigError otherwise."""
    seconds = parse_duration_s(text)
    if seconds is None:
        raise ConfigError(
            "--since", f"{text!r} is not a duration longer than zero, like {DURATION_EXAMPLES}"
        )
    return seconds


@dataclass(slots=True)
class Summary:
    containers: int = 0
    lines_read: int = 0
    records_sent: int = 0  # after processing (multiline joins, drops)
    stored_new: int = 0  # 201
    already_stored: int = 0  # 409: shipped before, by the agent or an earlier backfill
    dead_lettered: int = 0
    failure_store: int = 0  # 201 "used": kept in a failure store, not as log records
    skipped: tuple[str, ...] = ()


class Progress:
    """A progress bar on stderr: redrawn in place on a terminal, a line every 5 s otherwise."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self._stream = stream
        self._enabled = enabled
        self._tty = stream.isatty()
        self._last = 0.0

    def update(self, fraction: float, text: str, *, final: bool = False) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        interval = 0.1 if self._tty else 5.0
        if not final and now - self._last < interval:
            return
        self._last = now
        fraction = min(1.0, max(0.0, fraction))
        filled = int(fraction * 30)
        line = f"[{'#' * filled}{'.' * (30 - filled)}] {fraction * 100:5.1f}% {text}"
        if self._tty:
            self._stream.write("\r\x1b[K" + line + ("\n" if final else ""))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()


def main(config: Config, *, since: str, names: list[str], progress: bool) -> int:
    window_s = parse_duration(since)
    if config.output != "elasticsearch":
        raise ConfigError("output", "backfill ships to Elasticsearch; output is not elasticsearch")
    if config.source == "cri":
        # The CRI source reads every file kubelet keeps from each container's checkpoint,
        # or its beginning: there is no history beyond them to fetch.
        raise ConfigError(
            "source",
            "backfill reads through the Docker API; with source cri the agent "
            "already reads all that kubelet keeps",
        )
    preflight.check(config)  # ConfigError → exit 2 in cli
    logsetup.register_secrets(config_secrets(config))
    # Our own notices go to stderr beside the bar; warnings and errors only.
    logsetup.configure("warning" if config.log.level != "debug" else "debug", config.log.format)
    bar = Progress(sys.stderr, progress)
    try:
        summary = asyncio.run(backfill(config, window_s, names, bar))
    except BackfillFailed as exc:
        print(f"shipper: backfill failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"shipper: backfilled {summary.containers} container(s) over the last {since}: "
        f"{summary.lines_read} lines read, {summary.records_sent} records sent: "
        f"{summary.stored_new} stored, {summary.already_stored} already there, "
        f"{summary.dead_lettered} dead-lettered"
        + (f", {summary.failure_store} kept in a failure store." if summary.failure_store else "."),
        file=sys.stderr,
    )
    for name in summary.skipped:
        print(f"shipper: skipped {name}", file=sys.stderr)
    return 0


class BackfillFailed(Exception):
    pass


async def backfill(config: Config, window_s: float, names: list[str], bar: Progress) -> Summary:
    from shipper.buffer import DiskBuffer
    from shipper.build import buffer_intake, docker_client, elasticsearch_output, host_name_of
    from shipper.docker.api import DockerError
    from shipper.docker.own_container import own_container_id, own_pod_uid
    from shipper.sinks.elasticsearch.client import ElasticsearchConnection
    from shipper.sources.selection import should_ship

    layout = StorageLayout(Path(config.storage.path))
    private = layout.backfill(os.getpid())
    since_ns = time.time_ns() - int(window_s * 1e9)
    docker = docker_client(config.docker)
    connection: ElasticsearchConnection | None = None
    buffer: DiskBuffer | None = None
    summary = Summary()
    before = _item_counts()
    try:
        try:
            listed = await docker.list_containers(all_containers=True)
        except DockerError as exc:
            raise BackfillFailed(f"the Docker API cannot list containers: {exc}") from None
        host_name = await host_name_of(config, docker)
        chosen, skipped = await _choose(docker, listed, names)
        own_id = own_container_id()
        targets = []
        for meta in chosen:
            if should_ship(meta, config.processing.selection, own_id, own_pod_uid()):
                targets.append(meta)
            else:
                skipped.append(f"{meta.name}: excluded by the selection rules")
        summary.skipped = tuple(skipped)
        summary.containers = len(targets)

        private.root.mkdir(parents=True, exist_ok=True)
        buffer = DiskBuffer.open(
            private.buffer_dir,
            max_bytes=min(config.storage.max_bytes, 256 * 1024 * 1024),
            segment_max_bytes=config.storage.segment_max_bytes,
            fsync="never",  # a crash loses nothing: Docker still has every line
        )
        # The agent's intake and output; dead letters go to the agent's dead-letter file.
        # Rate limits do not apply: a backfill is run on purpose, to have every line.
        intake, router = buffer_intake(
            config, buffer, host_name, lambda: config.processing, rate_limits=False
        )
        connection, sink = elasticsearch_output(config, layout, buffer, router)
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT_S):
                await sink.prepare()
        except TimeoutError:
            raise BackfillFailed(
                f"Elasticsearch at {', '.join(config.elasticsearch.hosts)} did not accept "
                f"a connection within {_CONNECT_TIMEOUT_S:.0f} s: {sink.last_error}"
            ) from None
        sink_task = asyncio.create_task(sink.run(), name="backfill-sink")
        try:
            for index, meta in enumerate(targets):
                await _read_container(
                    docker, intake, config, meta, since_ns, summary, bar, index, len(targets)
                )
            while buffer.records_held and not sink_task.done():
                bar.update(1.0, f"sending: {buffer.records_held} records left")
                await asyncio.sleep(0.1)
            if sink_task.done():
                sink_task.result()  # raises what stopped it
        finally:
            sink.stop()
            try:
                async with asyncio.timeout(10):
                    await sink_task
            except TimeoutError:
                sink_task.cancel()
        bar.update(1.0, f"{summary.lines_read} lines of {len(targets)} container(s)", final=True)
    finally:
        if connection is not None:
            await connection.close()
        await docker.close()
        if buffer is not None:
            await buffer.close()
        shutil.rmtree(private.root, ignore_errors=True)
    after = _item_counts()
    summary.stored_new = int(after["201"] - before["201"])
    summary.already_stored = int(after["409"] - before["409"])
    summary.dead_lettered = int(telemetry.counter_total(telemetry.dead_lettered) - before["dead"])
    summary.failure_store = int(after["failure_store"] - before["failure_store"])
    return summary


async def _choose(
    docker: Any, listed: list[dict[str, Any]], names: list[str]
) -> tuple[list[Any], list[str]]:
    """ContainerMeta of the containers named (name or id prefix), or of all listed."""
    from shipper.docker.api import ContainerGone

    ids: list[str] = []
    skipped: list[str] = []
    if names:
        for name in names:
            match = [
                str(c["Id"])
                for c in listed
                if str(c["Id"]).startswith(name)
                or name in [str(n).lstrip("/") for n in c.get("Names") or []]
            ]
            if len(match) != 1:
                problem = "no such container" if not match else "matches several containers"
                raise ConfigError("--container", f"{name!r}: {problem}")
            ids.append(match[0])
    else:
        ids = [str(c["Id"]) for c in listed]
    metas = []
    for container_id in dict.fromkeys(ids):
        try:
            metas.append(await docker.inspect(container_id))
        except ContainerGone:
            skipped.append(f"{container_id[:12]}: removed meanwhile")
    return metas, skipped


async def _read_container(
    docker: Any,
    intake: Any,
    config: Config,
    meta: Any,
    since_ns: int,
    summary: Summary,
    bar: Progress,
    index: int,
    total: int,
) -> None:
    from shipper.docker.api import ContainerGone, LogsNotReadable
    from shipper.docker.engine import stream_dialect
    from shipper.docker.frames import LogStreamDecoder
    from shipper.pipeline.processor import build_processor

    decoder = LogStreamDecoder(
        meta.id,
        tty=meta.tty,
        max_line_bytes=config.processing.max_line_bytes,
        dialect=stream_dialect(meta.runtime),
    )
    processor = build_processor(config.processing, meta)
    intake.container_changed(meta)
    now_ns = time.time_ns()
    span = max(1, now_ns - since_ns)

    async def deliver(records: list[Any]) -> None:
        summary.lines_read += len(records)
        out = processor.process(records) if processor.active else records
        if out:
            summary.records_sent += len(out)
            await intake.put(meta, out)
        newest = records[-1].timestamp_ns
        done = (index + min(1.0, (newest - since_ns) / span)) / total
        bar.update(done, f"{meta.name}: {summary.lines_read} lines read")

    try:
        async for chunk in docker.logs(meta.id, since_ns=since_ns, follow=False):
            records = decoder.feed(chunk)
            decoder.spans.clear()  # for resuming; a backfill does not resume
            if records:
                await deliver(records)
        tail = decoder.finish()
        if tail:
            await deliver(tail)
        held = processor.flush_all()
        if held:
            summary.records_sent += len(held)
            await intake.put(meta, held)
    except ContainerGone:
        return
    except LogsNotReadable as exc:
        print(f"shipper: {meta.name}: logs not readable ({exc}); skipped", file=sys.stderr)
    bar.update((index + 1) / total, f"{meta.name}: done, {summary.lines_read} lines read")


def _item_counts() -> dict[str, float]:
    counts = {"201": 0.0, "409": 0.0}
    for metric in telemetry.bulk_items.collect():
        for sample in metric.samples:
            status = sample.labels.get("status")
            # A 201 into a failure store is not a stored record.
            used = sample.labels.get("failure_store") == "used"
            if sample.name.endswith("_total") and status in counts and not used:
                counts[status] += sample.value
    counts["dead"] = telemetry.counter_total(telemetry.dead_lettered)
    counts["failure_store"] = telemetry.counter_total_where(
        telemetry.bulk_items, failure_store="used"
    )
    return counts
