"""What the shipper reads from the Docker Engine API, checked on the real engine under test.

Runs against each engine CI drives (tests/support/engines.py: Debian's 20.10 at API 1.41,
and a current one, Debian sid's 28.x refusing below 1.44, at 1.51): every field and stream
shape the shipper depends on is asserted here through the shipper's own client, so that an
engine that differs fails a test that names the difference instead of a shipping test far
downstream. What the engines were found to differ in, and what did not differ, is in the
README ("Docker Engines").
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import docker
import pytest

from shipper.docker.api import ApiVersionRefused, DockerClient, _parse_event
from shipper.docker.frames import LogStreamDecoder
from shipper.docker.jsonfile import JsonFileDecoder
from shipper.docker.versions import NEWEST, ApiVersion
from shipper.lines.timestamps import parse_timestamp
from shipper.model import LogRecord
from tests.conftest import RUN_ID, TEST_IMAGE, TEST_LABEL, ContainerFactory
from tests.support.docker_logs import reference_lines
from tests.support.engines import CURRENT, Engine

pytestmark = pytest.mark.docker

# Deprecated since API 1.22 and no longer sent from API 1.52 (Docker 29) on; both engines
# in CI still send them, so the test takes them away to see the shipper does not need them.
DEPRECATED_EVENT_FIELDS = ("status", "id", "from")


@pytest.fixture
async def shipper_client(engine: Engine) -> AsyncIterator[DockerClient]:
    client = DockerClient(engine.host)
    yield client
    await client.close()


def wait_exited(container: Any, timeout_s: float = 30) -> None:
    container.wait(timeout=timeout_s)


async def test_the_version_spoken_is_the_highest_both_support(
    engine: Engine, shipper_client: DockerClient, docker_client: docker.DockerClient
) -> None:
    spoken = await shipper_client.negotiate()
    described = shipper_client.engine
    assert described is not None
    reported = docker_client.version()
    assert described.newest == ApiVersion.parse(reported["ApiVersion"])
    assert spoken == min(described.newest, NEWEST)
    if engine.kind is CURRENT:
        # Refuses what Docker 29 refuses, and is spoken to at its newest, which we support.
        assert str(described.oldest) == CURRENT.min_api_version
        assert spoken == described.newest == NEWEST
    else:
        assert spoken == ApiVersion(1, 41)
    # Every later request goes out with it.
    assert shipper_client.api_version == spoken


async def test_a_version_below_the_engines_minimum_is_refused_with_the_engines_reason(
    engine: Engine, shipper_client: DockerClient
) -> None:
    await shipper_client.negotiate()
    described = shipper_client.engine
    assert described is not None and described.oldest is not None
    below = ApiVersion(described.oldest.major, described.oldest.minor - 1)
    pinned = DockerClient(engine.host, api_version=str(below), pinned_by="the test")
    try:
        # Asked directly (the engine's own 400), and at negotiation (from /version).
        with pytest.raises(ApiVersionRefused) as direct:
            await pinned.list_containers()
        assert direct.value.status == 400
        assert f"refused API {below}" in str(direct.value)
        assert f"client version {below} is too old" in str(direct.value)
        with pytest.raises(ApiVersionRefused) as negotiated:
            await pinned.negotiate()
        assert f"refuses API {below}, which the test pins" in str(negotiated.value)
    finally:
        await pinned.close()


async def test_events_are_read_from_action_and_actor_alone(
    docker_client: docker.DockerClient, containers: ContainerFactory
) -> None:
    since = time.time() - 1
    container = containers("sleep 30", labels={"shape": "events"})
    await asyncio.to_thread(container.exec_run, ["true"])
    await asyncio.to_thread(container.kill)
    await asyncio.to_thread(wait_exited, container)
    until = time.time() + 1
    raw = [
        event
        for event in docker_client.events(
            since=since, until=until, decode=True, filters={"container": container.id}
        )
        if event.get("Type") == "container"
    ]
    actions = [event["Action"] for event in raw]
    for expected in ("create", "start", "exec_create: true ", "exec_start: true ", "die"):
        assert expected in actions, f"no {expected!r} event: {actions}"
    for event in raw:
        assert event["Actor"]["ID"] == container.id
        assert event["timeNano"] // 1_000_000_000 == event["time"]
        parsed = _parse_event(event)
        stripped = _parse_event(
            {k: v for k, v in event.items() if k not in DEPRECATED_EVENT_FIELDS}
        )
        assert parsed is not None and parsed == stripped
        assert (parsed.action, parsed.container_id) == (event["Action"], container.id)
        assert parsed.time_ns == event["timeNano"]
        assert parsed.attributes["shape"] == "events"  # labels ride along as attributes


async def test_inspect_gives_every_field_the_shipper_reads(
    docker_client: docker.DockerClient, containers: ContainerFactory, shipper_client: DockerClient
) -> None:
    before_ns = time.time_ns()
    container = containers(
        "sleep 30",
        labels={"com.docker.compose.service": "web", "app": "shapes"},
        log_config={"type": "json-file", "config": {"max-size": "1m", "max-file": "2"}},
        tty=True,
    )
    meta = await shipper_client.inspect(container.id)
    assert meta.id == container.id
    assert meta.name == container.name
    assert meta.image == TEST_IMAGE
    assert meta.image_id.startswith("sha256:")
    assert meta.labels["com.docker.compose.service"] == "web"
    assert meta.labels["app"] == "shapes"
    assert meta.labels[TEST_LABEL] == RUN_ID
    assert meta.tty is True
    assert meta.log_driver == "json-file"
    assert meta.log_opts == {"max-size": "1m", "max-file": "2"}
    assert meta.running is True
    started_ns = parse_timestamp(meta.started_at.encode())
    assert before_ns - 2_000_000_000 < started_ns < time.time_ns() + 2_000_000_000
    # LogPath lies in the engine's DockerRootDir + /containers: what files mode reads when
    # docker.containers_path is not set.
    root = (await shipper_client.info())["DockerRootDir"]
    assert meta.log_path == os.path.join(
        root, "containers", container.id, f"{container.id}-json.log"
    )
    await asyncio.to_thread(container.kill)
    await asyncio.to_thread(wait_exited, container)
    stopped = await shipper_client.inspect(container.id)
    assert stopped.running is False and stopped.started_at == meta.started_at


async def _records(
    client: DockerClient, container_id: str, tty: bool, since_ns: int = 0
) -> list[LogRecord]:
    decoder = LogStreamDecoder(container_id, tty=tty)
    records: list[LogRecord] = []
    async for chunk in client.logs(container_id, since_ns=since_ns, follow=False):
        records.extend(decoder.feed(chunk))
    return records + decoder.finish()


async def test_since_is_inclusive_to_the_nanosecond(
    containers: ContainerFactory, shipper_client: DockerClient
) -> None:
    container = containers("for i in 1 2 3 4 5; do echo line $i; done")
    await asyncio.to_thread(wait_exited, container)
    records = await _records(shipper_client, container.id, tty=False)
    assert [r.message for r in records] == [f"line {i}" for i in range(1, 6)]
    stamps = [r.timestamp_ns for r in records]
    assert stamps == sorted(stamps) and len(set(stamps)) == 5
    # From line 3's own stamp: line 3 on; one nanosecond later: line 4 on.
    at = await _records(shipper_client, container.id, tty=False, since_ns=stamps[2])
    assert [r.message for r in at] == ["line 3", "line 4", "line 5"]
    after = await _records(shipper_client, container.id, tty=False, since_ns=stamps[2] + 1)
    assert [r.message for r in after] == ["line 4", "line 5"]


PARTIAL_COMMAND = (
    "echo first; head -c 40000 /dev/zero | tr '\\0' a; echo; "
    "head -c 20000 /dev/zero | tr '\\0' b >&2; echo >&2; echo 'grüße'; printf 'no newline'"
)


@pytest.mark.parametrize("tty", [False, True], ids=["multiplexed", "tty"])
async def test_streams_and_16k_partials_decode_as_the_engine_wrote_them(
    docker_client: docker.DockerClient,
    containers: ContainerFactory,
    shipper_client: DockerClient,
    tty: bool,
) -> None:
    container = containers(PARTIAL_COMMAND, tty=tty)
    await asyncio.to_thread(wait_exited, container)
    records = await _records(shipper_client, container.id, tty=tty)
    # The independent reader of the same body (tests/support/docker_logs.py) agrees, stream
    # by stream. (Not on how the streams interleave: it places a split line where its last
    # part came, the decoder where its first did, and the engine interleaves the copiers'
    # parts differently from run to run.)
    reference = await asyncio.to_thread(reference_lines, docker_client, container.id)
    for stream in ("stdout", "stderr"):
        assert [r.message for r in records if r.stream == stream] == [
            line.message for line in reference if line.stream == stream
        ]

    def of(stream: str) -> list[str]:
        return [r.message for r in records if r.stream == stream]

    if tty:
        # A TTY merges stderr into stdout and ends lines with \r\n, which the shipper strips.
        assert of("stdout") == ["first", "a" * 40000, "b" * 20000, "grüße", "no newline"]
        assert of("stderr") == []
    else:
        # Each stream in order; between them, whichever copier wrote first.
        assert of("stdout") == ["first", "a" * 40000, "grüße", "no newline"]
        assert of("stderr") == ["b" * 20000]
    # Docker cut the long lines into 16 KiB pieces that share one timestamp; the shipper
    # joined them, so each is one record at that timestamp.
    assert len({r.timestamp_ns for r in records}) == 5
    # The json-file the engine wrote gives the very same records (files mode).
    log_path = Path(docker_client.api.inspect_container(container.id)["LogPath"])
    if os.access(log_path, os.R_OK):
        files = JsonFileDecoder(container.id, tty=tty)
        from_file = files.feed(log_path.read_bytes()) + files.finish()
        assert from_file == records
    else:  # pragma: no cover - CI runs as root
        pytest.skip(f"{log_path} is not readable here")


async def test_info_names_the_host_and_the_data_root(
    docker_client: docker.DockerClient, shipper_client: DockerClient
) -> None:
    info = await shipper_client.info()
    assert info["Name"] == docker_client.info()["Name"]
    assert os.path.isdir(os.path.join(info["DockerRootDir"], "containers"))
    assert info["LoggingDriver"] == "json-file"
