"""The shipper against a real Podman service (`podman system service`, rootful), as a user
runs it there: `docker.host` set to Podman's socket, nothing else configured.

Containers are created through Podman's Docker-compatible API with the docker SDK (see
tests/support/podman.py) and write through conmon into k8s-file logs. What Elasticsearch
holds is compared with those files, read independently: every line exactly once, byte for
byte, stamped with the time conmon recorded for its first part, as Podman's logs API gives
it (to the second up to Podman 5.7, see docs/podman.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from shipper.docker.api import DockerClient
from shipper.docker.frames import PODMAN_STREAM, LogStreamDecoder
from tests.integration.helpers import (
    DATA_STREAM,
    assert_shipped_exactly_once,
    checkpoints,
    documents_of,
)
from tests.integration.test_faults import writer
from tests.integration.test_operations import run_cli
from tests.support.podman import (
    PrivatePodman,
    cri_time_ns,
    journal_reference_for,
    reference_lines_for,
)
from tests.support.shipper_process import ShipperProcess

pytestmark = pytest.mark.podman


def podman_shipper(factory: Any, es_server: Any, podman: PrivatePodman) -> ShipperProcess:
    """Configured as the README says for Podman: its socket, and the defaults otherwise
    (read_mode auto: the API must be chosen, whatever inspect says of the log driver)."""
    return factory(
        es_server.url,
        {"docker": {"host": podman.host}, "elasticsearch": {"retry_max_backoff_s": 1.0}},
    )


async def wait_exit(container: Any, timeout_s: float = 120) -> int:
    result = await asyncio.to_thread(container.wait, timeout=timeout_s)
    return int(result["StatusCode"])


async def assert_exactly_once(
    es_server: Any, podman: PrivatePodman, container: Any, timeout_s: float = 60
) -> tuple[list[Any], list[dict[str, Any]]]:
    return await assert_shipped_exactly_once(
        es_server,
        podman.client,
        container.id,
        timeout_s=timeout_s,
        reference=reference_lines_for(podman.precision_ns),
    )


async def test_every_line_of_every_kind_of_podman_container_arrives_exactly_once(
    es_server: Any, podman_service: PrivatePodman, podman_containers: Any, shipper_factory: Any
) -> None:
    run = podman_containers
    # Written before the shipper ever ran.
    exited_before = run(
        'for i in $(seq 1 30); do echo "before out $i"; echo "before err $i" >&2; done'
    )
    await wait_exit(exited_before)

    shipper = podman_shipper(shipper_factory, es_server, podman_service)
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    cases = {
        "interleaved": run('for i in $(seq 1 200); do echo "out $i"; echo "err $i" >&2; done'),
        # conmon reads 8 KiB at a time: 13 parts, each with its own time, and 3 on stderr.
        "long_lines": run(
            "head -c 100000 /dev/zero | tr '\\0' a; echo; "
            "head -c 20000 /dev/zero | tr '\\0' b >&2; echo >&2; echo after"
        ),
        # One line written in pieces over two seconds: its parts carry different seconds.
        "slow_line": run(
            'printf "begun "; sleep 1.2; printf "continued "; sleep 1; echo ended; echo next'
        ),
        # Podman's TTY: 4 KiB parts, "\r\n" endings, and a line written in two pieces.
        "tty": run(
            "echo tty line; printf 'tty part '; sleep 1.1; echo rest; "
            "head -c 10000 /dev/zero | tr '\\0' y; echo",
            tty=True,
        ),
        "no_final_newline": run("echo first; printf 'no newline at the end'"),
        "stderr_only": run("echo 'to stderr' >&2; printf 'grüße 日本語 🚀\\n' >&2"),
        "compose": run(
            "echo composed",
            labels={"com.docker.compose.project": "shop", "com.docker.compose.service": "web"},
        ),
        # As podman-compose 1.x labels its containers (it writes Docker's labels too; an
        # older one only the project): the same fields either way.
        "podman_compose": run(
            "echo podman composed",
            labels={"io.podman.compose.project": "shop", "io.podman.compose.service": "db"},
        ),
        "restarted": run('echo "run $(date +%s%N)"'),
    }
    # Podman answers a logs request for it with 500 ("not logging output"; Docker: 501):
    # said once, not retried forever.
    no_logs = run("echo unlogged", log_config={"type": "none"})
    for container in [*cases.values(), no_logs]:
        await wait_exit(container)
    await asyncio.to_thread(cases["restarted"].start)  # a second run, appended to its log
    await wait_exit(cases["restarted"])

    every = {"exited_before": exited_before, **cases}
    results = {}
    for name, container in every.items():
        results[name] = await assert_exactly_once(es_server, podman_service, container)
        for document in results[name][1]:
            source = document["_source"]
            assert source["container"]["runtime"] == "podman", name
            assert source["container"]["id"] == container.id
            assert source["container"]["name"] == container.name
            assert source["container"]["image"]["name"] == "localhost/shipper-test-busybox:latest"

    assert len(results["exited_before"][0]) == 60
    assert len(results["interleaved"][0]) == 400
    assert sorted((line.stream, len(line.message)) for line in results["long_lines"][0]) == [
        ("stderr", 20000),
        ("stdout", 5),
        ("stdout", 100000),
    ]
    assert [line.message for line in results["slow_line"][0]] == ["begun continued ended", "next"]
    assert [line.message for line in results["tty"][0]] == [
        "tty line",
        "tty part rest",
        "y" * 10000,
    ]
    assert [line.message for line in results["no_final_newline"][0]] == [
        "first",
        "no newline at the end",
    ]
    assert [line.message for line in results["stderr_only"][0]] == ["to stderr", "grüße 日本語 🚀"]
    assert len(results["restarted"][0]) == 2
    for name, service in (("compose", "web"), ("podman_compose", "db")):
        (document,) = results[name][1]
        assert document["_source"]["docker"]["compose"] == {"project": "shop", "service": service}
    labels = results["compose"][1][0]["_source"]["container"]["labels"]
    assert labels["com_docker_compose_project"] == "shop"
    assert labels["org_opencontainers_image_title"] == "shipper-test-busybox"

    # Podman says "remove" where Docker says "destroy": the position goes all the same.
    removed = every["interleaved"]
    assert removed.id in checkpoints(shipper)
    await asyncio.to_thread(removed.remove)
    deadline = time.monotonic() + 10
    while removed.id in checkpoints(shipper):
        assert time.monotonic() < deadline, "the removed container's checkpoint stayed"
        await asyncio.sleep(0.2)

    log = shipper.stderr()
    (connected,) = [
        json.loads(line) for line in log.splitlines() if "Connected to the Docker Engine" in line
    ]
    assert connected["runtime"] == "podman" and connected["engine"].startswith("Podman 4.")
    assert connected["api_version"] == "1.41"
    said = [line for line in log.splitlines() if "keeps no logs" in line]
    assert len(said) == 1 and f'"container_id":"{no_logs.id[:12]}"' in said[0], log[-3000:]
    assert not await documents_of(es_server, no_logs.id)
    assert "json-file logs are not visible here" not in log  # auto: the API, quietly
    assert await asyncio.to_thread(shipper.stop) == 0, shipper.stderr()[-3000:]


async def test_podman_journald_logs_arrive_exactly_once(
    es_server: Any,
    podman_journald_service: PrivatePodman,
    podman_journald_containers: Any,
    shipper_factory: Any,
) -> None:
    """The journald log driver, with a journald of the service's own (this machine runs
    none, see tests/support/podman.py): the same lines, through the same logs endpoint,
    read back from the journal as the reference."""
    run = podman_journald_containers
    before = run('for i in $(seq 1 20); do echo "before $i"; echo "before err $i" >&2; done')
    await wait_exit(before)
    shipper = podman_shipper(shipper_factory, es_server, podman_journald_service)
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    cases = {
        "before": before,
        "interleaved": run('for i in $(seq 1 100); do echo "out $i"; echo "err $i" >&2; done'),
        "long_line": run("head -c 30000 /dev/zero | tr '\\0' a; echo; echo after"),
        "slow_line": run('printf "begun "; sleep 1.2; echo ended; echo next'),
        "tty": run("echo tty line; printf 'tty part '; sleep 1.1; echo rest", tty=True),
        "no_final_newline": run("echo first; printf 'no newline at the end'"),
    }
    for container in cases.values():
        await wait_exit(container)
    results = {}
    for name, container in cases.items():
        results[name] = await assert_shipped_exactly_once(
            es_server,
            podman_journald_service.client,
            container.id,
            reference=journal_reference_for(podman_journald_service),
        )
        assert {d["_source"]["container"]["runtime"] for d in results[name][1]} == {"podman"}
    assert len(results["before"][0]) == 40
    assert len(results["interleaved"][0]) == 200
    assert sorted(len(line.message) for line in results["long_line"][0]) == [5, 30000]
    assert [line.message for line in results["slow_line"][0]] == ["begun ended", "next"]
    assert [line.message for line in results["tty"][0]] == ["tty line", "tty part rest"]
    assert [line.message for line in results["no_final_newline"][0]] == [
        "first",
        "no newline at the end",
    ]
    assert await asyncio.to_thread(shipper.stop) == 0, shipper.stderr()[-3000:]


def slow_writer(tag: str, seconds: float) -> str:
    """Lines written in two pieces 0.6 s apart, and 9000-byte lines (two conmon parts):
    lines whose parts carry different times, which a resume must never cut."""
    return (
        f"end=$(( $(date +%s) + {int(seconds)} )); i=0; "
        f'while [ "$(date +%s)" -lt "$end" ]; do i=$((i+1)); '
        f'printf "{tag} $i begun "; sleep 0.6; echo "{tag} $i ended"; '
        f"head -c 9000 /dev/zero | tr '\\0' z; echo \" {tag} long $i\"; done; echo '{tag} done'"
    )


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_killed_at_random_moments_every_podman_line_arrives_exactly_once(
    es_server: Any, podman_service: PrivatePodman, podman_containers: Any, shipper_factory: Any
) -> None:
    """Podman resumes through `since` (exclusive, one nanosecond early) and the skip count,
    on second-precision timestamps, with lines whose parts carry different times."""
    seed = int(os.environ.get("SHIPPER_TEST_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    print(f"crash loop seed: {seed} (replay with SHIPPER_TEST_SEED={seed})")
    shipper = podman_shipper(shipper_factory, es_server, podman_service)
    writers = [
        await asyncio.to_thread(podman_containers, writer(f"c{n}", seconds=32)) for n in range(2)
    ]
    writers.append(await asyncio.to_thread(podman_containers, slow_writer("s", seconds=32)))
    writers.append(
        await asyncio.to_thread(podman_containers, slow_writer("t", seconds=32), tty=True)
    )
    started_at = time.monotonic()
    kills = 0
    while kills < 15 or time.monotonic() - started_at < 30:
        shipper.start()
        if kills % 5 == 4 and time.monotonic() - started_at < 25:
            # Now and then, while the writers write, a run that lives until it has shipped
            # more, then a moment: on a loaded machine a start can outlast every pause.
            shipped = len(await es_server.probe().fetch_all(DATA_STREAM))
            deadline = time.monotonic() + 20
            while len(await es_server.probe().fetch_all(DATA_STREAM)) <= shipped:
                assert time.monotonic() < deadline, f"a run shipped nothing (seed {seed})"
                await asyncio.sleep(0.1)
        await asyncio.sleep(rng.uniform(0.2, 3.0))
        await asyncio.to_thread(shipper.kill)
        kills += 1
        assert time.monotonic() - started_at < 120, f"crash loop too slow (seed {seed})"
    shipped_during_loop = len(await es_server.probe().fetch_all(DATA_STREAM))
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    for container in writers:
        assert await wait_exit(container) == 0
    for container in writers:
        lines, _ = await assert_exactly_once(es_server, podman_service, container)
        assert lines[-1].message.endswith(" done")
    assert shipped_during_loop > 0, f"nothing shipped during the crash loop (seed {seed})"
    assert await asyncio.to_thread(shipper.stop) == 0, shipper.stderr()[-3000:]


async def test_a_logs_read_from_a_lines_exact_time_includes_that_line(
    podman_service: PrivatePodman, podman_containers: Any
) -> None:
    """Podman's `since` is exclusive and a Unix-time `since` is parsed as a float: asked for
    a line's exact nanosecond (conmon's own, from the k8s-file), the client must get it."""

    container = podman_containers("echo one; echo two >&2; sleep 1.1; echo three")
    await wait_exit(container)
    client = podman_service.client
    assert client is not None
    log_path = client.api.inspect_container(container.id)["LogPath"]
    log = Path(log_path).read_text().splitlines()  # a few lines, read at once
    stamps = [cri_time_ns(line.split(" ")[0]) for line in log]
    docker = DockerClient(podman_service.host)
    try:
        for index, since_ns in enumerate(stamps):
            decoder = LogStreamDecoder(container.id, tty=False, dialect=PODMAN_STREAM)
            records = []
            async for chunk in docker.logs(container.id, since_ns=since_ns, follow=False):
                records += decoder.feed(chunk)
            records += decoder.finish()
            expected = ["one", "two", "three"][index:]
            assert [r.message for r in records] == expected, (index, since_ns)
        assert docker.engine is not None and docker.engine.runtime == "podman"
    finally:
        await docker.close()


async def test_a_podman_backfill_ships_the_ids_the_agent_ships(
    es_server: Any, podman_service: PrivatePodman, podman_containers: Any, shipper_factory: Any
) -> None:
    """`shipper backfill` reads Podman the same way (engine asked, its endpoint, its split
    lines): the agent started afterwards finds every line stored already, under its ids."""
    container = podman_containers(
        'for i in $(seq 1 20); do echo "history $i"; echo "history err $i" >&2; done; '
        "head -c 20000 /dev/zero | tr '\\0' q; echo"
    )
    await wait_exit(container)
    shipper = podman_shipper(shipper_factory, es_server, podman_service)
    result = await asyncio.to_thread(
        run_cli,
        "backfill",
        "--since",
        "1h",
        "--container",
        container.name,
        "--config",
        str(shipper.config_path),
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    lines, documents = await assert_exactly_once(es_server, podman_service, container)
    assert len(lines) == 41
    backfilled = {d["_id"] for d in documents}

    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    deadline = time.monotonic() + 30
    while container.id not in checkpoints(shipper):  # read to its end, and saved
        assert time.monotonic() < deadline, shipper.stderr()[-3000:]
        await asyncio.sleep(0.2)
    assert await asyncio.to_thread(shipper.stop) == 0, shipper.stderr()[-3000:]
    _, again = await assert_exactly_once(es_server, podman_service, container)
    assert {d["_id"] for d in again} == backfilled
