"""The shipper only reads from the Docker API: every request it makes is a GET of a read path."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.integration.helpers import assert_shipped_exactly_once
from tests.support.docker_proxy import RecordingDockerProxy

pytestmark = pytest.mark.docker

READ_PATHS = [
    r"/_ping",
    r"/v[\d.]+/(version|info|events)",
    r"/v[\d.]+/containers/json",
    r"/v[\d.]+/containers/[0-9a-f]{64}/(json|logs)",
]


async def test_every_docker_api_request_is_a_read(
    es_server: Any,
    docker_client: docker.DockerClient,
    containers: Any,
    shipper_factory: Any,
    tmp_path: Path,
) -> None:
    proxy = RecordingDockerProxy(tmp_path / "docker.sock")
    await proxy.start()
    try:
        shipper = shipper_factory(es_server.url, {"docker": {"host": proxy.url}})
        shipper.start()
        await asyncio.to_thread(shipper.wait_ready_http)
        container = containers("echo audited; echo err >&2", tty=False)
        renamed = containers("echo before rename; sleep 2; echo after rename")
        await asyncio.sleep(0.5)
        renamed.rename(renamed.name + "-renamed")
        await asyncio.to_thread(container.wait, timeout=30)
        await asyncio.to_thread(renamed.wait, timeout=30)
        await assert_shipped_exactly_once(es_server, docker_client, container.id)
        _, docs = await assert_shipped_exactly_once(es_server, docker_client, renamed.id)
        names = {d["_source"]["message"]: d["_source"]["container"]["name"] for d in docs}
        assert names["after rename"] == renamed.name + "-renamed"
        container.remove(force=True)  # destroy: the shipper lets go of it
        await asyncio.sleep(1)
        assert await asyncio.to_thread(shipper.stop) == 0
    finally:
        await proxy.stop()
    assert proxy.requests, "the shipper made no request through the proxy"
    for method, path in proxy.requests:
        assert method in ("GET", "HEAD"), (method, path)
        assert any(re.fullmatch(pattern, path) for pattern in READ_PATHS), path
    assert {p.rsplit("/", 1)[-1] for _, p in proxy.requests} >= {"events", "logs", "json"}
