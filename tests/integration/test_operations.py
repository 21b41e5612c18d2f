"""Operations, end to end: metrics that count the truth, readiness, secrets kept out of the
logs, `shipper status`, `shipper backfill` and SIGHUP reload, against real containers.

Each test ships only its own containers (an include rule on a label unique to the test),
so containers of other tests on the same daemon cannot move the counters it checks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import docker
import pytest
import yaml

from tests.es_server.fixtures import require_fault_injection
from tests.integration.helpers import (
    assert_shipped_exactly_once,
    documents_of,
    wait_for_documents,
)
from tests.support.docker_logs import reference_lines
from tests.support.shipper_process import ShipperProcess, deep_merge, free_port
from tests.unit.test_status_dead_letters import seed_dead_letters

pytestmark = pytest.mark.docker

PASSWORD = "Es-Pa55word-7f3kq-must-not-leak"


def _only(label: str) -> dict[str, Any]:
    """Config shipping only the containers labelled `label` (any value)."""
    return {"processing": {"selection": {"include": [{"labels": [label]}]}}}


async def wait_until(
    predicate: Callable[[], Awaitable[bool] | bool], timeout_s: float, what: str
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


async def wait_exit(container: Any, timeout_s: float = 60) -> None:
    await asyncio.to_thread(container.wait, timeout=timeout_s)


def run_cli(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPPER_")}
    return subprocess.run(
        [sys.executable, "-m", "shipper", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
    )


# ------------------------------------------------------------------ metrics and readiness


@pytest.mark.timeout(180)
async def test_metrics_equal_the_true_counts_and_readyz_follows_elasticsearch(
    es_server: Any, docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    server = require_fault_injection(es_server)
    server.users = {"shipper": PASSWORD}
    probe = server.probe
    server.probe = lambda **kwargs: probe(basic_auth=("shipper", PASSWORD), **kwargs)  # type: ignore[method-assign]
    label = f"shipper.test.metrics.{uuid.uuid4().hex[:8]}"
    shipper: ShipperProcess = shipper_factory(
        server.url,
        deep_merge(
            _only(label),
            {"elasticsearch": {"username": "shipper", "password": PASSWORD}},
        ),
    )
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    assert shipper.http_get("/healthz") == (200, "ok\n")
    await wait_until(lambda: shipper.http_get("/readyz")[0] == 200, 30, "/readyz 200")
    bulk_before = server.stats.bulk_requests
    assert shipper.metric("shipper_bulk_requests_total") == bulk_before == 0

    rejected = 7
    server.faults.reject_items(count=rejected)
    container = containers(
        'for i in $(seq 1 40); do echo "out line $i"; done; '
        'for i in $(seq 1 25); do echo "err line $i" >&2; done',
        labels={label: "1"},
    )
    await wait_exit(container)
    lines, _ = await assert_shipped_exactly_once(es_server, docker_client, container.id)
    assert len(lines) == 65
    await wait_until(
        lambda: shipper.metric("shipper_records_shipped_total") >= 65, 20, "the acks to count"
    )
    await asyncio.sleep(1.0)  # a late increment, if any, shows up now

    def metric(name: str, **labels: str) -> float:
        return shipper.metric(name, labels or None)

    out = [line for line in lines if line.stream == "stdout"]
    err = [line for line in lines if line.stream == "stderr"]
    assert metric("shipper_lines_read_total", stream="stdout") == len(out) == 40
    assert metric("shipper_lines_read_total", stream="stderr") == len(err) == 25
    assert metric("shipper_read_bytes_total", stream="stdout") == sum(
        len(line.message.encode()) for line in out
    )
    assert metric("shipper_records_buffered_total") == 65
    assert metric("shipper_records_shipped_total") == 65
    # Every bulk request the server received, and no other, was counted.
    assert metric("shipper_bulk_requests_total") == server.stats.bulk_requests - bulk_before
    assert metric("shipper_bulk_requests_total") >= 2  # the first one had rejected items
    assert metric("shipper_bulk_request_duration_seconds_count") == server.stats.bulk_requests
    assert metric("shipper_bulk_items_total", status="429") == rejected
    assert server.stats.items_by_status[429] == rejected
    assert metric("shipper_bulk_items_total", status="201") == 65
    assert metric("shipper_retries_total", reason="item_rejected") == rejected
    assert metric("shipper_retries_total", reason="request_failed") == 0
    assert metric("shipper_dead_lettered_total") == 0
    assert metric("shipper_buffer_records") == 0
    assert metric("shipper_buffer_bytes") == 0
    # The output kept up, so it took every block from the buffer's memory of what was just
    # written, none from the segment files.
    assert metric("shipper_buffer_blocks_read_total", source="cache") >= 1
    assert metric("shipper_buffer_blocks_read_total", source="file") == 0
    assert metric("shipper_docker_events_total", action="start") >= 1
    assert metric("shipper_checkpoint_writes_total") >= 1
    assert metric("shipper_build_info") == 1

    # Elasticsearch goes away: not ready, with the reason; it returns: ready again.
    await server.stop()
    await wait_until(lambda: shipper.http_get("/readyz")[0] == 503, 15, "/readyz 503")
    _, body = shipper.http_get("/readyz")
    assert body.startswith("not ready\n")
    assert "output not accepting writes" in body and "Elasticsearch" in body
    assert shipper.http_get("/healthz")[0] == 200  # alive all the same
    await server.start(port=server.port)
    await wait_until(lambda: shipper.http_get("/readyz") == (200, "ready\n"), 20, "ready again")

    assert await asyncio.to_thread(shipper.stop) == 0
    # Debug-level logs of the whole run, outage included: the password is never in them.
    logs = shipper.stderr()
    assert '"log.level":"debug"' in logs  # debug level was on
    assert PASSWORD not in logs
    assert PASSWORD not in shipper.stdout().decode(errors="replace")


@pytest.mark.timeout(180)
async def test_metrics_count_an_outage_and_the_processing_exactly(
    es_server: Any, containers: Any, shipper_factory: Any
) -> None:
    """Whole-request failures, as the server counted them; processing counters; the buffer
    gauges while Elasticsearch refuses writes and after. No dead letters here: bulk requests
    to the dead-letter stream are not counted in shipper_bulk_requests_total."""
    server = require_fault_injection(es_server)
    label = f"shipper.test.outage.{uuid.uuid4().hex[:8]}"
    shipper: ShipperProcess = shipper_factory(
        server.url,
        deep_merge(
            _only(label),
            {
                "elasticsearch": {"retry_max_backoff_s": 0.5},
                "processing": {
                    "max_line_bytes": 100,
                    "multiline": {"rules": [{"pattern": "^\\s", "match": "after"}]},
                    "redaction": {
                        "presets": [],
                        "rules": [{"id": "ticket", "pattern": "TICKET-[0-9]+"}],
                    },
                },
            },
        ),
    )
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    await wait_until(lambda: shipper.http_get("/readyz") == (200, "ready\n"), 30, "ready")

    def metric(name: str, **labels: str) -> float:
        return shipper.metric(name, labels or None)

    # The cluster refuses every bulk request (503) until told otherwise; the test server
    # counts each one it receives.
    server.faults.fail_requests(503, seconds=600)
    long_text = "y" * 150
    container = containers(
        'for i in $(seq 1 20); do echo "plain $i"; done; '
        'for i in $(seq 1 5); do echo "order $i TICKET-1000$i"; done; '
        f'for i in $(seq 1 3); do echo "long $i {long_text}"; done; '
        'for i in $(seq 1 4); do echo "Exception $i"; echo "  at a.B(C.java:$i)"; '
        'echo "  at d.E(F.java:$i)"; done; echo end',
        labels={label: "1"},
    )
    await wait_exit(container)
    records = 21 + 5 + 3 + 4  # plain lines (and "end"), tickets, long lines, joined events
    await wait_until(
        lambda: metric("shipper_records_buffered_total") == records, 30, "every record buffered"
    )
    await wait_until(lambda: metric("shipper_bulk_requests_total", outcome="failed") >= 2, 20, "")

    # During the outage: everything waits in the buffer, and /readyz says why.
    assert metric("shipper_records_shipped_total") == 0
    assert metric("shipper_buffer_records") == records
    assert metric("shipper_buffer_bytes") > 0
    first_age = metric("shipper_oldest_unshipped_age_seconds")
    await asyncio.sleep(1.0)
    second_age = metric("shipper_oldest_unshipped_age_seconds")
    assert 0 < first_age < second_age  # the end-to-end lag grows while nothing is shipped
    assert second_age - first_age >= 0.9
    status, body = shipper.http_get("/readyz")
    # One reason, the cluster's answer, with its type (error bodies are not filtered).
    assert (status, body.splitlines()[:1], body.count("\n- ")) == (503, ["not ready"], 1)
    assert body.startswith("not ready\n- output not accepting writes: HTTP 503 "), body
    assert "HTTP 503: {}" not in body, body

    server.faults.fail_requests(503, seconds=0)  # the cluster takes writes again
    await wait_until(
        lambda: metric("shipper_records_shipped_total") == records, 30, "every record shipped"
    )
    await asyncio.sleep(1.0)  # a late increment, if any, shows up now

    stats = server.stats
    refused = stats.requests["POST /_bulk"] - stats.bulk_requests  # answered 503 as a whole
    assert refused >= 2
    assert metric("shipper_bulk_requests_total", outcome="failed") == refused
    assert metric("shipper_bulk_requests_total", outcome="failed", status="503") == refused
    assert metric("shipper_retries_total", reason="request_failed") == refused
    assert metric("shipper_bulk_requests_total", outcome="answered") == stats.bulk_requests
    assert metric("shipper_bulk_request_duration_seconds_count") == stats.bulk_requests
    assert metric("shipper_bulk_items_total", status="201") == records == stats.items_by_status[201]
    assert metric("shipper_retries_total", reason="item_rejected") == 0
    assert metric("shipper_dead_lettered_total") == 0
    assert metric("shipper_lines_read_total", stream="stdout") == 21 + 5 + 3 + 12
    assert metric("shipper_lines_read_total", stream="stderr") == 0
    assert metric("shipper_records_buffered_total") == records
    assert metric("shipper_records_redacted_total", rule="ticket") == 5
    assert metric("shipper_records_redacted_total") == 5
    # Flags as shipped: the decoder's (truncated) and those processing adds.
    assert metric("shipper_records_flagged_total", flag="truncated") == 3
    assert metric("shipper_records_flagged_total", flag="redacted") == 5
    assert metric("shipper_records_flagged_total", flag="multiline") == 4
    assert metric("shipper_records_flagged_total") == 12
    assert metric("shipper_multiline_events_total") == 4
    # After the outage: nothing waits any more.
    assert metric("shipper_buffer_records") == 0
    assert metric("shipper_buffer_bytes") == 0
    assert metric("shipper_oldest_unshipped_age_seconds") == 0
    assert shipper.http_get("/readyz") == (200, "ready\n")

    # The counted records are the stored documents.
    messages = sorted(d["_source"]["message"] for d in await documents_of(es_server, container.id))
    assert len(messages) == records
    assert [m for m in messages if m.startswith("order")] == [
        f"order {i} [REDACTED]" for i in range(1, 6)
    ]
    assert [m for m in messages if m.startswith("long")] == [
        f"long {i} {long_text}"[:100] for i in range(1, 4)
    ]
    assert [m for m in messages if m.startswith("Exception")] == [
        f"Exception {i}\n  at a.B(C.java:{i})\n  at d.E(F.java:{i})" for i in range(1, 5)
    ]
    assert await asyncio.to_thread(shipper.stop) == 0


API_KEY_ID = "shipper-key"
API_KEY_SECRET = "ApiKey-S3cr3t-v9q2-never-log"
API_KEY = base64.b64encode(f"{API_KEY_ID}:{API_KEY_SECRET}".encode()).decode()
BEARER_TOKEN = "Bearer-T0ken-x81m-never-log"
KIBANA_API_KEY = "Kibana-K3y-p0w7-never-log"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["api_key", "bearer_token"])
async def test_api_keys_and_tokens_never_appear_in_self_logs_or_check_config(
    kind: str,
    es_server: Any,
    docker_client: docker.DockerClient,
    containers: Any,
    shipper_factory: Any,
) -> None:
    server = require_fault_injection(es_server)
    server.api_keys = {API_KEY_ID: API_KEY_SECRET}
    server.bearer_tokens = {BEARER_TOKEN}
    probe = server.probe
    server.probe = lambda **kwargs: probe(api_key=(API_KEY_ID, API_KEY_SECRET), **kwargs)  # type: ignore[method-assign]
    label = f"shipper.test.secrets.{uuid.uuid4().hex[:8]}"
    if kind == "api_key":
        # In the file, with a Kibana API key too (Kibana is not there: it is retried).
        extra: dict[str, Any] = {
            "elasticsearch": {"api_key": API_KEY},
            "kibana": {"url": f"http://127.0.0.1:{free_port()}", "api_key": KIBANA_API_KEY},
        }
        env: dict[str, str] = {}
        secrets = [API_KEY, API_KEY_SECRET, KIBANA_API_KEY]
        authorization = f"ApiKey {API_KEY}"
    else:
        extra, env = {}, {"SHIPPER_ELASTICSEARCH_BEARER_TOKEN": BEARER_TOKEN}
        secrets = [BEARER_TOKEN]
        authorization = f"Bearer {BEARER_TOKEN}"
    shipper: ShipperProcess = shipper_factory(server.url, deep_merge(_only(label), extra))
    assert shipper.config["log"]["level"] == "debug"
    shipper.start(env=env)
    await asyncio.to_thread(shipper.wait_ready_http)
    container = containers(
        'for i in $(seq 1 20); do echo "secret test $i"; done',
        labels={label: "1"},
    )
    await wait_exit(container)
    await assert_shipped_exactly_once(es_server, docker_client, container.id)
    assert server.stats.last_bulk_headers["Authorization"] == authorization  # it was in use

    # The cluster rejects the credential for a while: the error path logs the cluster's
    # answer (and the request that failed), and must still not show the credential.
    server.faults.wrong_password = True
    later = containers(
        'for i in $(seq 1 5); do echo "while rejected $i"; done',
        labels={label: "1"},
    )
    await wait_until(
        lambda: "rejected the shipper's credentials" in shipper.stderr(), 20, "the 401 logged"
    )
    assert "HTTP 401" in shipper.http_get("/readyz")[1]
    server.faults.wrong_password = False
    await assert_shipped_exactly_once(es_server, docker_client, later.id)
    assert await asyncio.to_thread(shipper.stop) == 0

    logs = shipper.stderr()
    assert '"log.level":"debug"' in logs and "Effective configuration" in logs
    assert "security_exception" in logs  # the cluster's 401 answer is in the logs
    for secret in secrets:
        assert secret not in logs
        assert secret not in shipper.stdout().decode(errors="replace")

    checked = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "shipper", "check-config", "--config", str(shipper.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("SHIPPER_")}, **env},
    )
    assert checked.returncode == 0, checked.stderr
    effective = yaml.safe_load(checked.stdout)
    assert effective["elasticsearch"][kind] == "***"
    if kind == "api_key":
        assert effective["kibana"]["api_key"] == "***"
    for secret in secrets:
        assert secret not in checked.stdout + checked.stderr


@pytest.mark.timeout(120)
async def test_status_from_the_agent_counts_dead_letters_by_error_type(
    es_server: Any, shipper_factory: Any
) -> None:
    label = f"shipper.test.deadstatus.{uuid.uuid4().hex[:8]}"
    shipper: ShipperProcess = shipper_factory(es_server.url, _only(label))
    path = seed_dead_letters(shipper.storage)  # left by an earlier run
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    config = str(shipper.config_path)
    api = await asyncio.to_thread(
        run_cli, "status", "--url", shipper.metrics_url, "--json", "--config", config
    )
    assert api.returncode == 0, api.stderr
    report = json.loads(api.stdout)
    assert report["source"] == "agent"
    assert report["dead_letters"] == {
        "path": str(path),
        "total": 7,
        "by_error_type": {
            "document_parsing_exception": 3,
            "mapper_parsing_exception": 2,
            "request_entity_too_large": 1,
            "unreadable_line": 1,
        },
        "since_start": 0,  # none of them is this run's
    }
    table = await asyncio.to_thread(
        run_cli, "status", "--url", shipper.metrics_url, "--config", config
    )
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[-3:] == [
        "dead letters in the file: 7 (document_parsing_exception: 3, mapper_parsing_exception: "
        f"2, request_entity_too_large: 1, unreadable_line: 1)  [{path}]",
        "dead letters since the agent started: 0",
        "kept in a failure store (not as log records) since the agent started: 0",
    ]
    assert await asyncio.to_thread(shipper.stop) == 0


# ------------------------------------------------------------------ status and backfill


@pytest.mark.timeout(240)
async def test_backfill_ships_history_with_the_agents_ids_and_status_reports_it(
    es_server: Any, docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    server = require_fault_injection(es_server)
    label = f"shipper.test.backfill.{uuid.uuid4().hex[:8]}"
    history = containers(
        'for i in $(seq 1 5); do echo "early $i"; done; sleep 8; '
        'for i in $(seq 1 6); do echo "late $i"; echo "late err $i" >&2; done',
        labels={label: "1"},
    )
    other = containers("echo other-1; echo other-2", labels={label: "1"})
    await wait_exit(history)
    await wait_exit(other)
    shipper: ShipperProcess = shipper_factory(server.url, _only(label))
    config = str(shipper.config_path)

    # The last 5 s of `history` only: the late lines, written 8 s after the early ones.
    result = await asyncio.to_thread(
        run_cli, "backfill", "--since", "5s", "--container", history.name, "--config", config
    )
    assert result.returncode == 0, result.stderr
    assert "100.0%" in result.stderr  # the progress bar finished
    assert "12 lines read" in result.stderr and "12 stored" in result.stderr
    late = [line for line in reference_lines(docker_client, history.id) if "late" in line.message]
    documents = await wait_for_documents(es_server, history.id, 12, timeout_s=10)
    assert sorted(d["_source"]["message"] for d in documents) == sorted(
        line.message for line in late
    )
    assert await documents_of(es_server, other.id) == []
    assert not list(shipper.storage.glob("backfill-*"))  # its temporary buffer is gone
    backfilled_ids = {d["_id"] for d in documents}

    # The agent then reads both containers from their start: the 12 backfilled lines get
    # the same _ids (409, stored once), the rest is new.
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    _, history_docs = await assert_shipped_exactly_once(es_server, docker_client, history.id)
    await assert_shipped_exactly_once(es_server, docker_client, other.id)
    assert backfilled_ids <= {d["_id"] for d in history_docs}
    assert server.stats.items_by_status[409] == 12
    assert len(history_docs) == 17

    # Running again beside the agent stores nothing twice.
    again = await asyncio.to_thread(
        run_cli, "backfill", "--since", "1h", "--config", config, "--no-progress"
    )
    assert again.returncode == 0, again.stderr
    assert "19 lines read" in again.stderr and "0 stored, 19 already there" in again.stderr
    assert len(await documents_of(es_server, history.id)) == 17

    # status from the running agent.
    api = await asyncio.to_thread(
        run_cli, "status", "--url", shipper.metrics_url, "--json", "--config", config
    )
    assert api.returncode == 0, api.stderr
    report = json.loads(api.stdout)
    assert report["source"] == "agent" and report["ready"] is True
    rows = {row["id"]: row for row in report["containers"]}
    assert rows[history.id]["name"] == history.name
    assert rows[other.id]["lag_s"] > 0
    assert report["buffer"]["records"] == 0
    assert report["dead_letters"]["total"] == 0

    assert await asyncio.to_thread(shipper.stop) == 0

    # status without an agent: from the files, names from Docker.
    offline = await asyncio.to_thread(run_cli, "status", "--config", config)
    assert offline.returncode == 0, offline.stderr
    assert "from the files" in offline.stdout
    assert "buffer: 0 records" in offline.stdout
    table = {line.split()[0]: line.split() for line in offline.stdout.splitlines() if line}
    assert table[history.name][1] == history.id[:12]
    assert table[other.name][2] == "no"  # exited: not followed
    data = json.loads(
        (await asyncio.to_thread(run_cli, "status", "--json", "--config", config)).stdout
    )
    assert data["source"] == "storage"
    assert {row["id"] for row in data["containers"]} >= {history.id, other.id}
    assert {row["id"]: row["since_ns"] for row in data["containers"]}[history.id] > 0


# ------------------------------------------------------------------ SIGHUP reload


@pytest.mark.timeout(180)
async def test_sighup_applies_new_drop_and_selection_rules_to_new_containers(
    es_server: Any, docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    label = f"shipper.test.reload.{uuid.uuid4().hex[:8]}"
    shipper: ShipperProcess = shipper_factory(es_server.url, _only(label))
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    await asyncio.sleep(0.5)

    before = containers("echo keep-1; echo drop-me-1", labels={label: "1"})
    await wait_exit(before)
    await assert_shipped_exactly_once(es_server, docker_client, before.id)

    # Writes before, during and after the reload: no line may be lost or doubled by it.
    # Every 10th line matches the drop rule the reload brings, which applies to this
    # container only from its next start: those lines are shipped too.
    writer = containers(
        'for i in $(seq 1 150); do if [ $((i % 10)) -eq 0 ]; then echo "drop-me-steady $i"; '
        'else echo "steady $i"; fi; sleep 0.04; done',
        labels={label: "1"},
    )
    await wait_until(
        lambda: _count_documents(es_server, writer.id, at_least=10), 20, "the writer's first lines"
    )

    def write_config(extra: dict[str, Any]) -> None:
        shipper.config_path.write_text(yaml.safe_dump(deep_merge(shipper.config, extra)))

    new_rules = {
        "processing": {
            "drop": [{"id": "reload-test", "message_pattern": "^drop-me"}],
            "selection": {
                "include": [{"labels": [label]}],
                "exclude": [{"labels": ["reload.skip=yes"]}],
            },
        }
    }
    write_config(new_rules)
    assert shipper.process is not None
    shipper.process.send_signal(signal.SIGHUP)
    await wait_until(lambda: "Config reloaded: the new" in shipper.stderr(), 10, "the reload")
    reload_line = next(
        json.loads(line) for line in shipper.stderr().splitlines() if "Config reloaded" in line
    )
    assert set(reload_line["changed"]) == {"processing.drop", "processing.selection.exclude"}
    assert shipper.metric("shipper_config_reloads_total", {"result": "applied"}) == 1
    writer.reload()
    assert writer.status == "running"  # the reload happened while it was writing

    after = containers("echo keep-2; echo drop-me-2", labels={label: "1"})
    skipped = containers("echo not-shipped", labels={label: "1", "reload.skip": "yes"})
    await wait_exit(after)
    await wait_exit(skipped)
    documents = await wait_for_documents(es_server, after.id, 1, timeout_s=15)
    await asyncio.sleep(1.0)
    assert [d["_source"]["message"] for d in await documents_of(es_server, after.id)] == ["keep-2"]
    assert documents
    assert await documents_of(es_server, skipped.id) == []
    assert shipper.metric("shipper_records_dropped_total", {"reason": "reload-test"}) == 1

    # A broken config is refused, naming the key; the rules in force stay.
    write_config({"processing": {"drop": [{"id": "bad", "message_pattern": "(unclosed"}]}})
    shipper.process.send_signal(signal.SIGHUP)
    await wait_until(
        lambda: shipper.metric("shipper_config_reloads_total", {"result": "rejected"}) == 1,
        10,
        "the rejection",
    )
    rejected = next(
        json.loads(line)
        for line in shipper.stderr().splitlines()
        if "config_reload" in line or "reloaded config is not valid" in line
    )
    assert rejected["key"] == "processing.drop.0.message_pattern"
    still = containers("echo keep-3; echo drop-me-3", labels={label: "1"})
    await wait_exit(still)
    await wait_for_documents(es_server, still.id, 1, timeout_s=15)
    await asyncio.sleep(1.0)
    assert [d["_source"]["message"] for d in await documents_of(es_server, still.id)] == ["keep-3"]

    await wait_exit(writer)
    lines, _ = await assert_shipped_exactly_once(es_server, docker_client, writer.id)
    assert len(lines) == 150
    assert sum(line.message.startswith("drop-me-steady") for line in lines) == 15
    shipper.assert_alive()
    assert await asyncio.to_thread(shipper.stop) == 0


async def _count_documents(es: Any, container_id: str, *, at_least: int) -> bool:
    return len(await documents_of(es, container_id)) >= at_least
