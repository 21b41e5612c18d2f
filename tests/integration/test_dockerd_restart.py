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
    # Ready means subscribed to the daemon's events: the containers below are seen starting.
    await wait_for_readyz(shipper, (200, "ready\n"), 30)

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

    # This daemon runs only this test's containers, so the Docker metrics are known exactly:
    # two containers created and started since the shipper subscribed, both followed.
    assert await asyncio.to_thread(docker_events, shipper) == {"create": 2, "start": 2}
    assert await asyncio.to_thread(shipper.metric, "shipper_containers_followed") == 2
    assert await asyncio.to_thread(shipper.http_get, "/readyz") == (200, "ready\n")

    await asyncio.to_thread(daemon.stop)
    # Docker is the only problem (Elasticsearch is up): exactly that reason.
    await wait_for_readyz(shipper, (503, "not ready\n- Docker API not reachable\n"), 15)
    await asyncio.sleep(1.0)
    assert await asyncio.to_thread(shipper.http_get, "/readyz") == (
        503,
        "not ready\n- Docker API not reachable\n",
    )  # and it stays so while the daemon is down
    assert await asyncio.to_thread(shipper.http_get, "/healthz") == (200, "ok\n")
    shipper.assert_alive()

    await asyncio.to_thread(daemon.start)
    await wait_for_readyz(shipper, (200, "ready\n"), 30)
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
    assert await asyncio.to_thread(shipper.http_get, "/readyz") == (200, "ready\n")
    # Every container has stopped: none is followed any more.
    deadline = time.monotonic() + 15
    while await asyncio.to_thread(shipper.metric, "shipper_containers_followed") != 0:
        assert time.monotonic() < deadline, "followers still counted after every container stopped"
        await asyncio.sleep(0.3)
    assert await asyncio.to_thread(shipper.stop) == 0


def docker_events(shipper: Any) -> dict[str, float]:
    """shipper_docker_events_total by action, as /metrics shows it."""
    _, body = shipper.http_get("/metrics")
    counts = {}
    for line in body.splitlines():
        if line.startswith("shipper_docker_events_total{"):
            labels, _, value = line.rpartition(" ")
            action = labels.split('action="', 1)[1].split('"', 1)[0]
            counts[action] = float(value)
    return counts


async def wait_for_readyz(shipper: Any, expected: tuple[int, str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    answer = await asyncio.to_thread(shipper.http_get, "/readyz")
    while answer != expected:
        assert time.monotonic() < deadline, f"/readyz answers {answer}, not {expected}"
        await asyncio.sleep(0.2)
        answer = await asyncio.to_thread(shipper.http_get, "/readyz")
