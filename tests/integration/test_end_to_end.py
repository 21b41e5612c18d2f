"""The shipper, as a process, following a real Docker daemon into the Elasticsearch test server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import docker
import pytest

from tests.integration.helpers import (
    assert_shipped_exactly_once,
    documents_of,
    wait_for_documents,
)
from tests.support.docker_logs import reference_lines

pytestmark = pytest.mark.docker


async def wait_exit(container: Any, timeout_s: float = 60) -> None:
    await asyncio.to_thread(container.wait, timeout=timeout_s)


async def test_every_line_of_every_kind_of_container_arrives_exactly_once(
    es_server: Any, docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    # Written before the shipper ever ran: one exited, one still running.
    exited_before = containers(
        'for i in $(seq 1 30); do echo "before out $i"; echo "before err $i" >&2; done'
    )
    running_before = containers(
        'for i in $(seq 1 20); do echo "tick $i"; sleep 0.05; done; sleep 600'
    )
    await wait_exit(exited_before)

    shipper = shipper_factory(es_server.url)
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)

    cases = {
        "interleaved": containers(
            'for i in $(seq 1 200); do echo "out $i"; echo "err $i" >&2; done'
        ),
        "long_line": containers("head -c 100000 /dev/zero | tr '\\0' a; echo; echo after"),
        "empty_lines": containers("echo; echo; echo middle; echo; printf '\\n'"),
        "invalid_utf8": containers("printf 'bad \\377\\376 bytes\\n'; printf '\\300\\n' >&2"),
        "non_ascii": containers("echo 'grüße 日本語 🚀 ∑'; echo 'ünïcödé' >&2"),
        "tty": containers("echo tty line; echo second line", tty=True),
        "no_final_newline": containers("echo first; printf 'no newline at the end'"),
        "labels": containers(
            "echo labelled",
            labels={"com.example.team": "core", "a": "top", "a.b": "nested", "evil": '"}{\\'},
        ),
        "restarted": containers(
            "echo run; exit 1", restart_policy={"Name": "on-failure", "MaximumRetryCount": 2}
        ),
    }
    for name, container in cases.items():
        if name != "restarted":
            await wait_exit(container)
    # The restart policy runs it three times: once, then two retries.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        cases["restarted"].reload()
        if cases["restarted"].attrs["RestartCount"] == 2 and cases["restarted"].status == "exited":
            break
        await asyncio.sleep(0.2)

    every = {"exited_before": exited_before, "running_before": running_before, **cases}
    results = {}
    for name, container in every.items():
        results[name] = await assert_shipped_exactly_once(es_server, docker_client, container.id)

    assert len(results["exited_before"][0]) == 60
    assert len(results["interleaved"][0]) == 400
    assert {line.stream for line in results["interleaved"][0]} == {"stdout", "stderr"}
    long_docs = results["long_line"][1]
    assert sorted(len(d["_source"]["message"]) for d in long_docs) == [5, 100000]
    assert [line.message for line in results["empty_lines"][0]] == ["", "", "middle", "", ""]
    assert {line.message for line in results["non_ascii"][0]} == {"grüße 日本語 🚀 ∑", "ünïcödé"}
    assert [line.message for line in results["tty"][0]] == ["tty line", "second line"]
    assert [line.message for line in results["no_final_newline"][0]] == [
        "first",
        "no newline at the end",
    ]
    assert [line.message for line in results["restarted"][0]] == ["run", "run", "run"]

    labelled = results["labels"][1][0]["_source"]
    assert labelled["container"]["labels"] == {
        "com_example_team": "core",
        "a": "top",
        "a_b": "nested",
        "evil": '"}{\\',
        "shipper_test": labelled["container"]["labels"]["shipper_test"],
        "org_opencontainers_image_title": "shipper-test-busybox",  # the image's own label
    }
    container = every["labels"]
    assert labelled["container"]["id"] == container.id
    assert labelled["container"]["name"] == container.name
    assert labelled["container"]["image"]["name"] == "shipper-test-busybox:latest"
    assert labelled["container"]["runtime"] == "docker"
    assert labelled["host"]["name"] == docker_client.info()["Name"]
    assert labelled["log"]["iostream"] == "stdout"

    assert await asyncio.to_thread(shipper.stop) == 0


async def test_a_new_container_first_line_is_searchable_within_two_seconds(
    es_server: Any, docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    shipper = shipper_factory(es_server.url)
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    await asyncio.sleep(1.0)  # the shipper is up and listening to events
    container = containers("echo hello-latency; sleep 600")
    documents = await wait_for_documents(es_server, container.id, 1, timeout_s=10)
    seen_at = time.time()
    (line,) = await asyncio.to_thread(reference_lines, docker_client, container.id)
    written_at = _epoch(line.timestamp)
    assert documents and documents[0]["_source"]["message"] == "hello-latency"
    assert seen_at - written_at < 2.0 + 0.5  # +0.5: the polling step above
    assert await asyncio.to_thread(shipper.stop) == 0


async def test_two_hundred_containers_at_once(
    es_server: Any, docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    shipper = shipper_factory(es_server.url)
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    fleet = await asyncio.gather(
        *(
            asyncio.to_thread(
                containers, f'for i in $(seq 1 5); do echo "c{n} line $i"; sleep 1; done; sleep 600'
            )
            for n in range(200)
        )
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and shipper.metric("shipper_containers_followed") < 200:
        await asyncio.sleep(0.5)
    assert shipper.metric("shipper_containers_followed") >= 200
    await asyncio.sleep(6)  # every container has written its five lines
    documents = await es_server.probe().fetch_all("logs-docker-default")
    by_container: dict[str, list[str]] = {}
    for document in documents:
        by_container.setdefault(document["_source"]["container"]["id"], []).append(
            document["_source"]["message"]
        )
    for n, container in enumerate(fleet):
        assert sorted(by_container.get(container.id, [])) == [f"c{n} line {i}" for i in range(1, 6)]
    assert await asyncio.to_thread(shipper.stop) == 0


def _epoch(rfc3339: str) -> float:
    from datetime import datetime

    seconds, _, fraction = rfc3339.rstrip("Z").partition(".")
    base = datetime.fromisoformat(seconds + "+00:00").timestamp()
    return base + float("0." + (fraction or "0"))


async def test_documents_of_other_containers_are_not_mixed_in(
    es_server: Any, docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    shipper = shipper_factory(es_server.url)
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    first = containers("echo one")
    second = containers("echo two")
    await wait_exit(first)
    await wait_exit(second)
    await assert_shipped_exactly_once(es_server, docker_client, first.id)
    docs = await documents_of(es_server, second.id)
    assert [d["_source"]["message"] for d in docs] == ["two"]
    assert await asyncio.to_thread(shipper.stop) == 0
