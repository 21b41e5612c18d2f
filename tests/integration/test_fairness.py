"""A container that writes 1000x more than another must not delay the other's lines beyond the
bound the README states (about the batch in flight plus flush_interval_s, while the shipper
keeps up), in both read modes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import docker
import pytest

from tests.integration.helpers import (
    DATA_STREAM,
    assert_shipped_exactly_once,
    epoch_s,
    wait_for_documents,
)

pytestmark = pytest.mark.docker

QUIET_LINES = 20


@pytest.mark.parametrize("read_mode", ["api", "files"])
async def test_a_noisy_neighbour_does_not_hold_up_a_quiet_container(
    es_server: Any,
    docker_client: docker.DockerClient,
    containers: Any,
    shipper_factory: Any,
    read_mode: str,
) -> None:
    shipper = shipper_factory(es_server.url, {"docker": {"read_mode": read_mode}})
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    # 1000 lines for each quiet one, in bursts, for as long as the quiet one writes.
    noisy = containers(
        'for s in $(seq 1 40); do for i in $(seq 1 500); do echo "noisy $s $i"; done; '
        "sleep 0.1; done"
    )
    quiet = containers(
        f'sleep 0.5; for i in $(seq 1 {QUIET_LINES}); do echo "quiet $i"; sleep 0.2; done'
    )
    # When each quiet line was first seen in Elasticsearch: a cheap search for the quiet
    # container only, so that measuring does not compete with the 20,000 noisy documents.
    seen: dict[str, float] = {}
    deadline = time.monotonic() + 60
    while len(seen) < QUIET_LINES and time.monotonic() < deadline:
        query = {"term": {"container.id": quiet.id}}
        for document in await es_server.probe().search_hits(DATA_STREAM, query, QUIET_LINES):
            seen.setdefault(document["_source"]["message"], time.time())
        await asyncio.sleep(0.05)
    documents = await wait_for_documents(es_server, quiet.id, QUIET_LINES)
    written = {d["_source"]["message"]: epoch_s(d["_source"]["@timestamp"]) for d in documents}
    delays = sorted(seen[message] - written[message] for message in written)
    # flush_interval_s is 0.1 s in the tests; a batch in flight and polling add a little.
    assert delays[-1] < 1.5, f"quiet lines waited up to {delays[-1]:.2f}s: {delays}"
    await asyncio.to_thread(noisy.wait, timeout=120)
    await assert_shipped_exactly_once(es_server, docker_client, quiet.id)
    await assert_shipped_exactly_once(es_server, docker_client, noisy.id, timeout_s=120)
    assert await asyncio.to_thread(shipper.stop) == 0
