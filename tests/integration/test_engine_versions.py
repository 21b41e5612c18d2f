"""The shipper on a current Docker Engine that refuses old API versions, as Docker 29 does.

Each test starts its own current engine (Debian sid's dockerd 28.x, DOCKER_MIN_API_VERSION
=1.44: `400 client version 1.41 is too old` below that), whatever SHIPPER_TEST_ENGINE says:
with no `docker.api_version` the shipper negotiates and ships; pinned below the engine's
minimum it says so (log, metric, /readyz, `shipper status`), never "lost the daemon", and
starts shipping by itself once the engine accepts the version.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from shipper.docker.versions import NEWEST
from tests.conftest import RUN_ID, TEST_IMAGE, TEST_LABEL
from tests.integration.helpers import assert_shipped_exactly_once
from tests.support.dockerd import PrivateDockerd
from tests.support.engines import CURRENT
from tests.support.shipper_process import free_port

pytestmark = pytest.mark.docker

WRITER = 'for i in $(seq 1 300); do echo "out $i"; echo "err $i" >&2; done'


def run(client: docker.DockerClient, command: str) -> Any:
    return client.containers.run(
        TEST_IMAGE,
        ["sh", "-c", command],
        detach=True,
        network_mode="none",
        labels={TEST_LABEL: RUN_ID},
    )


def log_events(shipper: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in shipper.stderr().splitlines() if line.startswith("{")]


async def wait_for_readyz(shipper: Any, wanted: Any, timeout_s: float) -> tuple[int, str]:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = await asyncio.to_thread(shipper.http_get, "/readyz")
        if wanted(answer):
            return answer  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"/readyz still answers {answer}"
        await asyncio.sleep(0.2)


@pytest.mark.timeout(120)
async def test_with_no_api_version_configured_every_line_arrives_exactly_once(
    es_server: Any,
    private_current_dockerd: PrivateDockerd,
    shipper_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    daemon = private_current_dockerd
    client = daemon.client
    assert client is not None
    assert daemon.version()["MinAPIVersion"] == "1.44"
    monkeypatch.delenv("DOCKER_API_VERSION", raising=False)  # nothing pins it
    shipper = shipper_factory(es_server.url, {"docker": {"host": daemon.host}})
    assert "api_version" not in shipper.config["docker"]
    before = await asyncio.to_thread(run, client, WRITER)  # found by the listing
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    await wait_for_readyz(shipper, lambda a: a == (200, "ready\n"), 30)
    after = await asyncio.to_thread(run, client, WRITER)  # found by its start event
    for container in (before, after):
        await asyncio.to_thread(container.wait, timeout=60)
        await assert_shipped_exactly_once(es_server, client, container.id)
    connected = [
        e for e in log_events(shipper) if e["message"] == "Connected to the Docker Engine."
    ]
    assert len(connected) == 1
    assert connected[0]["api_version"] == str(NEWEST) == "1.51"
    assert connected[0]["engine_version"] == daemon.version()["Version"]
    engine_info = {"engine_version": daemon.version()["Version"], "api_version": "1.51"}
    assert await asyncio.to_thread(shipper.metric, "shipper_docker_engine_info", engine_info) == 1
    assert "Lost the Docker daemon" not in shipper.stderr()
    # Files mode with no docker.containers_path: the engine's data root (a private one here,
    # not /var/lib/docker) came from /info, and each container's first read says so.
    containers_dir = str(daemon.data_root / "containers")
    assert connected[0]["containers_path"] == containers_dir
    reads = {
        e["container_id"]: e
        for e in log_events(shipper)
        if e["message"].startswith("Reading a container's logs")
    }
    for container in (before, after):
        read = reads[container.id[:12]]
        assert read["message"] == "Reading a container's logs from its json-file log."
        assert read["read_mode"] == "files"
        assert read["reason"].startswith(f"its json-file log is readable at {containers_dir}/")
    assert await asyncio.to_thread(shipper.stop) == 0


@pytest.mark.timeout(180)
async def test_pinned_too_low_is_a_clear_error_and_ships_once_the_engine_accepts(
    es_server: Any, private_current_dockerd: PrivateDockerd, shipper_factory: Any
) -> None:
    daemon = private_current_dockerd
    client = daemon.client
    assert client is not None
    shipper = shipper_factory(
        es_server.url,
        {"docker": {"host": daemon.host, "api_version": "1.41", "reconnect_max_backoff_s": 1.0}},
    )
    waiting = await asyncio.to_thread(run, client, WRITER)
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)

    # /readyz names the refusal, with both sides' versions and what to do (and only that,
    # once Elasticsearch is connected).
    engine = daemon.version()["Version"]
    reason = (
        f"- Docker API version refused: Docker Engine {engine} (API 1.44 to 1.51) refuses API "
        "1.41, which docker.api_version pins. Set docker.api_version to auto (this shipper "
        "supports API 1.41 to 1.51) or to a version the engine accepts.\n"
    )
    await wait_for_readyz(shipper, lambda a: a == (503, "not ready\n" + reason), 20)
    # The log says the same, as an error; it is counted, and retried (counted again).
    refusals = [e for e in log_events(shipper) if e.get("message", "").startswith("The Docker")]
    assert refusals and refusals[0]["log.level"] == "error"
    assert "refuses API 1.41, which docker.api_version pins" in refusals[0]["error"]
    deadline = time.monotonic() + 10
    refused = {"kind": "docker_api_version_refused"}
    while await asyncio.to_thread(shipper.metric, "shipper_errors_total", refused) < 2:
        assert time.monotonic() < deadline, "the refusal is not retried"
        await asyncio.sleep(0.2)
    # `shipper status` shows it too (from the agent's /status).
    status_cli = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "shipper", "status", "--url", shipper.metrics_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status_cli.returncode == 0, status_cli.stderr
    assert "ready: NO: Docker API version refused: Docker Engine" in status_cli.stdout
    # A daemon that answers is never "lost", and nothing was shipped.
    assert "Lost the Docker daemon" not in shipper.stderr()
    assert await asyncio.to_thread(shipper.metric, "shipper_records_shipped_total") == 0

    # The engine now accepts 1.41 (what an operator does while the shipper is upgraded):
    # the shipper starts shipping by itself, the container written meanwhile included.
    await asyncio.to_thread(daemon.restart, min_api_version=None)
    assert daemon.version()["MinAPIVersion"] != "1.44"
    await wait_for_readyz(shipper, lambda a: a == (200, "ready\n"), 30)
    after = await asyncio.to_thread(run, client, WRITER)
    await asyncio.to_thread(after.wait, timeout=60)
    for container in (waiting, after):
        await assert_shipped_exactly_once(es_server, client, container.id)
    shipper.assert_alive()
    assert await asyncio.to_thread(shipper.stop) == 0


@pytest.mark.timeout(240)
async def test_a_daemon_restarted_as_a_newer_engine_is_negotiated_again(
    es_server: Any, private_dockerd: PrivateDockerd, shipper_factory: Any
) -> None:
    """The upgrade users do: dockerd 20.10 stopped, dockerd 28 started on the same data root
    (refusing below 1.44), under a running shipper that spoke 1.41 to the old one."""
    daemon = private_dockerd
    if daemon.dockerd == CURRENT.dockerd:
        pytest.skip("runs in the system engine's pass: it upgrades from that engine")
    client = daemon.client
    assert client is not None
    shipper = shipper_factory(
        es_server.url, {"docker": {"host": daemon.host, "reconnect_max_backoff_s": 1.0}}
    )
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    await wait_for_readyz(shipper, lambda a: a == (200, "ready\n"), 30)
    old = await asyncio.to_thread(run, client, WRITER)
    await asyncio.to_thread(old.wait, timeout=60)
    await assert_shipped_exactly_once(es_server, client, old.id)

    await asyncio.to_thread(daemon.stop)
    daemon.dockerd = CURRENT.dockerd
    daemon.min_api_version = CURRENT.min_api_version
    await asyncio.to_thread(daemon.start)
    assert daemon.version()["MinAPIVersion"] == "1.44"
    client = daemon.client  # a new one: the old one spoke 1.41 too
    assert client is not None
    await wait_for_readyz(shipper, lambda a: a == (200, "ready\n"), 30)
    new = await asyncio.to_thread(run, client, WRITER)
    await asyncio.to_thread(new.wait, timeout=60)
    for container in (old, new):
        await assert_shipped_exactly_once(es_server, client, container.id)
    connected = [
        e for e in log_events(shipper) if e["message"] == "Connected to the Docker Engine."
    ]
    assert [e["api_version"] for e in connected] == ["1.41", str(NEWEST)]
    assert "refuse" not in shipper.stderr()  # no request went out in 1.41 to the new engine
    assert await asyncio.to_thread(shipper.stop) == 0


@pytest.mark.timeout(120)
def test_the_readmes_first_command_ships_from_a_current_engine(
    private_current_dockerd: PrivateDockerd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`shipper run --output console`, no config, the engine named by DOCKER_HOST only."""
    daemon = private_current_dockerd
    client = daemon.client
    assert client is not None
    container = run(client, WRITER)
    container.wait(timeout=60)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPPER_", "DOCKER_"))}
    env["DOCKER_HOST"] = daemon.host
    # Only so that parallel runs do not fight over the default port and state directory.
    env["SHIPPER_METRICS_LISTEN"] = f"127.0.0.1:{free_port()}"
    stdout_path = tmp_path / "stdout"
    with open(stdout_path, "wb") as stdout, open(tmp_path / "stderr", "wb") as stderr:
        process = subprocess.Popen(
            [*README_COMMAND, "--storage-path", str(tmp_path / "state")],
            stdout=stdout,
            stderr=stderr,
            env=env,
        )
    try:
        deadline = time.monotonic() + 60
        while len(_console_messages(stdout_path, container.id)) < 600:
            assert process.poll() is None, (tmp_path / "stderr").read_text()
            assert time.monotonic() < deadline, (tmp_path / "stderr").read_text()[-3000:]
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    messages = _console_messages(stdout_path, container.id)
    expected = {f"out {i}" for i in range(1, 301)} | {f"err {i}" for i in range(1, 301)}
    assert sorted(messages) == sorted(expected)  # each once
    assert "Lost the Docker daemon" not in (tmp_path / "stderr").read_text()


README_COMMAND = (sys.executable, "-m", "shipper", "run", "--output", "console")


def _console_messages(path: Path, container_id: str) -> list[str]:
    messages = []
    for line in path.read_bytes().splitlines():
        record = json.loads(line)
        if record["container"]["id"] == container_id:
            messages.append(record["message"])
    return messages
