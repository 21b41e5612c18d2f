"""Tests of the Elasticsearch-compatible test server itself (shapes, errors, faults)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import subprocess
import sys
from typing import Any

import aiohttp
import orjson
import pytest
from elasticsearch import AsyncElasticsearch, AuthenticationException, BadRequestError

from tests.es_server import EsTestServer
from tests.es_server.fixtures import require_fault_injection

NDJSON = {"Content-Type": "application/x-ndjson"}


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


@pytest.fixture
async def server() -> Any:
    srv = EsTestServer(9)
    await srv.start(0)
    yield srv
    await srv.stop()


async def test_root_and_product_header_with_official_client(es_server_9: Any) -> None:
    async with AsyncElasticsearch(es_server_9.url) as es:
        info = await es.info()
        assert info["version"]["number"].startswith("9.")
        assert info["tagline"] == "You Know, for Search"
        assert info.meta.headers["X-Elastic-Product"] == "Elasticsearch"
        assert info.meta.headers["Content-Type"] == (
            "application/vnd.elasticsearch+json;compatible-with=9"
        )


async def test_client_9_is_rejected_by_8x_server(es_server_8: Any) -> None:
    require_fault_injection(es_server_8)
    async with AsyncElasticsearch(es_server_8.url) as es:
        with pytest.raises(BadRequestError) as info:
            await es.info()
    error = info.value.body["error"]
    assert error["type"] == "media_type_header_exception"
    assert error["caused_by"]["reason"] == (
        "Accept version must be either version 8 or 7, but found 9. "
        "Accept=application/vnd.elasticsearch+json; compatible-with=9"
    )


async def test_8x_accepts_compat_8_and_mismatch_is_rejected(es_server_8: Any) -> None:
    require_fault_injection(es_server_8)
    headers = {
        "Accept": "application/vnd.elasticsearch+json; compatible-with=8",
        "Content-Type": "application/vnd.elasticsearch+x-ndjson; compatible-with=8",
    }
    body = ndjson({"create": {"_index": "a"}}, {"x": 1})
    status, _, resp_headers = await post(es_server_8.url + "/_bulk", body, headers)
    assert status == 200
    assert resp_headers["Content-Type"] == "application/vnd.elasticsearch+json;compatible-with=8"
    headers["Content-Type"] = "application/x-ndjson"
    status, resp, _ = await post(es_server_8.url + "/_bulk", body, headers)
    assert status == 400
    assert resp["error"]["caused_by"]["reason"].startswith(
        "A compatible version is required on both Content-Type and Accept headers if either one "
        "has requested a compatible version. Accept="
    )


async def test_bulk_item_shapes_and_409(server: EsTestServer) -> None:
    body = ndjson(
        {"create": {"_index": "plain", "_id": "1"}},
        {"a": 1},
        {"create": {"_index": "plain", "_id": "1"}},
        {"a": 2},
        {"index": {"_index": "plain"}},
        {"a": 3},
    )
    status, resp, _ = await post(server.url + "/_bulk", body)
    assert status == 200
    assert list(resp) == ["errors", "took", "items"]
    assert resp["errors"] is True
    first, dup, auto = (next(iter(i.values())) for i in resp["items"])
    assert first == {
        "_index": "plain",
        "_id": "1",
        "_version": 1,
        "result": "created",
        "_shards": {"total": 2, "successful": 1, "failed": 0},
        "_seq_no": 0,
        "_primary_term": 1,
        "status": 201,
    }
    index_uuid = server.store.indices["plain"].uuid
    assert dup == {
        "_index": "plain",
        "_id": "1",
        "status": 409,
        "error": {
            "type": "version_conflict_engine_exception",
            "reason": "[1]: version conflict, document already exists (current version [1])",
            "index_uuid": index_uuid,
            "shard": "0",
            "index": "plain",
        },
    }
    assert len(auto["_id"]) == 20 and auto["_seq_no"] == 1
    assert sorted(d["_source"]["a"] for d in server.documents("plain")) == [1, 3]


async def test_bulk_requires_trailing_newline(server: EsTestServer) -> None:
    status, resp, _ = await post(server.url + "/_bulk", b'{"create":{"_index":"a"}}\n{"x":1}')
    assert status == 400
    assert resp["error"]["type"] == "illegal_argument_exception"
    assert resp["error"]["reason"] == "The bulk request must be terminated by a newline [\\n]"


async def test_data_stream_from_builtin_logs_template(server: EsTestServer) -> None:
    body = ndjson(
        {"create": {"_index": "logs-app-default"}},
        {"@timestamp": "2024-05-01T10:00:00.123Z", "message": "hello"},
        {"index": {"_index": "logs-app-default"}},
        {"@timestamp": "2024-05-01T10:00:00Z"},
        {"create": {"_index": "logs-app-default", "_id": "nots"}},
        {"message": "x"},
    )
    _, resp, _ = await post(server.url + "/_bulk", body)
    ok, index_op, no_ts = (next(iter(i.values())) for i in resp["items"])
    assert ok["_index"].startswith(".ds-logs-app-default-") and ok["_index"].endswith("-000001")
    assert index_op == {
        "_index": "logs-app-default",
        "_id": None,
        "status": 400,
        "error": {
            "type": "illegal_argument_exception",
            "reason": "only write ops with an op_type of create are allowed in data streams",
        },
    }
    assert no_ts["status"] == 400
    assert no_ts["error"] == {
        "type": "document_parsing_exception",
        "reason": "[1:15] failed to parse: data stream timestamp field [@timestamp] is missing",
        "caused_by": {
            "type": "illegal_argument_exception",
            "reason": "data stream timestamp field [@timestamp] is missing",
        },
    }
    async with (
        aiohttp.ClientSession() as s,
        s.get(server.url + "/_data_stream/logs-app-default") as r,
    ):
        ds = (await r.json())["data_streams"][0]
    assert ds["template"] == "logs" and ds["indices"][0]["index_name"] == ok["_index"]
    mapping = server.store.indices[ok["_index"]].mappings
    assert mapping.field_type("message") == "match_only_text"


async def test_template_priority_clash_and_custom_template(server: EsTestServer) -> None:
    async with aiohttp.ClientSession() as s:
        tpl = {"index_patterns": ["logs-shipper-*"], "priority": 100, "data_stream": {}}
        async with s.put(server.url + "/_index_template/shipper", json=tpl) as r:
            assert r.status == 400
            err = (await r.json())["error"]
        assert err["reason"] == (
            "index template [shipper] has index patterns [logs-shipper-*] matching patterns from "
            "existing templates [logs] with patterns (logs => [logs-*-*]) that have the same "
            "priority [100], multiple index templates may not match during index creation, "
            "please use a different priority"
        )
        tpl["priority"] = 200
        tpl["template"] = {"mappings": {"properties": {"n": {"type": "long"}}}}
        async with s.put(server.url + "/_index_template/shipper", json=tpl) as r:
            assert r.status == 200 and await r.json() == {"acknowledged": True}
    body = ndjson({"create": {"_index": "logs-shipper-x"}}, {"@timestamp": 1, "n": "abc"})
    _, resp, _ = await post(server.url + "/_bulk", body)
    item = resp["items"][0]["create"]
    assert item["status"] == 400
    assert item["error"]["reason"] == (
        "[1:21] failed to parse field [n] of type [long] in document with id "
        f"'{item['_id']}'. Preview of field's value: 'abc'"
    )


async def test_object_vs_concrete_conflicts(server: EsTestServer) -> None:
    body = ndjson(
        {"create": {"_index": "m", "_id": "1"}},
        {"a": {"b": 1}, "s": "text"},
        {"create": {"_index": "m", "_id": "2"}},
        {"a": 5},
        {"create": {"_index": "m", "_id": "3"}},
        {"s": {"x": 1}},
    )
    _, resp, _ = await post(server.url + "/_bulk", body)
    _, obj, concrete = (i["create"] for i in resp["items"])
    assert obj["error"]["reason"] == (
        "[1:6] object mapping for [a] tried to parse field [a] as object, but found a concrete value"
    )
    assert concrete["error"]["caused_by"] == {
        "type": "illegal_state_exception",
        "reason": "Can't get text on a START_OBJECT at 1:6",
    }


async def test_search_count_sort_and_probe(server: EsTestServer) -> None:
    lines: list[dict[str, Any]] = []
    for i in range(25):
        lines += [{"create": {"_index": "s", "_id": f"d{i}"}}, {"n": i, "msg": f"hello {i % 2}"}]
    await post(server.url + "/_bulk?refresh=true", ndjson(*lines))
    probe = server.probe()
    assert await probe.count("s") == 25
    docs = await probe.fetch_all("s")
    assert [d["_id"] for d in docs] == [f"d{i}" for i in range(25)]
    async with aiohttp.ClientSession() as s:
        q = {
            "query": {"bool": {"filter": [{"range": {"n": {"gte": 10}}}, {"match": {"msg": "1"}}]}},
            "sort": [{"n": "desc"}],
            "size": 3,
        }
        async with s.post(server.url + "/s/_search", json=q) as r:
            res = await r.json()
        assert [h["_id"] for h in res["hits"]["hits"]] == ["d23", "d21", "d19"]
        assert res["hits"]["total"] == {"value": 7, "relation": "eq"}
        async with s.post(server.url + "/s/_search", json={"sort": ["_id"]}) as r:
            assert r.status == 400
            assert (await r.json())["error"]["root_cause"][0]["reason"].startswith(
                "Fielddata access on the _id field is disallowed"
            )
        async with s.post(server.url + "/s/_search", json={"size": 10001}) as r:
            assert r.status == 400
            assert "Result window is too large" in (await r.json())["error"]["caused_by"]["reason"]


async def test_refresh_visibility(server: EsTestServer) -> None:
    await post(server.url + "/_bulk", ndjson({"create": {"_index": "v"}}, {"x": 1}))
    async with aiohttp.ClientSession() as s, s.get(server.url + "/v/_count") as r:
        assert (await r.json())["count"] == 0  # not refreshed yet, like ES within 1s
    assert await server.probe().count("v") == 1


async def test_gzip_request_and_filter_path(server: EsTestServer) -> None:
    body = gzip.compress(ndjson({"create": {"_index": "g"}}, {"x": 1}))
    status, resp, _ = await post(
        server.url + "/_bulk?filter_path=errors,items.*.error",
        body,
        {**NDJSON, "Content-Encoding": "gzip"},
    )
    assert status == 200 and resp == {"errors": False}
    assert server.stats.gzip_requests == 1


async def test_fault_injection(server: EsTestServer) -> None:
    server.faults.reject_items(count=1)
    body = ndjson({"create": {"_index": "f"}}, {"x": 1}, {"create": {"_index": "f"}}, {"x": 2})
    _, resp, _ = await post(server.url + "/_bulk", body)
    rejected = resp["items"][0]["create"]
    assert rejected["status"] == 429
    assert rejected["error"]["type"] == "es_rejected_execution_exception"
    assert resp["items"][1]["create"]["status"] == 201
    server.faults.fail_requests(429, times=1)
    status, resp, _ = await post(server.url + "/_bulk", body)
    assert status == 429 and resp["error"]["type"] == "es_rejected_execution_exception"
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
