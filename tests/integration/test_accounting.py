"""Accounting that adds up, per container, under faults: `kill -9` at random moments, an
Elasticsearch outage at start (the buffer recovered from the killed run), 429 items, a
document Elasticsearch can never index, multiline joining, a drop rule and a drop quota.

Both invariants must hold in every /status taken while all that happens, and at the end:

  buffered + recovered = stored + already_stored + dead_lettered + waiting
  lines_read = (buffered - summaries) + joined + dropped_by_rule + dropped_by_quota + held

and the numbers must be true, not only consistent: `stored` equals the documents the
container gained in Elasticsearch during the last run, `dead_lettered` the documents refused,
and what Elasticsearch holds is every line (or event, or kept line and summary) once.
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

from tests.conftest import RUN_ID, TEST_LABEL
from tests.es_server.fixtures import require_fault_injection
from tests.integration.helpers import (
    DATA_STREAM,
    assert_documents_are_exactly,
    documents_of,
)
from tests.support.docker_logs import Line, lines_of_documents, reference_lines

pytestmark = pytest.mark.docker

DEAD_LETTERS = "logs-shipper.deadletter-default"
CONFIG: dict[str, Any] = {
    "elasticsearch": {"retry_max_backoff_s": 1.0},
    "metrics": {"per_container": True},
    "processing": {
        "selection": {"include": [{"labels": [f"{TEST_LABEL}={RUN_ID}"]}]},
        "drop": [{"id": "health", "message_pattern": "^health"}],
        "rate_limit": {
            "summary_interval_s": 2,
            "rules": [
                {
                    "id": "noisy",
                    "labels": ["quota=on"],
                    "lines_per_s": 100,
                    "burst_s": 1,
                    "action": "drop",
                }
            ],
        },
    },
}
PLAIN = (
    "end=$(( $(date +%s) + 24 )); i=0; "
    'while [ "$(date +%s)" -lt "$end" ]; do i=$((i+1)); '
    'echo "plain out $i"; echo "plain err $i" >&2; sleep 0.02; done'
)
# Events of three lines (continuations start with a space), and health checks to drop.
MULTI = (
    "end=$(( $(date +%s) + 24 )); i=0; "
    'while [ "$(date +%s)" -lt "$end" ]; do i=$((i+1)); '
    'printf "event $i\\n  at frame a\\n  at frame b\\n"; '
    'if [ $((i % 3)) = 0 ]; then echo "health ok $i"; fi; sleep 0.05; done'
)
BURSTS = (
    'for s in $(seq 1 20); do for i in $(seq 1 200); do echo "burst $s $i"; done; sleep 1; done'
)


def _events(lines: list[Line]) -> list[tuple[str, str]]:
    """What multiline joining (continuation: a leading space) and the drop rule make."""
    events: list[list[Line]] = []
    for line in lines:
        if line.message.startswith(" ") and events:
            events[-1].append(line)
        else:
            events.append([line])
    joined = [(e[0].timestamp, "\n".join(line.message for line in e)) for e in events]
    return [(ts, message) for ts, message in joined if not message.startswith("health")]


async def _status(shipper: Any) -> dict[str, Any] | None:
    try:
        code, body = await asyncio.to_thread(shipper.http_get, "/status")
    except OSError:
        return None
    return dict(json.loads(body)) if code == 200 else None


def _kept_and_dropped(documents: list[dict[str, Any]]) -> int:
    """Lines a drop quota's documents account for: kept lines plus summaries' counts."""
    return sum(
        (d["_source"].get("shipper") or {}).get("rate_limit", {}).get("dropped_lines", 1)
        for d in documents
    )


def _open_interval(status: dict[str, Any], container_id: str) -> bool:
    """Whether the container's quota still counts drops whose summary is not written."""
    (row,) = [r for r in status["containers"] if r["id"] == container_id]
    return bool((row.get("rate_limit") or {}).get("dropped_since_summary"))


async def _count(es: Any, container_id: str) -> int:
    return int(await es.probe().count(DATA_STREAM, {"term": {"container.id": container_id}}))


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_the_accounting_adds_up_under_kill_9_an_outage_429s_and_dead_letters(
    es_server: Any, docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    server = require_fault_injection(es_server)
    seed = int(os.environ.get("SHIPPER_TEST_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    print(f"seed: {seed} (replay with SHIPPER_TEST_SEED={seed})")
    shipper = shipper_factory(server.url, CONFIG)
    plain = await asyncio.to_thread(containers, PLAIN)
    multi = await asyncio.to_thread(containers, MULTI, labels={"shipper.multiline.pattern": "^\\s"})
    noisy = await asyncio.to_thread(containers, BURSTS, labels={"quota": "on"})
    writers = [plain, multi, noisy]

    # 1. kill -9 at random moments.
    for _ in range(4):
        shipper.start()
        await asyncio.sleep(rng.uniform(1.5, 3.5))
        await asyncio.to_thread(shipper.kill)

    # 2. What Elasticsearch holds before the last run; then the last run starts during an
    # outage, with what the killed run left in the buffer.
    before = {c.id: await _count(server, c.id) for c in writers}
    server.refuse_connections(6)
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    problems: list[str] = []
    sampled = 0
    stop_sampling = asyncio.Event()

    async def sample() -> None:
        nonlocal sampled
        while not stop_sampling.is_set():
            status = await _status(shipper)
            if status is not None:
                sampled += 1
                problems.extend(status["accounting"]["problems"])
            await asyncio.sleep(0.3)

    sampler = asyncio.create_task(sample())
    await asyncio.sleep(7)
    # 3. Back, but rejecting a third of the items with 429 for a while.
    server.faults.reject_items(fraction=0.3, seed=seed)
    await asyncio.sleep(5)
    server.faults.reset()
    # 4. A line Elasticsearch can never index.
    server.faults.mapping_error = lambda source: source.get("message") == "poison 3"
    poison = await asyncio.to_thread(containers, 'for i in $(seq 1 6); do echo "poison $i"; done')
    for container in [*writers, poison]:
        result = await asyncio.to_thread(container.wait, timeout=90)
        assert result["StatusCode"] == 0

    async def settled() -> dict[str, Any]:
        """Everything shipped, the quota's last summary too (written once the interval is
        over by the clock), and nothing waiting or held."""
        deadline = time.monotonic() + 60
        while True:
            status = await _status(shipper)
            totals = status["accounting"]["totals"] if status else {}
            rows = {
                r["id"]: r["accounting"]
                for r in (status or {}).get("containers", [])
                if "accounting" in r
            }
            noisy_row = rows.get(noisy.id)
            poison_row = rows.get(poison.id)
            if (
                status is not None
                and status["buffer"]["records"] == 0
                and totals["waiting"] == 0
                and totals["held"] == 0
                and noisy_row is not None
                and noisy_row["lines_read"] - noisy_row["buffered"] + noisy_row["summaries"]
                == noisy_row["dropped_by_quota"]
                and not _open_interval(status, noisy.id)
                and poison_row is not None
                and poison_row["stored"] + poison_row["dead_lettered"] == 6
            ) or time.monotonic() > deadline:
                return status or {}
            await asyncio.sleep(0.5)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the quota's kept lines and summaries, all there
        noisy_documents = await documents_of(server, noisy.id)
        if _kept_and_dropped(noisy_documents) >= 4000:
            break
        await asyncio.sleep(0.5)
    status = await settled()
    stop_sampling.set()
    await sampler
    assert sampled > 20 and problems == [], f"seed {seed}: {problems[:5]}"
    assert status["accounting"]["problems"] == [], f"seed {seed}"
    rows = {row["id"]: row["accounting"] for row in status["containers"] if "accounting" in row}

    # The numbers are true: what each container gained in Elasticsearch in this run.
    for container in writers:
        gained = await _count(server, container.id) - before[container.id]
        assert rows[container.id]["stored"] == gained, (container.name, rows[container.id], seed)
    assert (
        sum(row["recovered"] for row in rows.values())
        == (status["accounting"]["recovered_at_start"])
    )
    assert (
        await asyncio.to_thread(shipper.metric, "shipper_buffer_records_recovered")
        == (status["accounting"]["recovered_at_start"])
    )
    assert await asyncio.to_thread(shipper.metric, "shipper_bulk_items_total", {"status": "429"})

    # Every line once: plain lines, multiline events less health checks, kept lines and
    # summaries of the drop quota.
    await assert_documents_are_exactly(
        server,
        plain.id,
        await asyncio.to_thread(reference_lines, docker_client, plain.id),
    )
    events = _events(await asyncio.to_thread(reference_lines, docker_client, multi.id))
    documents = await documents_of(server, multi.id)
    assert sorted((d["_source"]["@timestamp"], d["_source"]["message"]) for d in documents) == (
        sorted(events)
    ), f"seed {seed}"
    assert rows[multi.id]["joined"] > 0 and rows[multi.id]["dropped_by_rule"] > 0
    noisy_lines = await asyncio.to_thread(reference_lines, docker_client, noisy.id)
    noisy_documents = await documents_of(server, noisy.id)
    summaries = [
        d for d in noisy_documents if "rate_limited" in d["_source"]["log"].get("flags", [])
    ]
    kept = lines_of_documents([d for d in noisy_documents if d not in summaries])
    dropped = sum(d["_source"]["shipper"]["rate_limit"]["dropped_lines"] for d in summaries)
    assert len(kept) + dropped == len(noisy_lines) == 4000, f"seed {seed}"
    assert len({d["_id"] for d in noisy_documents}) == len(noisy_documents)

    # The poison line: dead-lettered, counted as such, the rest stored.
    poison_row = rows[poison.id]
    assert (poison_row["stored"], poison_row["dead_lettered"], poison_row["lines_read"]) == (
        5,
        1,
        6,
    )
    assert await _count(server, poison.id) == 5
    dead = [
        d
        for d in await server.probe().fetch_all(DEAD_LETTERS)
        if json.loads(d["_source"]["event"]["original"])["container"]["id"] == poison.id
    ]
    assert [json.loads(d["_source"]["event"]["original"])["message"] for d in dead] == ["poison 3"]

    # The per-container metrics say the same as /status.
    name = plain.name
    for outcome in ("stored", "already_stored", "buffered", "recovered"):
        value = await asyncio.to_thread(
            shipper.metric,
            "shipper_container_records_total",
            {"container_name": name, "outcome": outcome},
        )
        assert value == rows[plain.id][outcome], outcome
    assert (
        await asyncio.to_thread(
            shipper.metric,
            "shipper_container_lines_total",
            {"container_name": name, "outcome": "lines_read"},
        )
        == rows[plain.id]["lines_read"]
    )
    assert await asyncio.to_thread(shipper.stop) == 0
