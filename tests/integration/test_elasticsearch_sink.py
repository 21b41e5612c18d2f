"""The Elasticsearch output in process, against the test server: no Docker needed.

Entries are encoded exactly as the shipper encodes them and handed to the sink through a
stand-in for the disk buffer, so every fault can be injected precisely and every count
checked exactly.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from shipper import telemetry
from shipper.config import ElasticsearchConfig
from shipper.layout import StorageLayout
from shipper.model import ContainerMeta, LogRecord
from shipper.pipeline.encoder import container_document, encode_records, index_of
from shipper.sinks.elasticsearch.client import ElasticsearchConnection
from shipper.sinks.elasticsearch.dead_letter import DeadLetters
from shipper.sinks.elasticsearch.response import CREATED_ITEM
from shipper.sinks.elasticsearch.sink import ElasticsearchSink
from tests.es_server import bulk as es_bulk
from tests.es_server.app import EsTestServer

DLQ = "logs-shipper.deadletter-default"
STREAM = "logs-docker-default"


@dataclass
class Batch:
    """One block of entries, as the disk buffer hands them out."""

    entries: list[bytes]

    @property
    def bodies(self) -> list[bytes]:
        return [b"".join(self.entries)]

    @property
    def count(self) -> int:
        return len(self.entries)

    @property
    def size(self) -> int:
        return sum(map(len, self.entries))


@dataclass
class ListSource:
    """The disk buffer's read/ack contract over a list, feeding `chunk` entries per read."""

    pending: list[bytes]
    chunk: int = 50
    acked: int = 0
    batches_out: int = 0
    acks: list[Batch] = field(default_factory=list)
    more: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, entries: list[bytes]) -> None:
        self.pending.extend(entries)
        self.more.set()

    async def read(self, max_entries: int, max_bytes: int, timeout_s: float | None = None) -> Any:
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while not self.pending:  # several workers may wake for the same entries
            self.more.clear()
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                await asyncio.wait_for(self.more.wait(), remaining)
            except TimeoutError:
                return None
        take = max(1, min(max_entries, self.chunk))
        # A block is one container's append: all its entries have one target, as the
        # sink relies on (it installs templates per block).
        target = index_of(self.pending[0])
        same = next((i for i, e in enumerate(self.pending[:take]) if index_of(e) != target), take)
        take = max(1, same)
        batch = Batch(self.pending[:take])
        del self.pending[:take]
        self.batches_out += 1
        return batch

    def ack(self, batch: Batch) -> None:
        assert batch not in self.acks, "acked twice"
        self.acks.append(batch)
        self.acked += len(batch.entries)


def entries_of(
    container: str, count: int, *, index: str = STREAM, message: str = "line {i}"
) -> list[bytes]:
    meta = ContainerMeta(id=container, name=container, image="busybox")
    document = container_document(meta, index=index, host_name="test-host")
    records = [
        LogRecord(container, 1_700_000_000_000_000_000 + i, "stdout", 0, message.format(i=i))
        for i in range(count)
    ]
    return encode_records(records, document)


_AUTH_KEYS = {"username", "password", "api_key", "bearer_token", "bearer_token_file"}


def es_config(server: EsTestServer, **overrides: Any) -> ElasticsearchConfig:
    base = server.shipper_config()
    if _AUTH_KEYS & set(overrides):  # the test authenticates its own way
        base = {k: v for k, v in base.items() if k not in _AUTH_KEYS}
    raw: dict[str, Any] = {
        **base,
        "flush_interval_s": 0.05,
        "retry_max_backoff_s": 0.5,
        **overrides,
    }
    return ElasticsearchConfig.model_validate(raw)


class Running:
    def __init__(self, sink: ElasticsearchSink, source: ListSource, dead: DeadLetters) -> None:
        self.sink, self.source, self.dead = sink, source, dead
        self.task: asyncio.Task[None] | None = None


async def start_sink(
    server: EsTestServer,
    tmp_path: Path,
    entries: list[bytes],
    *,
    chunk: int = 50,
    **overrides: Any,
) -> Running:
    config = es_config(server, **overrides)
    connection = ElasticsearchConnection(config)
    dead = DeadLetters(
        StorageLayout(tmp_path).dead_letter_file,
        connection,
        config.dead_letter.data_stream,
        retry_base_s=0.01,
    )
    source = ListSource(list(entries), chunk=chunk)
    sink = ElasticsearchSink(connection, source, config, dead, static_targets=[STREAM])
    running = Running(sink, source, dead)
    running.task = asyncio.create_task(sink.run())
    return running


async def finish(running: Running, total: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while running.source.acked < total:
        assert running.task is not None
        if running.task.done():
            running.task.result()
        assert time.monotonic() < deadline, f"acked {running.source.acked} of {total}"
        await asyncio.sleep(0.02)
    running.sink.stop()
    assert running.task is not None
    await asyncio.wait_for(running.task, 5)
    await running.sink._connection.close()


def stored(server: EsTestServer, name: str) -> list[dict[str, Any]]:
    try:
        return server.documents(name)
    except Exception:
        return []


async def test_the_all_created_answer_comes_through_the_client_unparsed(es_server: Any) -> None:
    """Through the official client and the server's real bytes (test server, or a real cluster
    with SHIPPER_TEST_ES_URL): all stored -> the shared item, unparsed; any failure -> parsed."""
    uid = uuid.uuid4().hex[:8]
    connection = ElasticsearchConnection(es_config(es_server))
    try:
        await connection.connect()
        body = b"".join(entries_of(f"c{uid}", 20, index=f"logs-unparsed{uid}-default"))
        first = await connection.bulk([body])
        assert first["errors"] is False
        assert len(first["items"]) == 20
        assert all(item is CREATED_ITEM for item in first["items"])
        again = await connection.bulk([body])  # the same _ids: every create conflicts
        assert again["errors"] is True
        assert [item["create"]["status"] for item in again["items"]] == [409] * 20
        assert not any(item is CREATED_ITEM for item in again["items"])
    finally:
        await connection.close()


@pytest.mark.es_in_process  # faults and the store are injected in process
async def test_every_entry_is_stored_once_or_dead_lettered_under_every_fault(
    es_server_9: EsTestServer, tmp_path: Path
) -> None:
    server = es_server_9
    normal = entries_of("c-normal", 1500)
    poisoned = entries_of("c-poison", 40, message="poison {i}")
    huge = entries_of("c-huge", 1, message="x" * 60_000)
    everything = [*normal, *poisoned[:20], *huge, *poisoned[20:]]
    server.faults.reject_items(fraction=0.2, seed=7)  # 20 % of items: 429
    server.faults.fail_requests(503, times=3)  # whole requests
    server.faults.mapping_error = lambda source: source.get("message", "").startswith("poison")
    server.faults.max_content_length = 40_000  # 413: split, and the huge one alone is too large
    running = await start_sink(
        server, tmp_path, everything, chunk=200, compression=False, batch_max_docs=500
    )
    await finish(running, len(everything))

    documents = stored(server, STREAM)
    ids = Counter(d["_id"] for d in documents)
    assert max(ids.values()) == 1
    messages = sorted(d["_source"]["message"] for d in documents)
    assert messages == sorted(f"line {i}" for i in range(1500))
    dead = stored(server, DLQ)
    assert len(dead) == 40
    assert Counter(d["_source"]["error"]["type"] for d in dead) == {
        "document_parsing_exception": 40
    }
    originals = {orjson.loads(d["_source"]["event"]["original"])["message"] for d in dead}
    assert originals == {f"poison {i}" for i in range(40)}
    for d in dead:
        assert d["_source"]["shipper"]["target_index"] == STREAM
        assert d["_id"] == d["_source"]["shipper"]["document_id"]
        assert d["_source"]["http"]["response"]["status_code"] == 400
    # The document too large for the cluster is too large for the dead-letter stream as
    # well: the dead-letter file holds it, with its reason.
    (line,) = (tmp_path / "dead-letter" / "dead-letter.ndjson").read_bytes().splitlines()
    in_file = orjson.loads(line)
    assert in_file["error"]["type"] == "request_entity_too_large"
    assert in_file["http"]["response"]["status_code"] == 413
    assert orjson.loads(in_file["event"]["original"])["message"] == "x" * 60_000
    # Every batch acknowledged exactly once, nothing left behind.
    assert running.source.acked == len(everything)
    assert server.stats.items_by_status[429] > 0
    assert running.dead.count == 41 and running.dead.file_count == 1


@pytest.mark.es_in_process  # faults and the store are injected in process
async def test_templates_mappings_and_ilm(es_server_8: EsTestServer, tmp_path: Path) -> None:
    server = es_server_8
    # A user's template for a routed stream: must be left alone.
    server.store.put_template(
        "shipper-logs-mine-default",
        {"index_patterns": ["logs-mine-default"], "priority": 300, "data_stream": {}},
    )
    entries = [*entries_of("a", 3), *entries_of("b", 2, index="logs-web-prod")]
    entries += entries_of("c", 1, index="logs-mine-default")
    running = await start_sink(
        server, tmp_path, entries, ilm={"enabled": True, "delete_after": "7d"}
    )
    await finish(running, len(entries))
    templates = server.store.templates
    assert templates["shipper-logs-docker-default"]["index_patterns"] == [STREAM]
    assert templates["shipper-logs-web-prod"]["priority"] == 200
    assert templates[f"shipper-{DLQ}"]["composed_of"] == [
        "shipper-deadletter-mappings",
        "shipper-logs-settings",
    ]
    assert "_meta" not in templates["shipper-logs-mine-default"]
    assert "logs" in templates  # the built-in template is still there for other streams
    policy = server.store.ilm_policies["shipper-logs"]["policy"]
    assert policy["phases"]["delete"]["min_age"] == "7d"
    _, mapping = await server.probe().request("GET", "/logs-web-prod/_mapping")
    properties = next(iter(mapping.values()))["mappings"]["properties"]
    assert properties["@timestamp"]["type"] == "date_nanos"
    assert properties["container"]["properties"]["labels"]["type"] == "flattened"
    assert len(stored(server, "logs-web-prod")) == 2
    # Starting again changes nothing (idempotent: same digest).
    before = dict(server.stats.requests)
    second = await start_sink(
        server, tmp_path, entries_of("a", 3), ilm={"enabled": True, "delete_after": "7d"}
    )
    await finish(second, 3)
    puts = [
        k for k, v in server.stats.requests.items() if k.startswith("PUT") and v != before.get(k, 0)
    ]
    assert puts == []


@pytest.mark.es_in_process  # faults and the store are injected in process
async def test_rejected_items_do_not_hold_up_other_containers(
    es_server_9: EsTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One worker; container 'stuck' is rejected (429) for 3 s; 'other' comes after it in the
    buffer and must be stored long before that, while 'stuck' is stored once it recovers."""
    server = es_server_9
    reject_until = time.monotonic() + 3.0
    original = es_bulk._execute_one

    def execute_one(store: Any, op: str, meta: dict[str, Any], source: Any, *rest: Any) -> Any:
        if b"c-stuck" in (source or b"") and time.monotonic() < reject_until:
            return es_bulk._failure(
                op, meta["_index"], meta["_id"], 429, {"type": "es_rejected_execution_exception"}
            )
        return original(store, op, meta, source, *rest)

    monkeypatch.setattr(es_bulk, "_execute_one", execute_one)
    stuck = entries_of("c-stuck", 200)
    running = await start_sink(
        server, tmp_path, stuck, chunk=100, max_concurrent_requests=1, retry_max_backoff_s=1.0
    )
    await asyncio.sleep(0.3)
    written = time.monotonic()
    running.source.add(entries_of("c-other", 10))
    while len(stored(server, STREAM)) < 10:
        await asyncio.sleep(0.02)
    delay = time.monotonic() - written
    assert delay < 1.0, f"other container waited {delay:.2f}s behind rejected documents"
    assert running.sink.retry_queue_size > 0
    await finish(running, 210)
    assert len(stored(server, STREAM)) == 210


@pytest.mark.es_in_process  # faults and the store are injected in process
async def test_dead_letters_fall_back_to_a_file(es_server_9: EsTestServer, tmp_path: Path) -> None:
    server = es_server_9
    # Everything sent to the dead-letter stream is refused, too.
    server.faults.mapping_error = lambda source: "poison" in orjson.dumps(source).decode()
    entries = [*entries_of("a", 5), *entries_of("p", 3, message="poison {i}")]
    running = await start_sink(server, tmp_path, entries)
    await finish(running, len(entries))
    lines = (tmp_path / "dead-letter" / "dead-letter.ndjson").read_bytes().splitlines()
    assert len(lines) == 3
    assert {orjson.loads(line)["error"]["type"] for line in lines} == {"document_parsing_exception"}
    assert len(stored(server, STREAM)) == 5
    assert running.dead.file_count == 3


async def test_wrong_credentials_are_named_and_nothing_is_lost(tmp_path: Path) -> None:
    server = EsTestServer(9, users={"elastic": "right"})
    await server.start(0)
    try:
        entries = entries_of("a", 20)
        running = await start_sink(server, tmp_path, entries, username="elastic", password="x")
        deadline = time.monotonic() + 5
        while "credentials" not in (running.sink.last_error or ""):
            assert time.monotonic() < deadline, running.sink.last_error
            await asyncio.sleep(0.05)
        assert "HTTP 401" in (running.sink.last_error or "")
        running.sink.stop()
        assert running.task is not None
        await asyncio.wait_for(running.task, 10)
        await running.sink._connection.close()
        assert running.source.acked == 0
        fixed = await start_sink(server, tmp_path, entries, username="elastic", password="right")
        await finish(fixed, 20)
        assert fixed.sink.last_error is None
        assert len(stored(server, STREAM)) == 20
    finally:
        await server.stop()


@pytest.mark.parametrize("kind", ["api_key", "bearer_token", "bearer_token_file"])
async def test_api_key_and_bearer_token(tmp_path: Path, kind: str) -> None:
    import base64

    server = EsTestServer(8, api_keys={"kid": "ksecret"}, bearer_tokens={"tok3n"})
    await server.start(0)
    try:
        token_file = tmp_path / "token"
        token_file.write_text("tok3n\n")
        auth = {
            "api_key": base64.b64encode(b"kid:ksecret").decode(),
            "bearer_token": "tok3n",
            "bearer_token_file": str(token_file),
        }
        running = await start_sink(server, tmp_path, entries_of("a", 5), **{kind: auth[kind]})
        await finish(running, 5)
        assert len(stored(server, STREAM)) == 5
    finally:
        await server.stop()


@pytest.mark.es_in_process  # the server's request delay is injected in process
async def test_requests_are_cut_by_documents_and_bytes_and_several_are_in_flight(
    es_server_9: EsTestServer, tmp_path: Path
) -> None:
    server = es_server_9
    entries = entries_of("c-batch", 600)
    entry_bytes = len(entries[0])
    # 100 documents per request at most, by count...
    running = await start_sink(
        server, tmp_path, entries, chunk=50, batch_max_docs=100, max_concurrent_requests=1
    )
    await finish(running, 600)
    assert server.stats.bulk_requests == 6
    # ...and by bytes: 20 documents' worth per request (a read stops short of overshooting).
    before = server.stats.bulk_requests
    running = await start_sink(
        server, tmp_path / "b", entries_of("c-bytes", 200), chunk=5,
        batch_max_bytes=20 * entry_bytes, max_concurrent_requests=1,
    )  # fmt: skip
    await finish(running, 200)
    assert 10 <= server.stats.bulk_requests - before <= 14
    # Three requests in flight at once: six slow requests take two rounds, not six.
    running = await start_sink(
        server, tmp_path / "c", [], chunk=100, batch_max_docs=100, max_concurrent_requests=3
    )
    while not running.sink._prepared:  # templates installed before the cluster slows down
        await asyncio.sleep(0.01)
    server.faults.delay_s = 0.5
    before = server.stats.bulk_requests
    started = time.monotonic()
    running.source.add(entries_of("c-slow", 600))
    await finish(running, 600)
    elapsed = time.monotonic() - started
    assert server.stats.bulk_requests - before == 6
    assert elapsed < 2.2, f"six 0.5 s requests, three at a time, took {elapsed:.1f}s"
    assert len(stored(server, STREAM)) == 1400


async def test_a_lone_record_waits_for_company_no_longer_than_the_flush_interval(
    es_server_9: EsTestServer, tmp_path: Path
) -> None:
    server = es_server_9
    running = await start_sink(server, tmp_path, [], flush_interval_s=0.6)
    await asyncio.sleep(0.3)
    added = time.monotonic()
    running.source.add(entries_of("c-lone", 1))
    while not stored(server, STREAM):
        await asyncio.sleep(0.01)
    waited = time.monotonic() - added
    assert 0.55 <= waited < 1.5, waited  # held for company for the interval, then sent
    await finish(running, 1)


@pytest.mark.es_in_process  # faults are injected in process
async def test_a_container_whose_documents_are_all_refused_does_not_hold_up_others(
    es_server_9: EsTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every document of 'c-bad' can never be indexed, and for 4 s the dead-letter stream
    itself answers 429: its dead letters wait in the retry queue, not in the worker, so
    'c-good', behind it in the buffer, is stored at once."""
    server = es_server_9
    server.faults.mapping_error = lambda source: source.get("message", "").startswith("refused")
    busy_until = time.monotonic() + 4.0
    original = es_bulk._execute_one

    def execute_one(store: Any, op: str, meta: dict[str, Any], source: Any, *rest: Any) -> Any:
        if meta.get("_index") == DLQ and time.monotonic() < busy_until:
            return es_bulk._failure(
                op, meta["_index"], meta["_id"], 429, {"type": "es_rejected_execution_exception"}
            )
        return original(store, op, meta, source, *rest)

    monkeypatch.setattr(es_bulk, "_execute_one", execute_one)
    bad = entries_of("c-bad", 400, message="refused {i}")
    running = await start_sink(
        server, tmp_path, bad, chunk=100, max_concurrent_requests=1, retry_max_backoff_s=1.0
    )
    await asyncio.sleep(0.5)
    written = time.monotonic()
    running.source.add(entries_of("c-good", 10))
    while len(stored(server, STREAM)) < 10:
        assert time.monotonic() - written < 10
        await asyncio.sleep(0.02)
    delay = time.monotonic() - written
    assert delay < 1.0, f"the good container waited {delay:.2f}s behind refused documents"
    assert time.monotonic() < busy_until  # while the dead letters were still refused
    await finish(running, 410, timeout_s=60)
    dead = stored(server, DLQ)
    assert len(dead) == 400 and len(stored(server, STREAM)) == 10
    assert running.dead.file_count == 0  # retried, never given up on to the file


@pytest.mark.es_in_process  # the refusals are injected in process
async def test_documents_refused_for_a_privilege_are_kept_retried_slowly_and_reported(
    es_server_9: EsTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 403 (security_exception on one stream): not dead-lettered but kept, shown in
    last_error (readyz) while it lasts, and stored once the privilege is granted."""
    server = es_server_9
    granted = asyncio.Event()
    original = es_bulk._execute_one

    def execute_one(store: Any, op: str, meta: dict[str, Any], source: Any, *rest: Any) -> Any:
        if meta.get("_index") == "logs-secret-default" and not granted.is_set():
            return es_bulk._failure(
                op,
                meta["_index"],
                meta["_id"],
                403,
                {
                    "type": "security_exception",
                    "reason": "action [indices:data/write/bulk[s]] is unauthorized for user",
                },
            )
        return original(store, op, meta, source, *rest)

    monkeypatch.setattr(es_bulk, "_execute_one", execute_one)
    entries = [*entries_of("c-open", 5), *entries_of("c-secret", 5, index="logs-secret-default")]
    running = await start_sink(server, tmp_path, entries, retry_max_backoff_s=0.5)
    deadline = time.monotonic() + 10
    while len(stored(server, STREAM)) < 5 or "privilege" not in (running.sink.last_error or ""):
        assert time.monotonic() < deadline, running.sink.last_error
        await asyncio.sleep(0.05)
    assert "security_exception" in (running.sink.last_error or "")
    assert running.sink.retry_queue_size == 5  # kept, not dead-lettered
    granted.set()  # the operator grants create_doc on logs-secret-default
    await finish(running, 10, timeout_s=30)
    assert len(stored(server, "logs-secret-default")) == 5
    assert stored(server, DLQ) == [] and running.dead.count == 0


@pytest.mark.es_in_process  # the refusal of whole requests is injected in process
async def test_a_whole_request_refused_with_403_is_retried_slowly_and_reported(
    es_server_9: EsTestServer, tmp_path: Path
) -> None:
    server = es_server_9
    running = await start_sink(server, tmp_path, [])
    while not running.sink._prepared:
        await asyncio.sleep(0.01)
    server.faults.fail_requests(403, times=1)
    added = time.monotonic()
    running.source.add(entries_of("c-a", 3))
    deadline = time.monotonic() + 5
    while "privilege" not in (running.sink.last_error or ""):
        assert time.monotonic() < deadline, running.sink.last_error
        await asyncio.sleep(0.05)
    await finish(running, 3, timeout_s=30)
    waited = time.monotonic() - added
    assert waited >= 5.0  # an operator is needed: not hammered (AUTH_MIN_DELAY_S)
    assert running.sink.last_error is None and len(stored(server, STREAM)) == 3


@pytest.mark.es_in_process  # the stream is made before the shipper's template, in process
async def test_failure_store_on_a_stream_created_without_it_dead_letters_and_says_so(
    es_server_9: EsTestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`failure_store: on` reaches only streams created after it: one that existed keeps
    answering `not_enabled`, its refused documents are dead-lettered as before and the operator
    is told once how to enable it; a new stream gets it, and keeps its refused documents."""
    server = es_server_9
    server.store.create_data_stream(STREAM)  # by the built-in logs template: no failure store
    server.faults.mapping_error = lambda source: source.get("message", "").startswith("poison")
    fresh = "logs-fresh-default"
    entries = [
        *entries_of("c-old", 5, message="poison {i}"),
        *entries_of("c-old-ok", 5),
        *entries_of("c-new", 3, index=fresh, message="poison {i}"),
    ]
    used_before = telemetry.counter_total_where(telemetry.bulk_items, failure_store="used")
    running = await start_sink(server, tmp_path, entries, failure_store="on")
    await finish(running, len(entries))

    assert server.store.data_streams[STREAM].failure_store is False
    assert server.store.data_streams[fresh].failure_store is True
    assert sorted(d["_source"]["message"] for d in stored(server, STREAM)) == [
        f"line {i}" for i in range(5)
    ]
    dead = stored(server, DLQ)
    assert sorted(orjson.loads(d["_source"]["event"]["original"])["message"] for d in dead) == [
        f"poison {i}" for i in range(5)
    ]
    assert stored(server, fresh) == []
    kept = stored(server, f"{fresh}::failures")
    assert sorted(d["_source"]["document"]["source"]["message"] for d in kept) == [
        f"poison {i}" for i in range(3)
    ]
    assert (
        telemetry.counter_total_where(telemetry.bulk_items, failure_store="used") - used_before == 3
    )
    told = [r for r in caplog.records if "has no failure store" in r.getMessage()]
    assert len(told) == 1
    assert told[0].fields["data_stream"] == STREAM  # type: ignore[attr-defined]
