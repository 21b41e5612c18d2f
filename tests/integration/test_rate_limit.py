"""Per-container rate limits against the real Docker daemon.

`pause`: an over-quota container is read at its quota's pace and every line of it arrives
exactly once, while a quiet neighbour's lines are not held up (measured as in
test_fairness.py). `drop`: what Elasticsearch holds is the kept lines plus one summary record
per interval, and the counts match everywhere (summaries, metric, /status); under `kill -9`
the outcome is the same as the decisions the limiter makes on the stream read once, so a
restart neither duplicates a summary nor miscounts.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from typing import Any

import docker
import pytest

from shipper.model import LogRecord
from shipper.sources.quota import DropLimiter, QuotaSpec
from tests.integration.helpers import (
    DATA_STREAM,
    assert_shipped_exactly_once,
    documents_of,
    epoch_ns,
    epoch_s,
    wait_for_documents,
)
from tests.support.docker_logs import Line, lines_of_documents, reference_lines

pytestmark = pytest.mark.docker

S = 1_000_000_000
QUIET_LINES = 20


def _config(action: str, read_mode: str | None, **rule: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "elasticsearch": {"retry_max_backoff_s": 1.0},
        "processing": {
            "rate_limit": {
                "summary_interval_s": 2,
                "rules": [{"id": "noisy", "labels": ["quota=on"], "action": action, **rule}],
            }
        },
    }
    if read_mode is not None:
        config["docker"] = {"read_mode": read_mode}
    return config


async def _status(shipper: Any) -> dict[str, Any]:
    _, body = await asyncio.to_thread(shipper.http_get, "/status")
    return dict(json.loads(body))


def _row(status: dict[str, Any], container_id: str) -> dict[str, int]:
    (row,) = [r for r in status["containers"] if r["id"] == container_id]
    return dict(row["accounting"])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("read_mode", ["api", None], ids=["api", "default"])
async def test_pause_reads_an_over_quota_container_at_its_pace_and_loses_nothing(
    es_server: Any,
    docker_client: docker.DockerClient,
    containers: Any,
    shipper_factory: Any,
    read_mode: str | None,
) -> None:
    rate, burst_s = 400, 1
    shipper = shipper_factory(
        es_server.url, _config("pause", read_mode, lines_per_s=rate, burst_s=burst_s)
    )
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    # 3000 lines at once, both streams: 7.5 s of quota. Nothing of it can be read before
    # `began`, which bounds what may have been shipped by any moment.
    began = time.time()
    noisy = await asyncio.to_thread(
        containers,
        'for s in $(seq 1 6); do for i in $(seq 1 250); do echo "noisy $s $i"; '
        'echo "noisy err $s $i" >&2; done; done',
        labels={"quota": "on"},
    )
    quiet = await asyncio.to_thread(
        containers,
        f'sleep 1; for i in $(seq 1 {QUIET_LINES}); do echo "quiet $i"; sleep 0.2; done',
    )
    # While the noisy one is held back: the quiet one's lines arrive as they are written,
    # and the noisy one's arrive no faster than its quota.
    seen: dict[str, float] = {}
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + 60
    while len(seen) < QUIET_LINES and time.monotonic() < deadline:
        query = {"term": {"container.id": quiet.id}}
        for document in await es_server.probe().search_hits(DATA_STREAM, query, QUIET_LINES):
            seen.setdefault(document["_source"]["message"], time.time())
        noisy_count = await es_server.probe().count(
            DATA_STREAM, {"term": {"container.id": noisy.id}}
        )
        samples.append((time.time(), noisy_count))
        await asyncio.sleep(0.05)
    documents = await wait_for_documents(es_server, quiet.id, QUIET_LINES)
    written = {d["_source"]["message"]: epoch_s(d["_source"]["@timestamp"]) for d in documents}
    delays = sorted(seen[message] - written[message] for message in written)
    assert delays[-1] < 1.5, f"quiet lines waited up to {delays[-1]:.2f}s: {delays}"
    while samples[-1][1] < 3000 and time.monotonic() < deadline:
        count = await es_server.probe().count(DATA_STREAM, {"term": {"container.id": noisy.id}})
        samples.append((time.time(), count))
        await asyncio.sleep(0.05)
    for at, count in samples:
        allowed = rate * burst_s + rate * (at - began)
        assert count <= allowed, f"{count} lines shipped {at - began:.1f}s in: {samples}"
    # ... and it was held back: all of it took at least the quota's time.
    all_at = next(at for at, count in samples if count == 3000)
    assert all_at - began >= (3000 - rate * burst_s) / rate, samples
    await assert_shipped_exactly_once(es_server, docker_client, noisy.id, timeout_s=60)
    assert await asyncio.to_thread(shipper.metric, "shipper_rate_limit_pause_seconds_total") > 2
    row = _row(await _status(shipper), noisy.id)
    assert (row["lines_read"], row["buffered"], row["stored"], row["dropped_by_quota"]) == (
        3000,
        3000,
        3000,
        0,
    )
    assert await asyncio.to_thread(shipper.stop) == 0


def _drop_writer(bursts: int) -> str:
    # Bursts of 300 lines a second apart: 100 lines/s with a burst of 100 keeps about a
    # third of each; the last burst's interval is summed up once the container is quiet.
    return (
        f'for s in $(seq 1 {bursts}); do for i in $(seq 1 300); do echo "burst $s line $i"; '
        "done; sleep 1; done"
    )


def _split(documents: list[dict[str, Any]]) -> tuple[list[Line], list[dict[str, Any]]]:
    summaries = [d for d in documents if "rate_limited" in d["_source"]["log"].get("flags", [])]
    kept = [d for d in documents if d not in summaries]
    return lines_of_documents(kept), summaries


def _check_summaries(summaries: list[dict[str, Any]], interval_s: int = 2) -> int:
    """Each summary is one interval's, where the interval's drops were; returns the total."""
    windows = [int(d["_id"][:16], 16) for d in summaries]
    assert len(set(windows)) == len(windows), "two summaries of one interval"
    total = 0
    for document, window in zip(summaries, windows, strict=True):
        source = document["_source"]
        start, end = epoch_ns(source["event"]["start"]), epoch_ns(source["event"]["end"])
        assert window % (interval_s * S) == 0 and window <= start <= end < window + interval_s * S
        assert source["@timestamp"] == source["event"]["start"]
        assert document["_id"].endswith("r0") and source["shipper"]["rate_limit"]["rule"] == "noisy"
        dropped = source["shipper"]["rate_limit"]["dropped_lines"]
        assert dropped > 0 and f"{dropped} line(s)" in source["message"]
        total += dropped
    return total


async def _wait_settled(es_server: Any, container_id: str, lines: int, timeout_s: float) -> Any:
    """The container's documents once kept lines and summaries account for every line."""
    deadline = time.monotonic() + timeout_s
    while True:
        documents = await documents_of(es_server, container_id)
        kept, summaries = _split(documents)
        if (
            len(kept)
            + sum(d["_source"]["shipper"]["rate_limit"]["dropped_lines"] for d in summaries)
            >= lines
            or time.monotonic() > deadline
        ):
            await asyncio.sleep(1.0)  # a duplicate would show up now
            return await documents_of(es_server, container_id)
        await asyncio.sleep(0.25)


@pytest.mark.timeout(120)
async def test_drop_ships_the_kept_lines_and_one_summary_per_interval_and_the_counts_match(
    es_server: Any, docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    shipper = shipper_factory(es_server.url, _config("drop", None, lines_per_s=100, burst_s=1))
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    noisy = await asyncio.to_thread(containers, _drop_writer(5), labels={"quota": "on"})
    assert (await asyncio.to_thread(noisy.wait, timeout=60))["StatusCode"] == 0
    lines = await asyncio.to_thread(reference_lines, docker_client, noisy.id)
    assert len(lines) == 1500
    documents = await _wait_settled(es_server, noisy.id, len(lines), 30)
    kept, summaries = _split(documents)
    assert len({d["_id"] for d in documents}) == len(documents)
    assert not set(kept) - set(lines), "a kept line is not one the container wrote"
    dropped = _check_summaries(summaries)
    assert len(kept) + dropped == len(lines)
    span_s = (epoch_ns(lines[-1].timestamp) - epoch_ns(lines[0].timestamp)) / S
    assert 100 <= len(kept) <= 100 + 100 * span_s + 1 and dropped > 500
    metric = await asyncio.to_thread(
        shipper.metric, "shipper_records_dropped_total", {"reason": "rate_limit"}
    )
    assert metric == dropped
    status = await _status(shipper)
    row = _row(status, noisy.id)
    assert row["dropped_by_quota"] == dropped and row["summaries"] == len(summaries)
    assert row["buffered"] == row["stored"] == len(kept) + len(summaries)
    assert row["lines_read"] == len(lines) and status["accounting"]["problems"] == []
    assert await asyncio.to_thread(shipper.stop) == 0


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_drop_under_kill_9_decides_as_on_the_stream_read_once(
    es_server: Any, docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    """The limiter's state is saved with the checkpoint: lines read again after a crash are
    decided again from the state as of the position, so the kept lines and the summaries are
    exactly those of one uninterrupted reading, each stored once."""
    seed = int(os.environ.get("SHIPPER_TEST_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    print(f"seed: {seed} (replay with SHIPPER_TEST_SEED={seed})")
    shipper = shipper_factory(es_server.url, _config("drop", None, lines_per_s=100, burst_s=1))
    noisy = await asyncio.to_thread(containers, _drop_writer(8), labels={"quota": "on"})
    for _ in range(4):
        shipper.start()
        await asyncio.sleep(rng.uniform(1.0, 3.0))
        await asyncio.to_thread(shipper.kill)
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    assert (await asyncio.to_thread(noisy.wait, timeout=60))["StatusCode"] == 0
    lines = await asyncio.to_thread(reference_lines, docker_client, noisy.id)
    documents = await _wait_settled(es_server, noisy.id, len(lines), 60)
    kept, summaries = _split(documents)
    assert len({d["_id"] for d in documents}) == len(documents), f"seed {seed}"
    # One uninterrupted reading of the same stream, by the limiter itself.
    limiter = DropLimiter(QuotaSpec("noisy", 100.0, None, 1.0, "drop"), 2 * S, None)
    records = [
        LogRecord(noisy.id, epoch_ns(line.timestamp), "stdout", 0, line.message) for line in lines
    ]
    decision = limiter.decide(records)
    last = limiter.due_summary(1 << 62, 0)
    expected_summaries = [*decision.summaries, *([last] if last else [])]
    assert sorted(kept, key=lambda x: x.timestamp) == [
        Line(line.timestamp, line.stream, line.message)
        for line, record in zip(lines, records, strict=True)
        if record in decision.kept
    ], f"seed {seed}"
    got = sorted(
        (int(d["_id"][:16], 16), d["_source"]["shipper"]["rate_limit"]["dropped_lines"])
        for d in summaries
    )
    wanted = [(s.window_start_ns, s.lines) for s in expected_summaries]
    assert got == wanted, f"seed {seed}: {got} != {wanted}\n{shipper.stderr()[-30000:]}"
    assert _check_summaries(summaries) + len(kept) == len(lines)
    assert await asyncio.to_thread(shipper.stop) == 0
