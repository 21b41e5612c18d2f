"""Selection is decided again when a followed container starts a new run (issue 5: a rename
or relabel takes effect at the container's next start), in both read modes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import docker
import pytest

from tests.conftest import RUN_ID, TEST_LABEL
from tests.integration.helpers import documents_of, wait_for_documents

pytestmark = pytest.mark.docker

# Each run counts itself in a file kept in the container's own filesystem across restarts.
RUNS = (
    'trap "exit 0" TERM; n=$(cat /tmp/runs 2>/dev/null || echo 0); n=$((n + 1)); '
    'echo $n > /tmp/runs; echo "run $n first"; echo "run $n second" >&2; '
    "while true; do sleep 0.1; done"
)


@pytest.mark.parametrize("read_mode", ["api", "files"])
async def test_a_container_renamed_out_of_the_selection_stops_shipping_at_its_restart(
    es_server: Any,
    containers: Any,
    shipper_factory: Any,
    docker_client: docker.DockerClient,
    read_mode: str,
) -> None:
    suffix = f"{read_mode}-{int(time.time() * 1000)}"
    shipper = shipper_factory(
        es_server.url,
        {
            "docker": {"read_mode": read_mode},
            "processing": {
                "selection": {
                    "include": [{"labels": [f"{TEST_LABEL}={RUN_ID}"]}],
                    "exclude": [{"name": "quiet-*"}],
                }
            },
        },
    )
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    container = containers(RUNS, name=f"loud-{suffix}")
    first = await wait_for_documents(es_server, container.id, 2)
    assert sorted(d["_source"]["message"] for d in first) == ["run 1 first", "run 1 second"]

    # Renamed while followed: nothing changes for the run in progress...
    await asyncio.to_thread(container.rename, f"quiet-{suffix}")
    await asyncio.sleep(0.5)
    # ...but its next run is not shipped.
    await asyncio.to_thread(container.restart, timeout=5)
    logs = b""
    deadline = time.monotonic() + 20
    while b"run 2 second" not in logs and time.monotonic() < deadline:
        logs = await asyncio.to_thread(container.logs, stdout=True, stderr=True)
        await asyncio.sleep(0.1)
    assert b"run 2 first" in logs and b"run 2 second" in logs
    await asyncio.sleep(2.0)  # time enough to ship it, were it shipped
    after = await documents_of(es_server, container.id)
    assert sorted(d["_source"]["message"] for d in after) == ["run 1 first", "run 1 second"]
    assert shipper.metric("shipper_containers_followed") == 0
    assert await asyncio.to_thread(shipper.stop) == 0
