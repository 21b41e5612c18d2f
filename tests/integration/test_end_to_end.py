"""The shipper, as a process, following a real Docker daemon into the Elasticsearch test server.

The main cases run in both read modes: `api` (the logs API: `follow`, `since=`, frames, the
raw TTY stream) and `files` (the json-file logs read directly, what `auto` picks on a host
where /var/lib/docker/containers is readable, as on CI). Records and `_id`s must be the same
either way, so every case compares the documents with Docker's own logs API.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.integration.helpers import (
    assert_all_shipped_exactly_once,
    assert_shipped_exactly_once,
    checkpoints,
    cut_line_command,
    cut_line_expected,
    documents_of,
    epoch_ns,
    epoch_s,
    first_arrival,
    lines_taken,
    wait_for_documents,
)
from tests.support.docker_logs import reference_lines

pytestmark = pytest.mark.docker

READ_MODES = pytest.mark.parametrize("read_mode", ["api", "files"])
# Logged once per container when read_mode files has to use the API after all.
FALLBACK_MESSAGE = "its logs are read through the Docker API"


async def wait_exit(container: Any, timeout_s: float = 60) -> int:
    result = await asyncio.to_thread(container.wait, timeout=timeout_s)
    return int(result["StatusCode"])


async def wait_restarts(container: Any, count: int, timeout_s: float = 60) -> None:
    """Until the restart policy has run the container `count` more times and it exited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        await asyncio.to_thread(container.reload)
        if container.attrs["RestartCount"] == count and container.status == "exited":
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{container.short_id}: {container.attrs['RestartCount']} restarts")


async def start_shipper(
    shipper_factory: Any, es_server: Any, read_mode: str, name: str = "shipper"
) -> Any:
    shipper = shipper_factory(es_server.url, {"docker": {"read_mode": read_mode}}, name=name)
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    return shipper


async def stop_shipper(shipper: Any, read_mode: str) -> None:
    assert await asyncio.to_thread(shipper.stop) == 0, shipper.stderr()[-3000:]
    if read_mode == "files":
        # Every container here uses json-file: none may have been read through the API.
        assert FALLBACK_MESSAGE not in shipper.stderr()


@READ_MODES
async def test_every_line_of_every_kind_of_container_arrives_exactly_once(
    es_server: Any,
    docker_client: docker.DockerClient,
    containers: Any,
    shipper_factory: Any,
    read_mode: str,
) -> None:
    # Written before the shipper ever ran: one exited, one still running.
    exited_before = containers(
        'for i in $(seq 1 30); do echo "before out $i"; echo "before err $i" >&2; done'
    )
    running_before = containers(
        'for i in $(seq 1 20); do echo "tick $i"; sleep 0.05; done; sleep 600'
    )
    await wait_exit(exited_before)

    shipper = await start_shipper(shipper_factory, es_server, read_mode)

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
    if read_mode == "api":
        # Only the API reads the local driver's logs (read_mode files would fall back to it).
        cases["invalid_utf8_local"] = containers(
            "printf 'bad \\377\\376 bytes\\n'; printf '\\300\\n' >&2",
            log_config={"type": "local"},
        )
    for name, container in cases.items():
        if name != "restarted":
            await wait_exit(container)
    # The restart policy runs it three times: once, then two retries.
    await wait_restarts(cases["restarted"], 2)

    every = {"exited_before": exited_before, "running_before": running_before, **cases}
    results = {}
    for name, container in every.items():
        results[name] = await assert_shipped_exactly_once(es_server, docker_client, container.id)

    assert len(results["exited_before"][0]) == 60
    assert [line.message for line in results["running_before"][0]] == [
        f"tick {i}" for i in range(1, 21)
    ]
    assert len(results["interleaved"][0]) == 400
    assert {line.stream for line in results["interleaved"][0]} == {"stdout", "stderr"}
    long_docs = results["long_line"][1]
    assert sorted(len(d["_source"]["message"]) for d in long_docs) == [5, 100000]
    assert [line.message for line in results["empty_lines"][0]] == ["", "", "middle", "", ""]
    # json-file stores the bytes as U+FFFD already: what every reader gets, unflagged.
    assert sorted((line.stream, line.message) for line in results["invalid_utf8"][0]) == [
        ("stderr", "\ufffd"),
        ("stdout", "bad \ufffd\ufffd bytes"),
    ]
    if read_mode == "api":
        # The local driver keeps the bytes as written (json-file already stored U+FFFD):
        # the shipper replaces them and says so.
        assert sorted((line.stream, line.message) for line in results["invalid_utf8_local"][0]) == [
            ("stderr", "\ufffd"),
            ("stdout", "bad \ufffd\ufffd bytes"),
        ]
        for document in results["invalid_utf8_local"][1]:
            assert document["_source"]["log"]["flags"] == ["invalid_utf8"]
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

    await stop_shipper(shipper, read_mode)


@READ_MODES
async def test_a_new_container_first_line_is_searchable_within_two_seconds(
    es_server: Any,
    docker_client: docker.DockerClient,
    containers: Any,
    shipper_factory: Any,
    read_mode: str,
) -> None:
    shipper = await start_shipper(shipper_factory, es_server, read_mode)
    await asyncio.sleep(1.0)  # the shipper is up and listening to events
    container = await asyncio.to_thread(containers, "echo hello-latency; sleep 600")
    documents, seen_at = await first_arrival(es_server, container.id)
    (line,) = await asyncio.to_thread(reference_lines, docker_client, container.id)
    assert [d["_source"]["message"] for d in documents] == ["hello-latency"]
    # From the container's first write (Docker stamps the line as it reads it) to the
    # document's arrival in the index, the polling step included.
    latency_s = seen_at - epoch_s(line.timestamp)
    assert 0 < latency_s < 2.0, latency_s
    await stop_shipper(shipper, read_mode)


async def test_two_hundred_containers_at_once_through_the_logs_api(
    es_server: Any,
    docker_client: docker.DockerClient,
    containers: Any,
    shipper_factory: Any,
    tmp_path: Path,
) -> None:
    """200 long-lived `follow` streams at once: no connection pool may cap them.

    Every container writes a line, then waits (for a file the test creates once all 200 are
    followed) and writes two more: those can only arrive if all 200 streams are open at the
    same time. Each container then marks that it has written them (a file next to the
    trigger), so the comparison with Docker's logs starts only once every line is there.
    """
    count = 200
    trigger = tmp_path / "trigger"
    trigger.mkdir()
    shipper = await start_shipper(shipper_factory, es_server, "api")

    def run(n: int) -> Any:
        return containers(
            f'echo "c{n} early"; while [ ! -e /trigger/go ]; do sleep 1; done; '
            f'echo "c{n} late out"; echo "c{n} late err" >&2; touch /trigger/done-{n}; '
            "sleep 600",
            volumes={str(trigger): {"bind": "/trigger", "mode": "rw"}},
        )

    def remove(container: Any) -> None:
        container.remove(force=True, v=True)

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=8) as pool:
        fleet = await asyncio.gather(*(loop.run_in_executor(pool, run, n) for n in range(count)))
    try:
        deadline = time.monotonic() + 90
        followed = 0.0
        while time.monotonic() < deadline:
            followed = await asyncio.to_thread(shipper.metric, "shipper_containers_followed")
            if followed >= count:
                break
            await asyncio.sleep(0.5)
        assert followed == count
        (trigger / "go").touch()
        deadline = time.monotonic() + 30
        while len(list(trigger.glob("done-*"))) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert len(list(trigger.glob("done-*"))) == count  # every late line is written
        expected = await assert_all_shipped_exactly_once(
            es_server, docker_client, [c.id for c in fleet], timeout_s=60
        )
        for n, container in enumerate(fleet):
            assert sorted((line.stream, line.message) for line in expected[container.id]) == [
                ("stderr", f"c{n} late err"),
                ("stdout", f"c{n} early"),
                ("stdout", f"c{n} late out"),
            ]
        await stop_shipper(shipper, "api")
    finally:
        # In parallel: the fixture's one-by-one removal of 200 containers takes half a minute.
        with ThreadPoolExecutor(max_workers=8) as pool:
            await asyncio.gather(
                *(loop.run_in_executor(pool, remove, container) for container in fleet),
                return_exceptions=True,
            )


@READ_MODES
@pytest.mark.parametrize("tty", [False, True], ids=["plain", "tty"])
async def test_a_line_cut_by_a_stop_arrives_once_in_every_run(
    es_server: Any,
    docker_client: docker.DockerClient,
    containers: Any,
    shipper_factory: Any,
    read_mode: str,
    tty: bool,
) -> None:
    """Each run ends in a line without a newline; the next run's lines must not join it.

    One container is restarted by its restart policy while the shipper runs. The other is
    started again by hand, and the shipper is killed (-9) between two of its runs: the
    restarted shipper resumes from a checkpoint that has the cut line in its window, so it
    re-reads that line directly followed by the next run's lines, and must skip it.
    """
    shipper = await start_shipper(shipper_factory, es_server, read_mode)
    by_policy = containers(
        cut_line_command(tty),
        tty=tty,
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 2},
    )
    by_hand = containers(cut_line_command(tty), tty=tty)
    per_run = 2 if tty else 4

    # Run 1 of by_hand, shipped and checkpointed up to and including its cut line(s).
    assert await wait_exit(by_hand) == 1
    run1 = await asyncio.to_thread(reference_lines, docker_client, by_hand.id)
    assert sorted((line.stream, line.message) for line in run1) == cut_line_expected(tty, 1)
    assert len(await wait_for_documents(es_server, by_hand.id, per_run)) == per_run
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        saved = checkpoints(shipper).get(by_hand.id)
        if saved is not None and lines_taken(saved, run1) == per_run:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"run 1 never fully checkpointed: {checkpoints(shipper)}")
    # The resume point is at or before the cut line(s): resuming re-reads them (the
    # checkpoint keeps a slack window behind the newest line, skipped by count).
    cut_at = min(epoch_ns(line.timestamp) for line in run1 if " cut" in line.message)
    assert saved["since_ns"] <= cut_at and saved["skip"] >= 1, saved

    await asyncio.to_thread(shipper.kill)
    await asyncio.to_thread(by_hand.start)  # run 2, while no shipper runs
    assert await wait_exit(by_hand) == 1
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    # Runs 1 and 2 are in, each line once: the cut lines of run 1 were re-read and skipped.
    expected, _ = await assert_shipped_exactly_once(
        es_server, docker_client, by_hand.id, timeout_s=20
    )
    assert sorted((line.stream, line.message) for line in expected) == cut_line_expected(tty, 2)
    await asyncio.to_thread(by_hand.start)  # run 3, followed live again
    assert await wait_exit(by_hand) == 1
    await wait_restarts(by_policy, 2)

    for container in (by_policy, by_hand):
        expected, _ = await assert_shipped_exactly_once(
            es_server, docker_client, container.id, timeout_s=20
        )
        assert sorted((line.stream, line.message) for line in expected) == cut_line_expected(tty, 3)
    await stop_shipper(shipper, read_mode)


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
