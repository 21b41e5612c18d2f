"""dockerd stopped and started again under a running shipper, on a private daemon.

The machine's main dockerd is shared with concurrent test runs, so this test starts its own
(`tests/support/dockerd.py`) and points the shipper at it with `docker.host`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import docker
import pytest

from tests.conftest import RUN_ID, TEST_IMAGE, TEST_LABEL
from tests.integration.helpers import assert_shipped_exactly_once, documents_of
from tests.support.dockerd import PrivateDockerd

pytestmark = pytest.mark.docker


async def run(client: docker.DockerClient, command: str, **kwargs: Any) -> Any:
    return await asyncio.to_thread(
        client.containers.run,
        TEST_IMAGE,
        ["sh", "-c", command],
        detach=True,
        network_mode="none",  # the private daemon has no bridge
        labels={TEST_LABEL: RUN_ID},
        **kwargs,
    )


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_dockerd_restart_reconnects_and_duplicates_nothing(
    es_server: Any, private_dockerd: PrivateDockerd, shipper_factory: Any
) -> None:
    daemon = private_dockerd
    client = daemon.client
    assert client is not None
    shipper = shipper_factory(
        es_server.url,
        {
            "docker": {"host": daemon.host, "reconnect_max_backoff_s": 1.0},
            "elasticsearch": {"retry_max_backoff_s": 1.0},
        },
    )
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)

    # Runs until the daemon stops it, and is not started again.
    before = await run(
        client,
        'trap "exit 0" TERM; for i in $(seq 1 100); do echo "before $i"; echo "before err $i" >&2; '
        "done; while true; do sleep 0.1; done",
    )
    # Writes all along, and is started again by the daemon (restart policy): its log, kept
    # across the restart, holds both runs, and the second run must not repeat the first.
    steady = await run(
        client,
        'trap "exit 0" TERM; i=0; while true; do i=$((i+1)); echo "steady $i"; sleep 0.05; done',
        restart_policy={"Name": "always"},
    )

    async def has(container: Any, count: int) -> bool:
        return len(await documents_of(es_server, container.id)) >= count

    deadline = time.monotonic() + 30
    while not (await has(before, 200) and await has(steady, 20)):
        assert time.monotonic() < deadline, "nothing shipped from the private daemon"
        await asyncio.sleep(0.3)

    await asyncio.to_thread(daemon.stop)
    await asyncio.sleep(2)
    status, body = await asyncio.to_thread(shipper.http_get, "/readyz")
    assert status == 503 and "Docker" in body, (status, body)
    shipper.assert_alive()

    await asyncio.to_thread(daemon.start)
    after = await run(
        client, 'for i in $(seq 1 100); do echo "after $i"; echo "after err $i" >&2; done'
    )
    await asyncio.to_thread(after.wait, timeout=60)
    await asyncio.sleep(2)  # the restarted steady container writes a few more lines
    await asyncio.to_thread(steady.stop, timeout=5)

    for container in (before, steady, after):
        await assert_shipped_exactly_once(es_server, client, container.id, timeout_s=60)
    steady_lines = len(await documents_of(es_server, steady.id))
    assert steady_lines > 20
    assert await asyncio.to_thread(shipper.metric, "shipper_docker_reconnects_total") >= 1
    status, _ = await asyncio.to_thread(shipper.http_get, "/readyz")
    assert status == 200
    assert await asyncio.to_thread(shipper.stop) == 0
