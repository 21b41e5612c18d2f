"""Fault tests: the shipper killed, Elasticsearch gone, the buffer full, the disk full.

Every test runs the real `python -m shipper run` against the real Docker daemon and the
Elasticsearch test server, and ends by comparing what Elasticsearch holds with an
independent reading of Docker's logs API: every line exactly once.

The test server runs in this test's event loop, so everything that blocks (the Docker SDK,
waiting for a process, scraping /metrics) goes through `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.conftest import RUN_ID, TEST_LABEL
from tests.es_server.fixtures import require_fault_injection
from tests.integration.helpers import (
    DATA_STREAM,
    assert_documents_are_exactly,
    assert_shipped_exactly_once,
    checkpoints,
    documents_of,
)
from tests.support.docker_logs import reference_lines
from tests.support.shipper_process import ShipperProcess, deep_merge

pytestmark = pytest.mark.docker

# Only this session's containers: other test runs share the daemon, and metrics such as
# lines read must count ours alone. Fast retries: after an outage the shipper must not sit
# out a 30 s backoff.
BASE: dict[str, Any] = {
    "processing": {"selection": {"include": [{"labels": [f"{TEST_LABEL}={RUN_ID}"]}]}},
    "elasticsearch": {"retry_max_backoff_s": 1.0},
}


def make_shipper(factory: Any, es_server: Any, extra: dict[str, Any] | None = None) -> Any:
    return factory(es_server.url, deep_merge(BASE, extra or {}))


def read_mode_config(read_mode: str | None) -> dict[str, Any]:
    """None: the default (`auto`: the json-file logs where readable, as on CI as root)."""
    return {} if read_mode is None else {"docker": {"read_mode": read_mode}}


def writer(tag: str, seconds: float, pause_s: float = 0.02, pad: int = 0) -> str:
    """A shell loop writing stdout, stderr and multi-line bursts for `seconds`, then exiting.

    Bursts put several lines into one write, so several lines can share a timestamp and the
    checkpoint's skip count is exercised.
    """
    padding = "x" * pad
    return (
        f"end=$(( $(date +%s) + {int(seconds)} )); i=0; "
        f'while [ "$(date +%s)" -lt "$end" ]; do i=$((i+1)); '
        f'echo "{tag} out $i {padding}"; echo "{tag} err $i" >&2; '
        f'if [ $((i % 10)) = 0 ]; then printf "{tag} burst $i a\\n{tag} burst $i b\\n{tag} burst $i c\\n"; fi; '
        f"sleep {pause_s}; done; echo '{tag} done'"
    )


async def run_container(containers: Any, command: str, **kwargs: Any) -> Any:
    return await asyncio.to_thread(containers, command, **kwargs)


async def wait_exit(container: Any, timeout_s: float = 120) -> None:
    result = await asyncio.to_thread(container.wait, timeout=timeout_s)
    assert result["StatusCode"] == 0, result


async def metric(shipper: ShipperProcess, name: str, labels: dict[str, str] | None = None) -> float:
    return await asyncio.to_thread(shipper.metric, name, labels)


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], timeout_s: float, what: str, step_s: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(step_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


async def start_ready(shipper: ShipperProcess) -> None:
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)


async def stop_cleanly(shipper: ShipperProcess) -> None:
    assert await asyncio.to_thread(shipper.stop) == 0, shipper.stderr()[-3000:]


# ----------------------------------------------------------------------------- 1. crash loop


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("read_mode", ["api", None], ids=["api", "default"])
async def test_killed_at_random_moments_every_line_arrives_exactly_once(
    es_server: Any,
    docker_client: docker.DockerClient,
    containers: Any,
    shipper_factory: Any,
    read_mode: str | None,
) -> None:
    """Both read modes resume differently: the logs API with `since=` and the skip count,
    the json-file reader by finding the same position in the files themselves."""
    seed = int(os.environ.get("SHIPPER_TEST_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    print(f"crash loop seed: {seed} (replay with SHIPPER_TEST_SEED={seed})")
    shipper = make_shipper(shipper_factory, es_server, read_mode_config(read_mode))
    writers = [await run_container(containers, writer(f"c{n}", seconds=32)) for n in range(3)]
    started_at = time.monotonic()
    kills = 0
    late = None
    shipped_during_loop = 0
    while kills < 15 or time.monotonic() - started_at < 30:
        shipper.start()
        # From "still importing" to "well into shipping": any moment may be the last.
        await asyncio.sleep(rng.uniform(0.2, 3.0))
        await asyncio.to_thread(shipper.kill)
        kills += 1
        if kills == 6:
            # Starts and exits while no shipper runs: found by listing at the next start.
            late = await run_container(containers, 'for i in $(seq 1 50); do echo "late $i"; done')
        assert time.monotonic() - started_at < 90, f"crash loop too slow (seed {seed})"
    shipped_during_loop = len(await es_server.probe().fetch_all(DATA_STREAM))
    assert kills >= 15
    # The last start is left alone.
    await start_ready(shipper)
    assert late is not None
    for container in [*writers, late]:
        await wait_exit(container)
    for container in [*writers, late]:
        await assert_shipped_exactly_once(es_server, docker_client, container.id, timeout_s=60)
    # The loop itself shipped (not only the final, peaceful run).
    assert shipped_during_loop > 0, f"nothing shipped during the crash loop (seed {seed})"
    await stop_cleanly(shipper)


# ------------------------------------------------------------ 2. Elasticsearch gone for 60 s


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("read_mode", ["api", None], ids=["api", "default"])
async def test_elasticsearch_unreachable_for_a_minute_loses_and_doubles_nothing(
    es_server: Any,
    docker_client: docker.DockerClient,
    containers: Any,
    shipper_factory: Any,
    read_mode: str | None,
) -> None:
    """In both read modes: reading goes on during the outage, through 70 s of `follow`
    streams held open (api) or of files tailed (default), while the buffer grows."""
    require_fault_injection(es_server)
    shipper = make_shipper(shipper_factory, es_server, read_mode_config(read_mode))
    await start_ready(shipper)
    writers = [
        await run_container(containers, writer(f"o{n}", seconds=70, pause_s=0.05)) for n in range(2)
    ]

    async def some_shipped() -> bool:
        return len(await documents_of(es_server, writers[0].id)) >= 10

    await wait_until(some_shipped, 30, "the first documents")
    outage_began = time.monotonic()
    es_server.refuse_connections(60)
    await asyncio.sleep(1)
    samples: list[tuple[float, float]] = []
    # Samples every 5 s while the outage lasts; the last one well before its end, so a slow
    # scrape on a loaded machine cannot land after the server is back.
    outage_end = outage_began + 45
    while time.monotonic() < outage_end:
        records = await metric(shipper, "shipper_buffer_records")
        size = await metric(shipper, "shipper_buffer_bytes")
        samples.append((records, size))
        await asyncio.sleep(5)
    assert not es_server.running  # every sample above was taken during the outage
    # The buffer grew during the outage, sample after sample.
    assert samples[0][0] >= 0 and samples[-1][0] > samples[0][0] + 100, samples
    assert samples[-1][1] > samples[0][1], samples
    assert all(b[0] >= a[0] for a, b in itertools.pairwise(samples)), samples
    # The outage lasts 60 s from its start; allow for a slow restart of the listener.
    back_within_s = outage_began + 60 + 15 - time.monotonic()
    await wait_until(lambda: _true(es_server.running), back_within_s, "the server to listen again")

    for container in writers:
        await wait_exit(container)
    for container in writers:
        await assert_shipped_exactly_once(es_server, docker_client, container.id, timeout_s=60)

    async def drained() -> bool:
        return (
            await metric(shipper, "shipper_buffer_records") == 0
            and await metric(shipper, "shipper_buffer_bytes") == 0
        )

    await wait_until(drained, 20, "the buffer to drain")
    assert await metric(shipper, "shipper_dead_lettered_total") == 0
    await stop_cleanly(shipper)


async def _true(value: bool) -> bool:
    return value


# --------------------------------------------------------- 3. buffer cap hit during an outage


@pytest.mark.timeout(180)
async def test_full_buffer_pauses_reading_and_drops_nothing(
    es_server: Any, docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    require_fault_injection(es_server)
    cap = 64 * 1024
    shipper = make_shipper(
        shipper_factory,
        es_server,
        {
            "storage": {"max_bytes": cap, "segment_max_bytes": 16 * 1024},
        },
    )
    await start_ready(shipper)
    es_server.faults.fail_requests(503, seconds=3600)
    total = 2000
    container = await run_container(
        containers,
        f'for i in $(seq 1 {total}); do echo "capped line $i {"y" * 100}"; '
        "[ $((i % 100)) = 0 ] && sleep 0.1; done; true",
    )
    await wait_exit(container)

    async def cap_reached() -> bool:
        return await metric(shipper, "shipper_buffer_bytes") > cap / 2

    await wait_until(cap_reached, 30, "the buffer to fill")
    # Reading has paused: the count of lines read no longer moves.
    await asyncio.sleep(2)
    read_before = await metric(shipper, "shipper_lines_read_total")
    await asyncio.sleep(3)
    read_after = await metric(shipper, "shipper_lines_read_total")
    assert read_before == read_after, (read_before, read_after)
    assert 0 < read_after < total
    # Bounded by the cap; one batch (a chunk read from Docker) is accepted whole into an
    # empty buffer, however large, so the bound carries one batch of slack.
    assert await metric(shipper, "shipper_buffer_bytes") <= 2 * cap
    # Docker kept every line meanwhile.
    assert len(await asyncio.to_thread(reference_lines, docker_client, container.id)) == total

    es_server.faults.reset()
    await assert_shipped_exactly_once(es_server, docker_client, container.id, timeout_s=90)
    assert await metric(shipper, "shipper_lines_read_total") >= total
    assert await metric(shipper, "shipper_dead_lettered_total") == 0
    await stop_cleanly(shipper)


# --------------------------------------------- 4. container removed while Elasticsearch is down


@pytest.mark.timeout(120)
async def test_lines_of_a_container_removed_during_an_outage_still_arrive(
    es_server: Any, docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    require_fault_injection(es_server)
    shipper = make_shipper(shipper_factory, es_server)
    await start_ready(shipper)
    es_server.faults.fail_requests(503, seconds=3600)
    container = await run_container(
        containers,
        'for i in $(seq 1 300); do echo "doomed $i"; echo "doomed err $i" >&2; done; sleep 600',
    )

    async def all_read() -> bool:
        return await metric(shipper, "shipper_lines_read_total") >= 600

    await wait_until(all_read, 30, "every line to be read")
    expected = await asyncio.to_thread(reference_lines, docker_client, container.id)
    assert len(expected) == 600
    assert await documents_of(es_server, container.id) == []
    await asyncio.to_thread(container.remove, force=True)
    # Its position goes with it; its records stay in the buffer.
    await wait_until(
        lambda: _true(container.id not in checkpoints(shipper)), 10, "the checkpoint to go"
    )
    assert await metric(shipper, "shipper_buffer_records") >= 600

    es_server.faults.reset()
    await assert_documents_are_exactly(es_server, container.id, expected, timeout_s=60)
    await stop_cleanly(shipper)


# ------------------------------------------------------------------ 6. tiny filesystem fills


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Any:
    """An 8 MiB tmpfs under tmp_path, unmounted at teardown."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mountpoint = tmp_path / "tinyfs"
    mountpoint.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mountpoint)], check=True
    )
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(path: Path, leave_bytes: int = 0) -> int:
    """Writes a ballast file until the filesystem is full, then gives `leave_bytes` back;
    returns its size."""
    written = 0
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as ballast:
        while True:
            try:
                written += ballast.write(chunk) or 0
            except OSError:
                break
        while True:  # and the last few bytes
            try:
                written += ballast.write(b"\0" * 512) or 0
            except OSError:
                break
    if leave_bytes:
        written -= leave_bytes
        os.truncate(path, written)
    return written


@pytest.mark.timeout(180)
async def test_disk_full_pauses_reading_and_resumes_by_itself(
    es_server: Any,
    docker_client: docker.DockerClient,
    containers: Any,
    shipper_factory: Any,
    tiny_filesystem: Path,
) -> None:
    require_fault_injection(es_server)
    storage = tiny_filesystem / "storage"
    shipper = make_shipper(
        shipper_factory,
        es_server,
        {"storage": {"path": str(storage), "segment_max_bytes": 256 * 1024}},
    )
    await start_ready(shipper)
    es_server.faults.fail_requests(503, seconds=3600)
    ballast = tiny_filesystem / "ballast"
    # Room for checkpoint saves (a few hundred bytes each), not for the buffer's ~1 MB of
    # lines, so the buffer is what hits ENOSPC. (With the disk full to the last byte, a
    # checkpoint save could fail first: that pauses reading as well, before the buffer is
    # ever written, and the buffer's own ENOSPC handling would go untested.)
    assert await asyncio.to_thread(fill, ballast, 128 * 1024) > 4 * 1024 * 1024
    total = 1500
    container = await run_container(
        containers, f'for i in $(seq 1 {total}); do echo "no room for line $i {"z" * 200}"; done'
    )
    await wait_exit(container)

    async def disk_full_seen() -> bool:
        return await metric(shipper, "shipper_disk_full_total", {"what": "buffer"}) > 0

    await wait_until(disk_full_seen, 30, "the buffer to hit ENOSPC")
    await asyncio.sleep(1.5)
    read_before = await metric(shipper, "shipper_lines_read_total")
    await asyncio.sleep(3)
    assert await metric(shipper, "shipper_lines_read_total") == read_before < total
    shipper.assert_alive()
    assert "no space left on device" in shipper.stderr()

    # Space comes back: reading resumes with no one's help, and the output drains.
    await asyncio.to_thread(ballast.unlink)
    es_server.faults.reset()
    await assert_shipped_exactly_once(es_server, docker_client, container.id, timeout_s=90)
    assert await metric(shipper, "shipper_buffer_corrupt_segments_total") == 0
    await stop_cleanly(shipper)
    # Nothing on disk was damaged: a fresh start recovers the buffer without setting
    # anything aside, and ships nothing twice.
    corrupt = storage / "buffer" / "corrupt"
    assert not corrupt.exists() or not any(corrupt.iterdir())
    await start_ready(shipper)
    await asyncio.sleep(2)
    assert await metric(shipper, "shipper_buffer_corrupt_segments_total") == 0
    await assert_shipped_exactly_once(es_server, docker_client, container.id, timeout_s=30)
    await stop_cleanly(shipper)


# -------------------------------------------------- 7. SIGTERM while Elasticsearch is slow


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_sigterm_with_a_slow_cluster_exits_in_time_and_resumes_exactly(
    es_server: Any, docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    require_fault_injection(es_server)
    shutdown_timeout_s = 3.0
    shipper = make_shipper(
        shipper_factory,
        es_server,
        {
            "shutdown_timeout_s": shutdown_timeout_s,
            # Small batches, one at a time: a slow cluster falls behind the writers.
            "elasticsearch": {
                "retry_max_backoff_s": 1.0,
                "batch_max_docs": 20,
                "max_concurrent_requests": 1,
            },
        },
    )
    writers = [
        await run_container(containers, writer(f"t{n}", seconds=16, pause_s=0.05)) for n in range(2)
    ]
    await start_ready(shipper)

    async def connected() -> bool:
        return "Connected to Elasticsearch." in shipper.stderr()

    await wait_until(connected, 20, "the shipper to connect")
    # The cluster turns slow: every request now takes a second.
    es_server.faults.delay_s = 1.0
    await asyncio.sleep(5)
    assert await metric(shipper, "shipper_buffer_records") > 20  # the cluster is behind
    began = time.monotonic()
    exit_code = await asyncio.to_thread(shipper.stop)
    took = time.monotonic() - began
    assert exit_code == 0, shipper.stderr()[-3000:]
    # The drain gets shutdown_timeout_s; a request in flight may finish (1 s server delay).
    assert took < shutdown_timeout_s + 3.0, took
    assert "Shutdown timeout reached" in shipper.stderr()
    saved = checkpoints(shipper)
    for container in writers:
        assert saved[container.id]["since_ns"] > 0, saved

    es_server.faults.delay_s = 0.0
    await start_ready(shipper)
    for container in writers:
        await wait_exit(container)
    for container in writers:
        await assert_shipped_exactly_once(es_server, docker_client, container.id, timeout_s=60)
    await stop_cleanly(shipper)


# ---------------------------------------------- 8. checkpoints of destroyed containers go away


@pytest.mark.timeout(120)
async def test_checkpoints_of_destroyed_containers_are_removed(
    es_server: Any, docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    shipper = make_shipper(shipper_factory, es_server)
    await start_ready(shipper)
    removed_live = await run_container(containers, 'for i in $(seq 1 20); do echo "a $i"; done')
    removed_while_away = await run_container(
        containers, 'for i in $(seq 1 20); do echo "b $i"; done'
    )
    kept = await run_container(containers, 'for i in $(seq 1 20); do echo "c $i"; done')
    every = [removed_live, removed_while_away, kept]
    expected = {}
    for container in every:
        await wait_exit(container)
        expected[container.id] = (
            await assert_shipped_exactly_once(es_server, docker_client, container.id)
        )[0]

    async def all_saved() -> bool:
        return {c.id for c in every} <= set(checkpoints(shipper))

    await wait_until(all_saved, 10, "every checkpoint to be saved")

    await asyncio.to_thread(removed_live.remove)

    async def live_one_gone() -> bool:
        return removed_live.id not in checkpoints(shipper)

    await wait_until(live_one_gone, 10, "the removed container's checkpoint to go")
    assert {removed_while_away.id, kept.id} <= set(checkpoints(shipper))

    await stop_cleanly(shipper)
    await asyncio.to_thread(removed_while_away.remove)
    await start_ready(shipper)

    async def away_one_gone() -> bool:
        return removed_while_away.id not in checkpoints(shipper)

    await wait_until(away_one_gone, 10, "the checkpoint of the one removed while away to go")
    assert kept.id in checkpoints(shipper)
    # Nothing was sent again or lost on the way.
    for container in every:
        await assert_documents_are_exactly(es_server, container.id, expected[container.id])
    await stop_cleanly(shipper)


# ------------------------------------------------------------------ rotation risk warning


@pytest.mark.timeout(120)
async def test_a_backlog_near_dockers_rotation_limit_is_warned_about(
    es_server: Any, docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    require_fault_injection(es_server)
    shipper = make_shipper(
        shipper_factory,
        es_server,
        {"storage": {"max_bytes": 32 * 1024, "segment_max_bytes": 8 * 1024}},
    )
    await start_ready(shipper)
    es_server.faults.fail_requests(503, seconds=3600)
    # 100 KiB of log files in all; the writer adds ~25 KB/s while reading is paused.
    container = await run_container(
        containers,
        f'while true; do echo "rotating {"r" * 120}"; sleep 0.005; done',
        log_config=docker.types.LogConfig(
            type="json-file", config={"max-size": "50k", "max-file": "2"}
        ),
    )

    async def warned() -> bool:
        return await metric(shipper, "shipper_rotation_risk_total") >= 1

    await wait_until(warned, 30, "the rotation risk warning")
    assert "rotation" in shipper.stderr()
    assert container.short_id in shipper.stderr()
    with contextlib.suppress(docker.errors.NotFound):
        await asyncio.to_thread(container.remove, force=True)
    es_server.faults.reset()
    await stop_cleanly(shipper)


# ----------------------------------------------------------------- 8. the disk fails (EIO)


@pytest.mark.timeout(180)
async def test_a_failed_fsync_stops_the_shipper_and_a_restart_loses_nothing(
    es_server: Any,
    docker_client: docker.DockerClient,
    containers: Any,
    shipper_factory: Any,
    tmp_path: Path,
) -> None:
    shipper = make_shipper(shipper_factory, es_server)
    trigger = tmp_path / "fsync-fails"
    shipper.start(launcher=["-m", "tests.support.failing_fsync", str(trigger)])
    await asyncio.to_thread(shipper.wait_ready_http)
    container = await run_container(containers, writer("eio", seconds=6))

    async def some_shipped_and_saved() -> bool:
        shipped = len(await documents_of(es_server, container.id)) >= 50
        return shipped and container.id in checkpoints(shipper)

    await wait_until(some_shipped_and_saved, 30, "the first lines and their checkpoint")
    trigger.touch()
    assert shipper.process is not None
    code = await asyncio.to_thread(shipper.process.wait, timeout=30)
    stderr = shipper.stderr()
    assert code == 1, stderr[-3000:]
    assert "durable failed; stopping" in stderr and "Input/output error" in stderr, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    # No checkpoint was written after the first failed fsync: a later fsync that succeeds
    # proves nothing about the pages the failed one lost.
    failed_at = int((tmp_path / "fsync-fails.failed").read_text())
    assert (shipper.storage / "checkpoints.json").stat().st_mtime_ns <= failed_at
    # Started again on a working disk, it resumes from the last saved checkpoint.
    await wait_exit(container)
    await start_ready(shipper)
    await assert_shipped_exactly_once(es_server, docker_client, container.id)
    await stop_cleanly(shipper)
