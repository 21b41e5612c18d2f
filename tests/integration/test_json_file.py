"""The json-file fast path: same records as the logs API, rotation, mode switches, fallback."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from shipper.docker.frames import LogStreamDecoder
from shipper.docker.jsonfile import JsonFileDecoder
from shipper.model import LogRecord
from tests.integration.helpers import (
    assert_shipped_exactly_once,
    cut_line_command,
    cut_line_expected,
)
from tests.support.docker_logs import raw_logs

pytestmark = pytest.mark.docker

CONTAINERS_PATH = "/var/lib/docker/containers"
FALLBACK_MESSAGE = "its logs are read through the Docker API"

CASES = {
    "interleaved": 'for i in $(seq 1 200); do echo "out $i"; echo "err $i" >&2; done',
    "long_line": "head -c 100000 /dev/zero | tr '\\0' a; echo; echo after",
    "long_stderr": "head -c 40000 /dev/zero | tr '\\0' b >&2; echo >&2; echo out",
    "empty_lines": "echo; echo; echo middle; echo; printf '\\n'",
    "invalid_utf8": "printf 'bad \\377\\376 bytes\\n'; printf '\\300\\n' >&2",
    "non_ascii": "echo 'grüße 日本語 🚀 ∑ \"quoted\" \\\\ back'; echo 'ünïcödé' >&2",
    "no_final_newline": "echo first; printf 'no newline at the end'",
    "control_chars": "printf 'tab\\there bell\\007 esc\\033[0m cr\\rmid\\n'",
}


def _log_file_bytes(client: docker.DockerClient, container_id: str) -> bytes:
    path = Path(client.api.inspect_container(container_id)["LogPath"])
    rotated = sorted(
        (p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()),
        key=lambda p: -int(p.suffix[1:]),
    )
    return b"".join(p.read_bytes() for p in [*rotated, path])


def _decode_both(
    client: docker.DockerClient, container_id: str, tty: bool, since_ns: int = 0, chunk: int = 997
) -> tuple[list[LogRecord], list[LogRecord]]:
    # As the follower builds it: a current engine's `since` may return a line of the other
    # stream stamped a little earlier, which the decoder drops (see LogStreamDecoder).
    api = LogStreamDecoder(container_id, tty=tty, since_ns=since_ns)
    body = (
        raw_logs(client, container_id)
        if not since_ns
        else _raw_since(client, container_id, since_ns)
    )
    from_api = [r for i in range(0, len(body), chunk) for r in api.feed(body[i : i + chunk])]
    from_api += api.finish()
    files = JsonFileDecoder(container_id, tty=tty, since_ns=since_ns)
    data = _log_file_bytes(client, container_id)
    from_files = [r for i in range(0, len(data), chunk) for r in files.feed(data[i : i + chunk])]
    from_files += files.finish()
    return from_api, from_files


def _raw_since(client: docker.DockerClient, container_id: str, since_ns: int) -> bytes:
    api = client.api
    url = api._url("/containers/{0}/logs", container_id)
    seconds, nanos = divmod(since_ns, 1_000_000_000)
    params = {"stdout": 1, "stderr": 1, "timestamps": 1, "since": f"{seconds}.{nanos:09d}"}
    response = api._get(url, params=params, stream=False)
    api._raise_for_status(response)
    return bytes(response.content)


@pytest.mark.parametrize("tty", [False, True], ids=["plain", "tty"])
def test_the_file_and_the_api_give_identical_records(
    docker_client: docker.DockerClient, containers: Any, tty: bool
) -> None:
    if not os.access(CONTAINERS_PATH, os.R_OK):
        pytest.skip("Docker's containers directory is not readable here")
    started = [containers(command, tty=tty) for command in CASES.values()]
    for container in started:
        container.wait(timeout=60)
    for container in started:
        from_api, from_files = _decode_both(docker_client, container.id, tty)
        assert from_api, container.id
        assert from_files == from_api
        # From a checkpoint in the middle: the same lines, the same seqs.
        middle = from_api[len(from_api) // 2].timestamp_ns
        from_api, from_files = _decode_both(docker_client, container.id, tty, since_ns=middle)
        assert from_files == from_api


@pytest.mark.parametrize("tty", [False, True], ids=["plain", "tty"])
def test_lines_cut_by_a_stop_decode_the_same_and_a_read_up_to_a_stop_is_a_prefix(
    docker_client: docker.DockerClient, containers: Any, tty: bool
) -> None:
    """Both decoders on a container that stopped mid-line three times.

    A read that reached the end of the log after the first run (and so ended the cut lines
    there) must yield a prefix of what a read of the longer log yields later: a checkpoint
    counts the lines taken in that order and skips that many when it resumes.
    """
    if not os.access(CONTAINERS_PATH, os.R_OK):
        pytest.skip("Docker's containers directory is not readable here")
    container = containers(cut_line_command(tty), tty=tty)
    assert container.wait(timeout=60)["StatusCode"] == 1
    early = _decode_both(docker_client, container.id, tty)
    for _ in range(2):
        container.start()
        assert container.wait(timeout=60)["StatusCode"] == 1
    from_api, from_files = _decode_both(docker_client, container.id, tty)
    assert from_files == from_api
    assert sorted((r.stream, r.message) for r in from_api) == cut_line_expected(tty, 3)
    for before, after in zip(early, (from_api, from_files), strict=True):
        assert sorted((r.stream, r.message) for r in before) == cut_line_expected(tty, 1)
        assert after[: len(before)] == before


@pytest.mark.parametrize("read_mode", ["api", "files"])
async def test_exactly_once_in_both_read_modes(
    es_server: Any,
    docker_client: docker.DockerClient,
    containers: Any,
    shipper_factory: Any,
    read_mode: str,
) -> None:
    shipper = shipper_factory(es_server.url, {"docker": {"read_mode": read_mode}})
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    await asyncio.sleep(0.5)
    started = [containers(command) for command in CASES.values()]
    started.append(containers("echo tty line; echo second line", tty=True))
    started.append(containers('for i in $(seq 1 50); do echo "live $i"; sleep 0.02; done'))
    for container in started:
        await asyncio.to_thread(container.wait, timeout=60)
    for container in started:
        await assert_shipped_exactly_once(es_server, docker_client, container.id)
    assert await asyncio.to_thread(shipper.stop) == 0
    if read_mode == "files":
        assert FALLBACK_MESSAGE not in shipper.stderr()


async def test_rotation_loses_and_doubles_nothing(
    es_server: Any, docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    shipper = shipper_factory(es_server.url, {"docker": {"read_mode": "files"}})
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    await asyncio.sleep(0.5)
    # ~2.3 MB of json-file: two rotations at 1 MB, within the 3 files kept. Most bytes are in
    # 40 KB lines (three 16 KiB partials each), so a rotation falls inside a partial line.
    writer = containers(
        "for i in $(seq 1 48); do "
        '  for j in $(seq 1 40); do echo "short $i $j"; done; '
        "  head -c 40000 /dev/zero | tr '\\0' x; echo \" long $i\"; "
        "done",
        log_config={"type": "json-file", "config": {"max-size": "1m", "max-file": "3"}},
    )
    await asyncio.to_thread(writer.wait, timeout=120)
    log_path = Path(docker_client.api.inspect_container(writer.id)["LogPath"])
    assert Path(str(log_path) + ".1").exists(), "the log did not rotate"
    expected, _ = await assert_shipped_exactly_once(es_server, docker_client, writer.id)
    assert len(expected) == 48 * 41
    assert await asyncio.to_thread(shipper.stop) == 0


async def test_switching_read_modes_between_restarts(
    es_server: Any, docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    writer = containers(
        'for i in $(seq 1 400); do echo "line $i"; echo "err $i" >&2; sleep 0.01; done'
    )
    shipper = shipper_factory(es_server.url, {"docker": {"read_mode": "api"}})
    for mode in ("api", "files", "api"):
        shipper.config["docker"]["read_mode"] = mode
        shipper.config_path.write_text(yaml.safe_dump(shipper.config))
        shipper.start()
        await asyncio.to_thread(shipper.wait_ready_http)
        await asyncio.sleep(1.5)
        assert await asyncio.to_thread(shipper.stop) == 0
    await asyncio.to_thread(writer.wait, timeout=60)
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    expected, _ = await assert_shipped_exactly_once(es_server, docker_client, writer.id)
    assert len(expected) == 800
    assert await asyncio.to_thread(shipper.stop) == 0


async def test_other_drivers_fall_back_to_the_api(
    es_server: Any, docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    shipper = shipper_factory(es_server.url, {"docker": {"read_mode": "files"}})
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    local = containers(
        'for i in $(seq 1 30); do echo "local $i"; done', log_config={"type": "local"}
    )
    await asyncio.to_thread(local.wait, timeout=60)
    expected, _ = await assert_shipped_exactly_once(es_server, docker_client, local.id)
    assert len(expected) == 30
    deadline = time.monotonic() + 5
    while FALLBACK_MESSAGE not in shipper.stderr() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert FALLBACK_MESSAGE in shipper.stderr()
    assert await asyncio.to_thread(shipper.stop) == 0
