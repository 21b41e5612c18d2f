"""Where a first start begins: `start_at` against the real Docker daemon.

A container logs "old" lines, then "mid" lines, then "new" lines while the shipper makes its
first start on an empty storage between "mid" and "new". Elasticsearch must hold exactly the
container's lines stamped at or after the start time recorded in first-start.json (checked
against Docker's own reading of the log), that time must be what the setting says, and a
`kill -9` a moment into the first start followed by a start with another setting must
neither ship the skipped history nor lose a later line; a container started later is shipped
from its first line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.integration.helpers import (
    assert_documents_are_exactly,
    assert_shipped_exactly_once,
    epoch_ns,
)
from tests.support.docker_logs import reference_lines

pytestmark = pytest.mark.docker

S = 1_000_000_000
# Old lines at once; mid lines 4 s later; new lines from 12 s on, for 6 s. The shipper starts
# 6.5 s in and decides within a few seconds (Python starting on a busy machine): "now" then
# falls between mid and new, and "6s" between old and mid.
WRITER = (
    'for i in $(seq 1 20); do echo "old $i"; echo "old err $i" >&2; done; sleep 4; '
    'for i in $(seq 1 20); do echo "mid $i"; done; sleep 8; '
    'for i in $(seq 1 60); do echo "new $i"; echo "new err $i" >&2; sleep 0.1; done'
)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("start_at", "read_mode", "shipped"),
    [
        ("now", "api", {"new"}),
        ("now", None, {"new"}),
        ("6s", None, {"mid", "new"}),
        ("10m", "api", {"old", "mid", "new"}),
    ],
    ids=["now-api", "now-default", "6s-default", "10m-api"],
)
async def test_a_first_start_ships_what_start_at_says_and_a_restart_every_later_line(
    es_server: Any,
    docker_client: docker.DockerClient,
    containers: Any,
    shipper_factory: Any,
    start_at: str,
    read_mode: str | None,
    shipped: set[str],
) -> None:
    config: dict[str, Any] = {"elasticsearch": {"retry_max_backoff_s": 1.0}}
    if read_mode is not None:
        config["docker"] = {"read_mode": read_mode}
    shipper = shipper_factory(es_server.url, config)
    writer = await asyncio.to_thread(containers, WRITER)
    await asyncio.sleep(6.5)
    started = time.time_ns()
    shipper.start("--start-at", start_at)
    # Crash a moment into the first start, once it has decided (positions may or may not be
    # saved yet).
    marker = shipper.storage / "first-start.json"
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        shipper.assert_alive()
        await asyncio.sleep(0.05)
    decided = time.time_ns()
    if start_at == "10m":
        # This case also checks the history the first start measured (the others are killed
        # at once, before the report is likely written).
        history = await _history_record(shipper)
    await asyncio.sleep(0.5)
    await asyncio.to_thread(shipper.kill)
    decision = json.loads(marker.read_bytes())
    assert decision["start_at"] == start_at and decision["chosen_by"] == "--start-at"
    assert decision["storage_was_new"] is True
    back = {"now": 0, "6s": 6 * S, "10m": 600 * S}[start_at]
    assert started <= decision["start_ns"] + back <= decided, (started, decided, decision)

    # Started again with another setting: the decision made at the first start stands.
    shipper.start("--start-at", "beginning")
    await asyncio.to_thread(shipper.wait_ready_http)
    later = await asyncio.to_thread(containers, 'for i in $(seq 1 30); do echo "later $i"; done')
    assert (await asyncio.to_thread(writer.wait, timeout=60))["StatusCode"] == 0
    lines = await asyncio.to_thread(reference_lines, docker_client, writer.id)
    if start_at == "10m":
        # The writer's json-file held at least every line stamped before the shipper started
        # and at most what it holds now; the container is this test's only one.
        await asyncio.to_thread(writer.reload)
        log_path = Path(writer.attrs["LogPath"])
        assert (history["containers"], history["containers_measured"]) == (1, 1)
        assert _json_file_bytes(log_path, before_ns=started) <= history["log_bytes"]
        assert history["log_bytes"] <= log_path.stat().st_size
        assert history["message"].endswith("only its last 10m is shipped, as --start-at chose."), (
            history
        )
    expected = [line for line in lines if epoch_ns(line.timestamp) >= decision["start_ns"]]
    # What the setting means, in the container's terms: whole phases in or out.
    assert {line.message.split()[0] for line in expected} == shipped
    assert len(expected) == sum({"new": 120, "mid": 20, "old": 40}[phase] for phase in shipped)
    await assert_documents_are_exactly(es_server, writer.id, expected, timeout_s=60)
    await asyncio.to_thread(later.wait, timeout=30)
    await assert_shipped_exactly_once(es_server, docker_client, later.id)
    _, body = await asyncio.to_thread(shipper.http_get, "/status")
    assert json.loads(body)["first_start"]["start_at"] == start_at
    assert await asyncio.to_thread(shipper.stop) == 0
    log = shipper.stderr()
    assert "start_at applies only at the first start on a storage" in log
    assert "First start on this storage" in log and "set by --start-at" in log


async def _history_record(shipper: Any) -> dict[str, Any]:
    """The first start's "how much history" log record (JSON logs), waited for."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for raw in shipper.stderr().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(raw)
                if str(record.get("message", "")).startswith("History at the first start"):
                    return record  # type: ignore[no-any-return]
        shipper.assert_alive()
        await asyncio.sleep(0.1)
    raise AssertionError("no history record at the first start:\n" + shipper.stderr()[-2000:])


def _json_file_bytes(log_path: Path, *, before_ns: int) -> int:
    """Bytes of the json-file's lines stamped before `before_ns` (each with its newline)."""
    total = 0
    for line in log_path.read_bytes().splitlines(keepends=True):
        if epoch_ns(json.loads(line)["time"]) < before_ns:
            total += len(line)
    return total
