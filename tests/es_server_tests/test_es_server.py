"""Tests of the Elasticsearch-compatible test server.

Tests taking ``es_server``/``es_server_8``/``es_server_9`` speak plain HTTP (credentials and TLS
from ``probe()``/``shipper_config()``) and use names unique to the test, so with
``SHIPPER_TEST_ES_URL`` set they run unchanged against a real cluster: the same assertions then
check the fake against real Elasticsearch. Tests taking ``server`` (or building their own
EsTestServer) cover what only the fake has: fault injection, counters, count-only mode.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import subprocess
import sys
import uuid
import zlib
from typing import Any

import aiohttp
import orjson
import pytest
from elasticsearch import AsyncElasticsearch, AuthenticationException, BadRequestError

from shipper.sinks.elasticsearch.client import BULK_PARAMS
from shipper.sinks.elasticsearch.response import all_created_count
from tests.es_server import EsTestServer, encoding
from tests.es_server.app import filter_path
from tests.es_server.probe import Response

NDJSON = {"Content-Type": "application/x-ndjson"}
STATUS_FILTER = "errors,items.*.error,items.*.status"


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def ndjson(*lines: dict[str, Any]) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


async def post(
    url: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=headers or NDJSON) as r:
        raw = await r.read()
        return r.status, (orjson.loads(raw) if raw else None), r.headers


async def bulk(es: Any, body: bytes, query: str = "", **headers: str) -> Response:
    response: Response = await es.probe().send(
        "POST", "/_bulk" + query, body, {**NDJSON, **headers}
    )
    return response


def client(es: Any) -> AsyncElasticsearch:
    """The official client, connected the way the shipper would be (shipper_config())."""
    config = es.shipper_config()
    options: dict[str, Any] = {}
    if "username" in config:
        options["basic_auth"] = (config["username"], config["password"])
    if "api_key" in config:
        options["api_key"] = config["api_key"]
    if "ca_certs" in config:
        options["ca_certs"] = config["ca_certs"]
    if config.get("verify_certs") is False:
        options.update(verify_certs=False, ssl_show_warn=False)
    return AsyncElasticsearch(config["hosts"], **options)


async def index_uuid(es: Any, name: str) -> str:
    _, body = await es.probe().request("GET", f"/{name}")
    return str(body[name]["settings"]["index"]["uuid"])


@pytest.fixture
def uid() -> str:
    """A suffix that keeps this test's indices apart from anything else on a real cluster."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
async def server() -> Any:
    srv = EsTestServer(9)
    await srv.start(0)
    yield srv
    await srv.stop()


# -- behaviour checked against real Elasticsearch when SHIPPER_TEST_ES_URL is set --------------


async def test_root_and_product_header_with_official_client(es_server_9: Any) -> None:
    async with client(es_server_9) as es:
        info = await es.info()
        assert info["version"]["number"].startswith("9.")
        assert info["tagline"] == "You Know, for Search"
        assert info.meta.headers["X-Elastic-Product"] == "Elasticsearch"
        assert info.meta.headers["Content-Type"] == (
            "application/vnd.elasticsearch+json;compatible-with=9"
        )


async def test_client_9_is_rejected_by_8x_server(es_server_8: Any) -> None:
    async with client(es_server_8) as es:
        with pytest.raises(BadRequestError) as info:
            await es.info()
    error = info.value.body["error"]
    assert error["type"] == "media_type_header_exception"
    assert error["caused_by"]["reason"] == (
        "Accept version must be either version 8 or 7, but found 9. "
        "Accept=application/vnd.elasticsearch+json; compatible-with=9"
    )


async def test_8x_accepts_compat_8_and_mismatch_is_rejected(es_server_8: Any, uid: str) -> None:
    headers = {
        "Accept": "application/vnd.elasticsearch+json; compatible-with=8",
        "Content-Type": "application/vnd.elasticsearch+x-ndjson; compatible-with=8",
    }
    body = ndjson({"create": {"_index": f"a-{uid}"}}, {"x": 1})
    resp = await bulk(es_server_8, body, **headers)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/vnd.elasticsearch+json;compatible-with=8"
    resp = await bulk(es_server_8, body, **{**headers, "Content-Type": "application/x-ndjson"})
    assert resp.status == 400
    assert resp.body["error"]["caused_by"]["reason"].startswith(
        "A compatible version is required on both Content-Type and Accept headers if either one "
        "has requested a compatible version. Accept="
    )


async def test_bulk_item_shapes_and_409(es_server: Any, uid: str) -> None:
    name = f"plain-{uid}"
    body = ndjson(
        {"create": {"_index": name, "_id": "1"}},
        {"a": 1},
        {"create": {"_index": name, "_id": "1"}},
        {"a": 2},
        {"index": {"_index": name}},
        {"a": 3},
    )
    resp = await bulk(es_server, body)
    assert resp.status == 200
    assert list(resp.body) == ["errors", "took", "items"]
    assert resp.body["errors"] is True
    first, dup, auto = (next(iter(i.values())) for i in resp.body["items"])
    assert first == {
        "_index": name,
        "_id": "1",
        "_version": 1,
        "result": "created",
        "_shards": {"total": 2, "successful": 1, "failed": 0},
        "_seq_no": 0,
        "_primary_term": 1,
        "status": 201,
    }
    assert dup == {
        "_index": name,
        "_id": "1",
        "status": 409,
        "error": {
            "type": "version_conflict_engine_exception",
            "reason": "[1]: version conflict, document already exists (current version [1])",
            "index_uuid": await index_uuid(es_server, name),
            "shard": "0",
            "index": name,
        },
    }
    assert len(auto["_id"]) == 20 and auto["_seq_no"] == 1
    docs = await es_server.probe().fetch_all(name)
    assert sorted(d["_source"]["a"] for d in docs) == [1, 3]


async def test_bulk_requires_trailing_newline(es_server: Any, uid: str) -> None:
    resp = await bulk(es_server, b'{"create":{"_index":"a-' + uid.encode() + b'"}}\n{"x":1}')
    assert resp.status == 400
    assert resp.body["error"]["type"] == "illegal_argument_exception"
    assert resp.body["error"]["reason"] == "The bulk request must be terminated by a newline [\\n]"


async def test_logs_data_stream_from_the_builtin_template(es_server: Any, uid: str) -> None:
    stream = f"logs-app{uid}-default"
    body = ndjson(
        {"create": {"_index": stream}},
        {"@timestamp": "2024-05-01T10:00:00.123Z", "message": "hello"},
        {"index": {"_index": stream}},
        {"@timestamp": "2024-05-01T10:00:00Z"},
        {"create": {"_index": stream, "_id": "nots"}},
        {"message": "no timestamp"},
    )
    resp = await bulk(es_server, body)
    # logs@default-pipeline ran, hence ingest_took.
    assert list(resp.body) == ["errors", "took", "ingest_took", "items"]
    ok, index_op, no_ts = (next(iter(i.values())) for i in resp.body["items"])
    assert ok["_index"].startswith(f".ds-{stream}-") and ok["_index"].endswith("-000001")
    assert index_op == {
        "_index": stream,
        "_id": None,
        "status": 400,
        "error": {
            "type": "illegal_argument_exception",
            "reason": "only write ops with an op_type of create are allowed in data streams",
        },
    }
    # ... which also gives a document without @timestamp the ingest time.
    assert no_ts["status"] == 201 and no_ts["_index"] == ok["_index"]
    _, got = await es_server.probe().request("GET", f"/{ok['_index']}/_doc/nots")
    assert got["_source"]["message"] == "no timestamp"
    assert isinstance(got["_source"]["@timestamp"], str)
    assert got["_source"]["@timestamp"].endswith("Z")
    _, ds = await es_server.probe().request("GET", f"/_data_stream/{stream}")
    (entry,) = ds["data_streams"]
    assert entry["template"] == "logs"
    assert [i["index_name"] for i in entry["indices"]] == [ok["_index"]]
    _, mapping = await es_server.probe().request("GET", f"/{stream}/_mapping")
    assert mapping[ok["_index"]]["mappings"]["properties"]["message"] == {"type": "match_only_text"}


async def test_data_stream_without_pipeline_requires_timestamp(es_server: Any, uid: str) -> None:
    probe = es_server.probe()
    template = {"index_patterns": [f"tsreq{uid}-*"], "priority": 317, "data_stream": {}}
    await probe.request("PUT", f"/_index_template/tsreq{uid}", template)
    resp = await bulk(es_server, ndjson({"create": {"_index": f"tsreq{uid}-x"}}, {"message": "x"}))
    assert list(resp.body) == ["errors", "took", "items"]
    (item,) = (i["create"] for i in resp.body["items"])
    assert item["status"] == 400
    assert item["error"] == {
        "type": "document_parsing_exception",
        "reason": "[1:15] failed to parse: data stream timestamp field [@timestamp] is missing",
        "caused_by": {
            "type": "illegal_argument_exception",
            "reason": "data stream timestamp field [@timestamp] is missing",
        },
    }


async def test_template_priority_clash_and_custom_template(es_server: Any, uid: str) -> None:
    probe = es_server.probe()
    pattern = f"logs-t{uid}-*"
    tpl: dict[str, Any] = {"index_patterns": [pattern], "priority": 100, "data_stream": {}}
    resp = await probe.send("PUT", f"/_index_template/t{uid}", orjson.dumps(tpl))
    assert resp.status == 400
    assert resp.body["error"]["reason"] == (
        f"index template [t{uid}] has index patterns [{pattern}] matching patterns from "
        "existing templates [logs] with patterns (logs => [logs-*-*]) that have the same "
        "priority [100], multiple index templates may not match during index creation, "
        "please use a different priority"
    )
    tpl["priority"] = 200
    tpl["template"] = {"mappings": {"properties": {"n": {"type": "long"}}}}
    status, ack = await probe.request("PUT", f"/_index_template/t{uid}", tpl)
    assert (status, ack) == (200, {"acknowledged": True})
    body = ndjson({"create": {"_index": f"logs-t{uid}-x"}}, {"@timestamp": 1, "n": "abc"})
    resp = await bulk(es_server, body)
    item = resp.body["items"][0]["create"]
    assert item["status"] == 400
    assert item["error"]["reason"] == (
        "[1:21] failed to parse field [n] of type [long] in document with id "
        f"'{item['_id']}'. Preview of field's value: 'abc'"
    )


async def test_object_vs_concrete_conflicts(es_server: Any, uid: str) -> None:
    name = f"m-{uid}"
    body = ndjson(
        {"create": {"_index": name, "_id": "1"}},
        {"a": {"b": 1}, "s": "text"},
        {"create": {"_index": name, "_id": "2"}},
        {"a": 5},
        {"create": {"_index": name, "_id": "3"}},
        {"s": {"x": 1}},
    )
    resp = await bulk(es_server, body)
    _, obj, concrete = (i["create"] for i in resp.body["items"])
    assert obj["error"]["reason"] == (
        "[1:6] object mapping for [a] tried to parse field [a] as object, but found a concrete value"
    )
    assert concrete["error"]["caused_by"] == {
        "type": "illegal_state_exception",
        "reason": "Can't get text on a START_OBJECT at 1:6",
    }


async def test_search_count_sort_and_probe(es_server: Any, uid: str) -> None:
    name = f"s-{uid}"
    lines: list[dict[str, Any]] = []
    for i in range(25):
        lines += [{"create": {"_index": name, "_id": f"d{i}"}}, {"n": i, "msg": f"hello {i % 2}"}]
    await bulk(es_server, ndjson(*lines), "?refresh=true")
    probe = es_server.probe()
    assert await probe.count(name) == 25
    docs = await probe.fetch_all(name)
    assert [d["_id"] for d in docs] == [f"d{i}" for i in range(25)]
    q = {
        "query": {"bool": {"filter": [{"range": {"n": {"gte": 10}}}, {"match": {"msg": "1"}}]}},
        "sort": [{"n": "desc"}],
        "size": 3,
    }
    _, res = await probe.request("POST", f"/{name}/_search", q)
    assert [h["_id"] for h in res["hits"]["hits"]] == ["d23", "d21", "d19"]
    assert res["hits"]["total"] == {"value": 7, "relation": "eq"}
    resp = await probe.send("POST", f"/{name}/_search", orjson.dumps({"sort": ["_id"]}))
    assert resp.status == 400
    assert resp.body["error"]["root_cause"][0]["reason"].startswith(
        "Fielddata access on the _id field is disallowed"
    )
    resp = await probe.send("POST", f"/{name}/_search", orjson.dumps({"size": 10001}))
    assert resp.status == 400
    assert "Result window is too large" in resp.body["error"]["caused_by"]["reason"]


async def test_a_field_neither_indexed_nor_with_doc_values_is_kept_but_not_searchable(
    es_server: Any, uid: str
) -> None:
    """As ECS maps event.original (and json_logs.keep_original relies on): in _source only."""
    name = f"o-{uid}"
    mapping = {
        "mappings": {
            "properties": {
                "event": {
                    "properties": {
                        "original": {"type": "keyword", "index": False, "doc_values": False}
                    }
                },
                "msg": {"type": "keyword"},
            }
        }
    }
    probe = es_server.probe()
    status, _ = await probe.request("PUT", f"/{name}", mapping)
    assert status == 200
    line = '{"msg":"x","password":"' + "p" * 40000 + '"}'  # longer than a keyword term may be
    await bulk(
        es_server,
        ndjson({"create": {"_index": name, "_id": "d"}}, {"event": {"original": line}, "msg": "x"}),
        "?refresh=true",
    )
    (doc,) = await probe.fetch_all(name)
    assert doc["_source"]["event"]["original"] == line
    query = {"query": {"term": {"event.original": line}}}
    resp = await probe.send("POST", f"/{name}/_search", orjson.dumps(query))
    assert resp.status == 400
    assert resp.body["error"]["type"] == "search_phase_execution_exception"
    assert resp.body["error"]["root_cause"][0]["reason"] == (
        "failed to create query: Cannot search on field [event.original] since it is not "
        "indexed nor has doc values."
    )
    found = {"query": {"term": {"msg": "x"}}}
    _, res = await probe.request("POST", f"/{name}/_search", found)
    assert res["hits"]["total"]["value"] == 1


async def test_refresh_visibility(es_server: Any, uid: str) -> None:
    name = f"v-{uid}"
    probe = es_server.probe()
    # No periodic refresh (and so no race with it): only the explicit refresh shows the write.
    await probe.request("PUT", f"/{name}", {"settings": {"index": {"refresh_interval": "-1"}}})
    await bulk(es_server, ndjson({"create": {"_index": name}}, {"x": 1}))
    _, counted = await probe.request("GET", f"/{name}/_count")
    assert counted["count"] == 0
    assert await probe.count(name) == 1


async def test_gzip_request_body(es_server: Any, uid: str) -> None:
    body = gzip.compress(ndjson({"create": {"_index": f"g-{uid}", "_id": "1"}}, {"x": 1}))
    resp = await bulk(es_server, body, **{"Content-Encoding": "gzip"})
    assert resp.status == 200
    assert resp.body["items"][0]["create"]["status"] == 201
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    deflated = raw_deflate.compress(ndjson({"create": {"_index": f"g-{uid}", "_id": "2"}}, {}))
    resp = await bulk(es_server, deflated + raw_deflate.flush(), **{"Content-Encoding": "deflate"})
    assert resp.body["items"][0]["create"]["status"] == 201
    assert await es_server.probe().count(f"g-{uid}") == 2


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"this is not gzip at all\n", id="not-gzip"),
        pytest.param(
            gzip.compress(b'{"create":{"_index":"x"}}\n{}\n')[:-8] + b"\0" * 8, id="bad-crc"
        ),
    ],
)
async def test_corrupt_gzip_body_closes_the_connection(es_server: Any, body: bytes) -> None:
    # Netty's decompressor throws; AbstractHttpServerTransport.onException closes the channel:
    # no status, no body, no X-Elastic-Product. Clients see a dropped connection.
    with pytest.raises(aiohttp.ClientConnectionError):
        await bulk(es_server, body, **{"Content-Encoding": "gzip"})
    status, _ = await es_server.probe().request("GET", "/")
    assert status == 200


async def test_the_all_created_answer_is_what_the_shipper_recognises(
    es_server: Any, uid: str
) -> None:
    # The shipper takes this answer unparsed when it is byte for byte the expected one: the
    # server (real or test) must write exactly that, or every bulk falls back to parsing.
    name = f"ok-{uid}"
    body = ndjson(
        *[
            line
            for i in range(3)
            for line in ({"create": {"_index": name, "_id": str(i)}}, {"a": i})
        ]
    )
    resp = await bulk(es_server, body, "?filter_path=" + BULK_PARAMS["filter_path"])
    assert resp.raw == b'{"errors":false,"items":[%s]}' % b",".join(
        [b'{"create":{"status":201}}'] * 3
    )
    assert all_created_count(resp.raw) == 3


async def test_bulk_filter_path_prunes_like_elasticsearch(es_server: Any, uid: str) -> None:
    name = f"fp-{uid}"
    body = ndjson(
        {"create": {"_index": name, "_id": "1"}},
        {"a": 1},
        {"create": {"_index": name, "_id": "1"}},
        {"a": 2},
        {"create": {"_index": name, "_id": "2"}},
        {"a": "x"},
    )
    resp = await bulk(es_server, body, "?filter_path=" + STATUS_FILTER)
    conflict = {
        "type": "version_conflict_engine_exception",
        "reason": "[1]: version conflict, document already exists (current version [1])",
        "index_uuid": await index_uuid(es_server, name),
        "shard": "0",
        "index": name,
    }
    parse_error = {
        "type": "document_parsing_exception",
        "reason": "[1:6] failed to parse field [a] of type [long] in document with id '2'. "
        "Preview of field's value: 'x'",
        "caused_by": {"type": "illegal_argument_exception", "reason": 'For input string: "x"'},
    }
    # Every item has a status, so items stay aligned with the request; took is gone.
    assert resp.body == {
        "errors": True,
        "items": [
            {"create": {"status": 201}},
            {"create": {"status": 409, "error": conflict}},
            {"create": {"status": 400, "error": parse_error}},
        ],
    }
    # Without items.*.status, items without an error are pruned away entirely...
    again = ndjson(
        {"create": {"_index": name, "_id": "3"}},
        {"a": 3},
        {"create": {"_index": name, "_id": "1"}},
        {"a": 2},
    )
    resp = await bulk(es_server, again, "?filter_path=errors,items.*.error")
    assert resp.body == {"errors": True, "items": [{"create": {"error": conflict}}]}
    # ... and with no error at all, so is the items array.
    fine = ndjson({"create": {"_index": name, "_id": "4"}}, {"a": 4})
    resp = await bulk(es_server, fine, "?filter_path=errors,items.*.error")
    assert resp.body == {"errors": False}


async def test_filter_path_does_not_apply_to_errors(es_server: Any, uid: str) -> None:
    # RestChannel.newErrorBuilder disables filtering: an error keeps its type and reason.
    unterminated = b'{"create":{"_index":"e-' + uid.encode() + b'"}}\n{"x":1}'
    resp = await bulk(es_server, unterminated, "?filter_path=" + STATUS_FILTER)
    assert resp.status == 400
    assert resp.body["status"] == 400
    assert resp.body["error"]["type"] == "illegal_argument_exception"
    assert resp.body["error"]["reason"] == "The bulk request must be terminated by a newline [\\n]"
    resp = await es_server.probe().send("GET", f"/missing-{uid}/_doc/1?filter_path=found")
    assert resp.status == 404
    assert resp.body["error"]["type"] == "index_not_found_exception"


async def test_rollover_starts_a_new_backing_index(es_server: Any, uid: str) -> None:
    stream = f"logs-roll{uid}-default"
    probe = es_server.probe()
    doc = {"@timestamp": "2024-05-01T10:00:00Z", "message": "once"}
    resp = await bulk(es_server, ndjson({"create": {"_index": stream, "_id": "same"}}, doc))
    old = resp.body["items"][0]["create"]["_index"]
    _, rolled = await probe.request("POST", f"/{stream}/_rollover")
    new = rolled["new_index"]
    assert rolled == {
        "acknowledged": True,
        "shards_acknowledged": True,
        "old_index": old,
        "new_index": new,
        "rolled_over": True,
        "dry_run": False,
        "lazy": False,
        "conditions": {},
    }
    assert new.startswith(f".ds-{stream}-") and new.endswith("-000002")
    _, ds = await probe.request("GET", f"/_data_stream/{stream}")
    (entry,) = ds["data_streams"]
    assert entry["generation"] == 2
    assert [i["index_name"] for i in entry["indices"]] == [old, new]
    # The limit docs/delivery.md names: _id is unique per backing index, so the same line sent
    # again after a rollover is stored a second time.
    resp = await bulk(es_server, ndjson({"create": {"_index": stream, "_id": "same"}}, doc))
    item = resp.body["items"][0]["create"]
    assert (item["status"], item["_index"]) == (201, new)
    docs = await probe.fetch_all(stream)
    assert sorted((d["_index"], d["_id"]) for d in docs) == [(old, "same"), (new, "same")]
    resp = await probe.send("POST", f"/nope{uid}/_rollover")
    assert resp.status == 400
    assert resp.body["error"]["type"] == "illegal_argument_exception"
    assert resp.body["error"]["reason"] == f"rollover target [nope{uid}] does not exist"


# -- what only the in-process server has --------------------------------------------------------


async def test_gzip_limits_apply_to_the_inflated_body(server: EsTestServer) -> None:
    lines: list[dict[str, Any]] = [{"create": {"_index": "g"}}, {"message": "x" * 4000}]
    plain = ndjson(*lines)
    packed = gzip.compress(plain)
    assert len(packed) < 1000 < len(plain)
    server.faults.max_content_length = 1000
    resp = await bulk(server, packed, **{"Content-Encoding": "gzip"})
    # Netty's aggregator comes after the decompressor and counts the inflated bytes.
    assert (resp.status, resp.body) == (413, None)
    assert "X-Elastic-Product" not in resp.headers
    server.faults.max_content_length = 5000
    resp = await bulk(server, packed, **{"Content-Encoding": "gzip"})
    assert resp.status == 200
    assert server.stats.gzip_requests == 2
    assert server.stats.bytes_received == 2 * len(packed)  # what crossed the wire


async def test_count_only_status_filter_is_rendered_directly() -> None:
    full_server = EsTestServer(9, count_only=True)
    short_server = EsTestServer(9, count_only=True, count_containers=True)
    await full_server.start(0)
    await short_server.start(0)
    try:
        body = ndjson(
            {"create": {"_index": "logs-bench-default", "_id": "a"}},
            {"@timestamp": 1, "container": {"id": "c1"}},
            {"create": {"_index": "logs-bench-default", "_id": "a"}},
            {"@timestamp": 1, "container": {"id": "c1"}},
            {"index": {"_index": "logs-bench-default", "_id": "b"}},
            {"@timestamp": 1, "container": {"id": "c2"}},
            {"create": {"_index": "logs-bench-default", "_id": "c"}},
            {"@timestamp": 1, "container": {"id": "c2"}},
        )
        full = await bulk(full_server, body)
        assert list(full.body) == ["errors", "took", "ingest_took", "items"]
        assert [next(iter(i.values()))["status"] for i in full.body["items"]] == [
            201,
            409,
            400,
            201,
        ]
        # Order and spacing of the filter do not matter (ES tokenizes it into a set).
        short = await bulk(short_server, body, "?filter_path=items.*.status, errors,items.*.error")
        # The same as filtering the full response (each server has its own index uuid).
        (full_uuid,) = [i.uuid for i in full_server.store.indices.values()]
        (short_uuid,) = [i.uuid for i in short_server.store.indices.values()]
        expected = orjson.dumps(filter_path(full.body, STATUS_FILTER))
        assert short.body == orjson.loads(expected.replace(full_uuid.encode(), short_uuid.encode()))
        assert short.body["items"][0] == {"create": {"status": 201}}
        assert short.body["items"][2]["index"]["status"] == 400
        assert short.headers["X-Elastic-Product"] == "Elasticsearch"
        assert short_server.stats.items_by_container == {"c1": 1, "c2": 1}
        assert short_server.doc_count("logs-bench-default") == 2
    finally:
        await full_server.stop()
        await short_server.stop()


async def test_fault_injection(server: EsTestServer) -> None:
    server.faults.reject_items(count=1)
    body = ndjson({"create": {"_index": "f"}}, {"x": 1}, {"create": {"_index": "f"}}, {"x": 2})
    _, resp, _ = await post(server.url + "/_bulk", body)
    rejected = resp["items"][0]["create"]
    assert rejected["status"] == 429
    assert rejected["error"]["type"] == "es_rejected_execution_exception"
    assert resp["items"][1]["create"]["status"] == 201
    server.faults.fail_requests(429, times=1)
    status, resp, _ = await post(server.url + "/_bulk?filter_path=" + STATUS_FILTER, body)
    assert status == 429 and resp["error"]["type"] == "es_rejected_execution_exception"
    server.faults.fail_requests(503, times=1)
    status, resp, _ = await post(server.url + "/_bulk?filter_path=" + STATUS_FILTER, body)
    assert (status, resp["status"]) == (503, 503)  # filter_path leaves error bodies whole
    assert resp["error"]["reason"] == (
        "blocked by: [SERVICE_UNAVAILABLE/1/state not recovered / initialized];"
    )
    server.faults.max_content_length = 10
    status, resp, headers = await post(server.url + "/_bulk", body)
    assert status == 413 and resp is None and "X-Elastic-Product" not in headers
    assert server.stats.items_by_status[429] == 1


async def test_restart_keeps_data_and_refuses_while_down(server: EsTestServer) -> None:
    await post(server.url + "/_bulk", ndjson({"create": {"_index": "r", "_id": "1"}}, {"x": 1}))
    port = server.port
    await server.stop()
    with pytest.raises(aiohttp.ClientConnectorError):
        await post(f"http://127.0.0.1:{port}/", b"")
    await server.start(port)
    assert await server.probe().count("r") == 1


async def test_auth_basic_and_api_key() -> None:
    srv = EsTestServer(9, users={"elastic": "pw"}, api_keys={"id1": "k1"})
    url = await srv.start(0)
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(url) as r:
                assert r.status == 401
                assert r.headers.getall("WWW-Authenticate")[-1] == "ApiKey"
                assert (await r.json())["error"]["reason"] == (
                    "missing authentication credentials for REST request [/]"
                )
            async with s.get(url, headers=_basic("elastic", "bad")) as r:
                assert r.status == 401
            async with s.get(url, headers=_basic("elastic", "pw")) as r:
                assert r.status == 200
        async with AsyncElasticsearch(url, api_key=("id1", "k1")) as es:
            assert (await es.info())["version"]["number"].startswith("9.")
        async with AsyncElasticsearch(url, api_key=("id1", "wrong")) as es:
            with pytest.raises(AuthenticationException):
                await es.info()
    finally:
        await srv.stop()


async def test_tls(tmp_path: Any) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    srv = EsTestServer(9, tls_cert=str(cert_file), tls_key=str(key_file))
    url = await srv.start(0)
    try:
        assert url.startswith("https://")
        assert await srv.probe(ca_file=str(ca_file)).count("x") == 0
    finally:
        await srv.stop()


async def test_count_only_mode_counts_and_detects_duplicates() -> None:
    srv = EsTestServer(9, count_only=True)
    url = await srv.start(0)
    try:
        body = ndjson(
            {"create": {"_index": "logs-bench-default", "_id": "a"}},
            {"@timestamp": 1},
            {"create": {"_index": "logs-bench-default", "_id": "a"}},
            {"@timestamp": 1},
        )
        _, resp, _ = await post(url + "/_bulk", body)
        assert [i["create"]["status"] for i in resp["items"]] == [201, 409]
        assert srv.doc_count("logs-bench-default") == 1
    finally:
        await srv.stop()


async def test_subprocess_cli_and_http_faults() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.es_server",
        "--port",
        "0",
        "--major",
        "8",
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        url = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip()
        status, _, _ = await post(
            url + "/_test/faults",
            orjson.dumps({"fail_requests": {"status": 503, "times": 1}}),
            {"Content-Type": "application/json"},
        )
        assert status == 200
        status, _, _ = await post(url + "/_bulk", ndjson({"create": {"_index": "p"}}, {"x": 1}))
        assert status == 503
        status, _, _ = await post(url + "/_bulk", ndjson({"create": {"_index": "p"}}, {"x": 1}))
        assert status == 200
        async with aiohttp.ClientSession() as s, s.get(url + "/_test/stats") as r:
            stats = await r.json()
        assert stats["bulk_requests"] == 1 and stats["doc_counts"] == {"p": 1}
    finally:
        proc.terminate()
        await proc.wait()


@pytest.mark.parametrize(
    ("accept_encoding", "coding"),
    [
        ("gzip", "gzip"),
        ("gzip, deflate", "gzip"),  # Netty takes gzip when both are as welcome
        ("deflate, gzip;q=0.5", "deflate"),
        ("deflate", "deflate"),
        ("gzip;q=0, deflate", "deflate"),
        ("*", "gzip"),
        ("deflate;q=0.5, *", "deflate"),  # * stands only for codings not named
        ("gzip;q=0, *", "deflate"),
        ("x-gzip", "gzip"),
        ("br, zstd", None),
        ("identity", None),
        ("", None),
    ],
)
def test_response_coding_is_what_netty_picks(accept_encoding: str, coding: str | None) -> None:
    assert encoding.response_coding(accept_encoding) == coding


async def test_responses_are_compressed_as_the_client_accepts(server: Any) -> None:
    url = server.url + "/_bulk?filter_path=errors,items.*.status"
    body = ndjson(*[line for i in range(200) for line in ({"create": {"_index": "z"}}, {"i": i})])
    answers = {}
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        for accept in ("gzip", "deflate", "identity"):
            headers = {**NDJSON, "Accept-Encoding": accept}
            async with session.post(url, data=body, headers=headers) as response:
                raw = await response.read()
                answers[accept] = (response.headers.get("Content-Encoding"), raw)
    plain = answers["identity"][1]
    assert answers["identity"][0] is None
    assert orjson.loads(plain) == {"errors": False, "items": [{"create": {"status": 201}}] * 200}
    assert answers["gzip"][0] == "gzip" and gzip.decompress(answers["gzip"][1]) == plain
    assert answers["deflate"][0] == "deflate" and zlib.decompress(answers["deflate"][1]) == plain
