"""The client and discovery against a stand-in engine whose versions change under them.

The real engines are driven in tests/integration/test_engine_versions.py; an upgrade under
a running shipper (and an engine newer than any CI has) is played here by a stand-in that
answers `GET /version` and refuses versions outside its range with Docker's own message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from shipper import telemetry
from shipper.docker.api import ApiVersionRefused, DockerClient
from shipper.docker.versions import NEWEST, ApiVersion
from shipper.model import ContainerMeta, LogRecord
from shipper.sources.checkpoint import Checkpoint
from shipper.sources.docker.discovery import Discovery
from shipper.sources.docker.follower import ContainerFollower, FollowerSettings

pytestmark = pytest.mark.asyncio


@pytest.fixture(autouse=True)
def fresh_rate_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """A line another test logged within 30 s must not be suppressed here."""
    monkeypatch.setattr(telemetry, "rate_limited", telemetry.RateLimitedLog())


class StandInEngine:
    def __init__(self) -> None:
        self.newest, self.oldest = "1.41", "1.12"
        self.events_status = 200
        self.requests: list[str] = []

    async def version(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        body = {"Version": "stand-in", "ApiVersion": self.newest, "MinAPIVersion": self.oldest}
        return web.json_response(body)

    def _refusal(self, request: web.Request) -> web.Response | None:
        spoken = ApiVersion.parse(request.match_info["version"])
        if spoken < ApiVersion.parse(self.oldest):
            message = (
                f"client version {spoken} is too old. Minimum supported API version is "
                f"{self.oldest}, please upgrade your client to a newer version"
            )
            return web.json_response({"message": message}, status=400)
        if spoken > ApiVersion.parse(self.newest):
            message = (
                f"client version {spoken} is too new. Maximum supported API version is "
                f"{self.newest}"
            )
            return web.json_response({"message": message}, status=400)
        return None

    async def containers(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        return self._refusal(request) or web.json_response([])

    async def info(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        return self._refusal(request) or web.json_response({"Name": "h", "DockerRootDir": "/d"})

    async def events(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path)
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        if self.events_status != 200:
            return web.json_response({"message": "boom"}, status=self.events_status)
        response = web.StreamResponse()
        await response.prepare(request)
        await asyncio.sleep(3600)  # subscribed, quiet
        return response


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[tuple[StandInEngine, str]]:
    stand_in = StandInEngine()
    app = web.Application()
    app.router.add_get("/version", stand_in.version)
    app.router.add_get("/v{version}/containers/json", stand_in.containers)
    app.router.add_get("/v{version}/info", stand_in.info)
    app.router.add_get("/v{version}/events", stand_in.events)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    socket_path = tmp_path / "docker.sock"
    await web.UnixSite(runner, str(socket_path)).start()
    try:
        yield stand_in, f"unix://{socket_path}"
    finally:
        await runner.cleanup()


async def test_an_upgrade_under_a_running_client_is_negotiated_again_by_itself(
    engine: tuple[StandInEngine, str],
) -> None:
    stand_in, host = engine
    client = DockerClient(host)
    try:
        await client.list_containers()  # the first request negotiates
        assert client.api_version == ApiVersion(1, 41)
        assert stand_in.requests == ["/version", "/v1.41/containers/json"]
        # dockerd restarted as a newer one that refuses 1.41.
        stand_in.newest, stand_in.oldest = "1.52", "1.44"
        with pytest.raises(ApiVersionRefused, match=r"client version 1\.41 is too old"):
            await client.list_containers()
        assert client.api_version is None  # forgotten: the next request asks again
        await client.list_containers()
        assert client.api_version == NEWEST
        assert stand_in.requests[-2:] == ["/version", f"/v{NEWEST}/containers/json"]
    finally:
        await client.close()


async def test_an_engine_newer_than_any_version_we_speak_is_refused_before_any_request(
    engine: tuple[StandInEngine, str],
) -> None:
    stand_in, host = engine
    stand_in.newest, stand_in.oldest = "1.60", "1.55"
    client = DockerClient(host)
    try:
        with pytest.raises(ApiVersionRefused, match="Upgrade the shipper"):
            await client.list_containers()
        assert stand_in.requests == ["/version"]  # nothing asked in a version it refuses
    finally:
        await client.close()


async def test_a_pinned_version_is_spoken_without_asking(
    engine: tuple[StandInEngine, str],
) -> None:
    stand_in, host = engine
    client = DockerClient(host, api_version="1.24")
    try:
        await client.list_containers()
        assert stand_in.requests == ["/v1.24/containers/json"]
    finally:
        await client.close()


class _Keeper:
    def start_of(self, container_id: str) -> Checkpoint | None:
        return None

    def follower_started(self, follower: ContainerFollower) -> None: ...

    def follower_ended(self, follower: ContainerFollower) -> None: ...

    def container_destroyed(self, container_id: str) -> None: ...

    def known_containers(self) -> set[str]:
        return set()


class _Intake:
    async def put(self, meta: ContainerMeta, records: list[LogRecord]) -> None: ...

    def container_changed(self, meta: ContainerMeta) -> None: ...

    def forget(self, container_id: str) -> None: ...


async def _discovery_reasons(
    host: str, caplog: pytest.LogCaptureFixture, api_version: str = "auto"
) -> tuple[str | None, str, Discovery]:
    client = DockerClient(host, api_version=api_version)
    discovery = Discovery(client, _Intake(), _Keeper(), FollowerSettings(max_backoff_s=0.1))
    task = asyncio.create_task(discovery.run())
    try:
        with caplog.at_level(logging.INFO, logger="shipper"):
            await asyncio.sleep(0.5)
        return discovery.not_ready_reason, caplog.text, discovery
    finally:
        task.cancel()
        await discovery.stop()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()


async def test_a_daemon_that_answers_with_errors_is_not_lost(
    engine: tuple[StandInEngine, str], caplog: pytest.LogCaptureFixture
) -> None:
    stand_in, host = engine
    stand_in.events_status = 500
    reason, log, _ = await _discovery_reasons(host, caplog)
    assert reason is not None and reason.startswith("Docker API answers with errors")
    assert "HTTP 500" in reason
    assert "The Docker daemon answered with an error; retrying." in log
    assert "Lost the Docker daemon" not in log


async def test_a_refused_pin_is_reported_as_such_and_a_lost_daemon_as_lost(
    engine: tuple[StandInEngine, str], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    stand_in, host = engine
    stand_in.newest, stand_in.oldest = "1.51", "1.44"
    reason, log, _ = await _discovery_reasons(host, caplog, api_version="1.41")
    assert reason is not None and reason.startswith("Docker API version refused: ")
    assert "refuses API 1.41, which docker.api_version pins" in reason
    assert "Lost the Docker daemon" not in log
    caplog.clear()
    # Nothing listens there: that one is lost.
    reason, log, _ = await _discovery_reasons(f"unix://{tmp_path}/none.sock", caplog)
    assert reason == "Docker API not reachable"
    assert "Lost the Docker daemon; reconnecting." in log


async def test_connected_says_the_engine_and_learns_the_data_root(
    engine: tuple[StandInEngine, str], caplog: pytest.LogCaptureFixture
) -> None:
    _, host = engine
    reason, log, discovery = await _discovery_reasons(host, caplog)
    assert reason is None
    assert "Connected to the Docker Engine." in log
    assert discovery._containers_path == "/d/containers"
