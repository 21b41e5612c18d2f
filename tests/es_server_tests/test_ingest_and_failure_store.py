"""The test server's ingest pipelines, data stream failure store and client certificates.

Tests taking ``es_server``/``es_server_9`` speak plain HTTP with names unique to the test, so
with ``SHIPPER_TEST_ES_URL`` set they check the same behaviour on a real cluster (failure store
tests need 9.1 or later there). What each relies on, with its reference:

* ingest pipeline CRUD and the bulk action's ``pipeline`` (ingest 20_crud.yml, 70_bulk.yml);
  a pipeline that does not exist: ``illegal_argument_exception`` "pipeline with id [x] does not
  exist", status 400 (IngestService.executePipelines); a ``fail`` processor:
  ``fail_processor_exception``, status 500 (elastic/elasticsearch#48810);
* the failure store: "Failure store" in the reference (set up in the template's
  ``data_stream_options``, bulk items with ``failure_store``, the failure document's fields),
  BulkItemResponse.toXContent (where ``failure_store`` goes), BulkOperation.processFailure
  (which failures, ``not_enabled``), FailureStoreDocumentConverter (the document), and
  data_stream/190_failure_store_redirection.yml (index names and generations).
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from shipper.sinks.elasticsearch.client import BULK_PARAMS
from tests.es_server import EsTestServer
from tests.es_server.fixtures import require_in_process
from tests.es_server.probe import ProbeError, Response

NDJSON = {"Content-Type": "application/x-ndjson"}


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:8]


def ndjson(*lines: dict[str, Any]) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


async def bulk(es: Any, body: bytes, query: str = "") -> Response:
    response: Response = await es.probe().send("POST", "/_bulk" + query, body, NDJSON)
    assert response.status == 200, response.body
    return response


def failure_store_or_skip(es: Any) -> None:
    number = str(es.version["number"])
    major, minor = (int(p) for p in number.split(".")[:2])
    if (major, minor) < (9, 1) and not (major == 8 and minor >= 19):
        pytest.skip(f"Elasticsearch {number} has no failure store (8.19, 9.1 and later)")


async def put_stream_template(es: Any, stream: str, *, failure_store: bool) -> None:
    """An exact-name template over the built-in logs one, mapping `count` as a long."""
    template: dict[str, Any] = {
        "mappings": {"properties": {"count": {"type": "long"}}},
        "settings": {"number_of_replicas": 0},
    }
    if failure_store:
        template["data_stream_options"] = {"failure_store": {"enabled": True}}
    body = {
        "index_patterns": [stream],
        "data_stream": {},
        "priority": 200,
        "template": template,
    }
    await es.probe().request("PUT", f"/_index_template/t-{stream}", body)


async def failures(es: Any, stream: str) -> list[dict[str, Any]]:
    # As the reference's REST test does: the failure indices by their (hidden, dot) names.
    return await es.probe().search_hits(f".fs-{stream}-*", {"match_all": {}}, 100)


# -- ingest pipelines --------------------------------------------------------------------------


async def test_pipeline_crud(es_server: Any, uid: str) -> None:
    probe = es_server.probe()
    body = {"description": "d", "processors": [{"set": {"field": "a", "value": "b"}}]}
    assert await probe.request("PUT", f"/_ingest/pipeline/p{uid}", body) == (
        200,
        {"acknowledged": True},
    )
    _, got = await probe.request("GET", f"/_ingest/pipeline/p{uid}")
    assert got[f"p{uid}"]["processors"] == body["processors"]
    assert got[f"p{uid}"]["description"] == "d"
    assert await probe.request("DELETE", f"/_ingest/pipeline/p{uid}") == (
        200,
        {"acknowledged": True},
    )
    assert await probe.request("GET", f"/_ingest/pipeline/p{uid}", ok=(404,)) == (404, {})
    with pytest.raises(ProbeError) as missing:
        await probe.request("DELETE", f"/_ingest/pipeline/p{uid}")
    assert missing.value.status == 404
    assert missing.value.body["error"]["type"] == "resource_not_found_exception"
    assert missing.value.body["error"]["reason"] == f"pipeline [p{uid}] is missing"
    with pytest.raises(ProbeError) as invalid:
        await probe.request("PUT", f"/_ingest/pipeline/p{uid}", {"description": "none"})
    assert invalid.value.status == 400
    assert invalid.value.body["error"]["type"] == "parse_exception"
    assert invalid.value.body["error"]["reason"] == "[processors] required property is missing"


async def test_a_missing_pipeline_fails_the_document_in_the_ingest_phase(
    es_server: Any, uid: str
) -> None:
    stream = f"logs-nopipe{uid}-default"
    body = ndjson(
        {"create": {"_index": stream, "_id": "a", "pipeline": f"nope{uid}"}},
        {"@timestamp": "2025-01-01T00:00:00Z", "message": "m"},
    )
    response = await bulk(es_server, body)
    assert response.body["errors"] is True
    item = response.body["items"][0]["create"]
    assert item["_index"] == stream  # the name the request wrote to: it failed before any index
    assert item["_id"] == "a"
    assert item["status"] == 400
    assert item["error"]["type"] == "illegal_argument_exception"
    assert item["error"]["reason"] == f"pipeline with id [nope{uid}] does not exist"
    if es_server.major >= 9:
        assert item["failure_store"] == "not_enabled"  # a data stream, store not enabled
        assert list(item) == ["_index", "_id", "status", "failure_store", "error"]
    # The only document failed before the write: the data stream was never created.
    status, _ = await es_server.probe().request("HEAD", f"/{stream}", ok=(200, 404))
    assert status == 404


async def test_a_fail_processor_fails_the_document_with_500(es_server: Any, uid: str) -> None:
    stream = f"logs-failing{uid}-default"
    pipeline = {"processors": [{"fail": {"message": "refused on purpose", "tag": "t1"}}]}
    await es_server.probe().request("PUT", f"/_ingest/pipeline/f{uid}", pipeline)
    body = ndjson(
        {"create": {"_index": stream, "_id": "a", "pipeline": f"f{uid}"}},
        {"@timestamp": "2025-01-01T00:00:00Z", "message": "m"},
    )
    item = (await bulk(es_server, body)).body["items"][0]["create"]
    assert item["status"] == 500
    assert item["error"]["type"] == "fail_processor_exception"
    assert item["error"]["reason"] == "refused on purpose"


async def test_a_named_pipeline_that_exists_lets_the_document_through(
    es_server: Any, uid: str
) -> None:
    stream = f"logs-piped{uid}-default"
    await es_server.probe().request("PUT", f"/_ingest/pipeline/ok{uid}", {"processors": []})
    body = ndjson(
        {"create": {"_index": stream, "_id": "a", "pipeline": f"ok{uid}"}},
        {"@timestamp": "2025-01-01T00:00:00Z", "message": "through"},
        {"create": {"_index": stream, "_id": "b"}},
        {"@timestamp": "2025-01-01T00:00:01Z", "message": "default"},
    )
    response = await bulk(es_server, body)
    assert response.body["errors"] is False
    assert "ingest_took" in response.body
    assert [i["create"]["status"] for i in response.body["items"]] == [201, 201]
    assert await es_server.probe().count(stream) == 2
    if not es_server.is_real:
        # What only the test server can tell: which pipeline each document named.
        server = require_in_process(es_server)
        named = {d["_id"]: d["_pipeline"] for d in server.documents_with_pipelines(stream)}
        assert named == {"a": f"ok{uid}", "b": None}
        assert server.stats.items_by_pipeline[f"ok{uid}"] == 1


# -- the failure store --------------------------------------------------------------------------


async def test_a_mapping_failure_goes_to_the_failure_store(es_server_9: Any, uid: str) -> None:
    es = es_server_9
    failure_store_or_skip(es)
    stream = f"logs-fs{uid}-default"
    await put_stream_template(es, stream, failure_store=True)
    body = ndjson(
        {"create": {"_index": stream, "_id": "good"}},
        {"@timestamp": "2025-05-01T00:00:00Z", "count": 1},
        {"create": {"_index": stream, "_id": "bad"}},
        {"@timestamp": "2025-05-01T00:00:00Z", "count": "not a number"},
    )
    response = await bulk(es, body)
    assert response.body["errors"] is False
    good, bad = (item["create"] for item in response.body["items"])
    assert good["status"] == 201 and "failure_store" not in good
    assert good["_index"].startswith(f".ds-{stream}-")
    assert bad["status"] == 201 and bad["failure_store"] == "used" and "error" not in bad
    # The stream existed (created by the first document): the failure store's first index is
    # a lazy rollover, of the stream's next generation.
    assert bad["_index"].startswith(f".fs-{stream}-") and bad["_index"].endswith("-000002")
    assert bad["_id"] != "bad"  # a failure document has an id of its own
    assert list(bad)[-2:] == ["failure_store", "status"]

    _, streams = await es.probe().request("GET", f"/_data_stream/{stream}")
    (info,) = streams["data_streams"]
    assert info["failure_store"]["enabled"] is True
    assert [i["index_name"] for i in info["failure_store"]["indices"]] == [bad["_index"]]
    assert await es.probe().count(stream) == 1  # the stream itself holds the good one only

    (failure,) = await failures(es, stream)
    source = failure["_source"]
    assert failure["_index"] == bad["_index"]
    assert source["document"] == {
        "id": "bad",
        "index": stream,
        "source": {"@timestamp": "2025-05-01T00:00:00Z", "count": "not a number"},
    }
    assert source["error"]["type"] == "document_parsing_exception"
    assert "failed to parse field [count] of type [long]" in source["error"]["message"]
    assert "failed to parse field [count] of type [long]" in source["error"]["stack_trace"]
    assert "pipeline" not in source["error"]
    assert source["@timestamp"].endswith("Z")

    # The shipper's filter keeps the field, and only it beside the status.
    again = ndjson(
        {"create": {"_index": stream, "_id": "bad2"}},
        {"@timestamp": "2025-05-01T00:00:00Z", "count": "again"},
        {"create": {"_index": stream, "_id": "good"}},
        {"@timestamp": "2025-05-01T00:00:00Z", "count": 1},
    )
    filtered = await bulk(es, again, "?filter_path=" + BULK_PARAMS["filter_path"])
    first, conflict = filtered.body["items"]
    assert first == {"create": {"failure_store": "used", "status": 201}}
    # A version conflict is never redirected, and says nothing of the failure store.
    assert conflict["create"]["status"] == 409
    assert "failure_store" not in conflict["create"]


async def test_pipeline_failures_go_to_the_failure_store_as_sent(
    es_server_9: Any, uid: str
) -> None:
    es = es_server_9
    failure_store_or_skip(es)
    stream = f"logs-fsp{uid}-default"
    await put_stream_template(es, stream, failure_store=True)
    await es.probe().request(
        "PUT",
        f"/_ingest/pipeline/f{uid}",
        {"processors": [{"fail": {"message": "no such thing", "tag": "the-tag"}}]},
    )
    document = {"@timestamp": "2025-05-01T00:00:00Z", "message": "m"}
    body = ndjson(
        {"create": {"_index": stream, "_id": "missing", "pipeline": f"nope{uid}"}},
        document,
        {"create": {"_index": stream, "_id": "failed", "pipeline": f"f{uid}"}},
        document,
    )
    items = [i["create"] for i in (await bulk(es, body)).body["items"]]
    assert [(i["status"], i["failure_store"]) for i in items] == [(201, "used"), (201, "used")]
    # Failed before the stream existed: it was created with its failure store, both indices
    # of the first generation.
    assert all(i["_index"].startswith(f".fs-{stream}-") for i in items)
    assert all(i["_index"].endswith("-000001") for i in items)
    by_id = {f["_source"]["document"]["id"]: f["_source"] for f in await failures(es, stream)}
    assert by_id["missing"]["document"] == {"id": "missing", "index": stream, "source": document}
    assert by_id["missing"]["error"]["type"] == "illegal_argument_exception"
    assert by_id["missing"]["error"]["message"] == f"pipeline with id [nope{uid}] does not exist"
    assert "pipeline" not in by_id["missing"]["error"]  # not a processor's failure
    failed = by_id["failed"]["error"]
    assert failed["type"] == "fail_processor_exception"
    assert failed["message"] == "no such thing"
    assert failed["pipeline"] == f"f{uid}"
    assert failed["pipeline_trace"] == [f"f{uid}"]
    assert failed["processor_type"] == "fail"
    assert failed["processor_tag"] == "the-tag"
    assert await es.probe().count(stream) == 0


async def test_without_the_failure_store_errors_say_not_enabled(es_server_9: Any, uid: str) -> None:
    es = es_server_9
    failure_store_or_skip(es)
    stream = f"logs-nofs{uid}-default"
    await put_stream_template(es, stream, failure_store=False)
    body = ndjson(
        {"create": {"_index": stream, "_id": "a"}},
        {"@timestamp": "2025-05-01T00:00:00Z", "count": "nan"},
    )
    item = (await bulk(es, body)).body["items"][0]["create"]
    assert item["status"] == 400
    assert item["failure_store"] == "not_enabled"
    assert item["error"]["type"] == "document_parsing_exception"
    _, streams = await es.probe().request("GET", f"/_data_stream/{stream}")
    assert streams["data_streams"][0]["failure_store"]["enabled"] is False
    assert await failures(es, stream) == []


async def test_8x_has_no_failure_store_field(uid: str) -> None:
    server = EsTestServer(8)  # 8.17: the failure store exists from 8.19
    await server.start(0)
    try:
        stream = f"logs-eight{uid}-default"
        body = ndjson(
            {"create": {"_index": stream, "_id": "a", "pipeline": "nope"}},
            {"@timestamp": "2025-05-01T00:00:00Z"},
        )
        item = (await bulk(server, body)).body["items"][0]["create"]
        assert item["status"] == 400 and "failure_store" not in item
    finally:
        await server.stop()


# -- client certificates -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    client_cert = ca.issue_cert("shipper-client")
    base = tmp_path_factory.mktemp("mtls")
    files = {
        "ca": base / "ca.pem",
        "cert": base / "server.pem",
        "key": base / "server-key.pem",
        "client": base / "client.pem",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server_cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server_cert.private_key_pem.write_to_path(str(files["key"]))
    client_cert.private_key_and_cert_chain_pem.write_to_path(str(files["client"]))
    return {k: str(v) for k, v in files.items()}


async def _get_root(url: str, context: ssl.SSLContext) -> int:
    async with aiohttp.ClientSession() as session, session.get(url, ssl=context) as response:
        await response.read()
        return response.status


async def test_a_server_that_requires_a_client_certificate(mtls: dict[str, str]) -> None:
    server = EsTestServer(9, tls_cert=mtls["cert"], tls_key=mtls["key"], tls_client_ca=mtls["ca"])
    await server.start(0)
    try:
        plain = ssl.create_default_context(cafile=mtls["ca"])
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            await asyncio.wait_for(_get_root(server.url + "/", plain), 10)
        assert server.stats.requests["GET /"] == 0  # refused in the handshake, before HTTP
        with_cert = ssl.create_default_context(cafile=mtls["ca"])
        with_cert.load_cert_chain(mtls["client"])
        assert await _get_root(server.url + "/", with_cert) == 200
        # Another CA's certificate is refused too.
        stranger = pytest.importorskip("trustme").CA().issue_cert("someone")
        path = Path(mtls["client"]).with_name("stranger.pem")
        stranger.private_key_and_cert_chain_pem.write_to_path(str(path))
        wrong = ssl.create_default_context(cafile=mtls["ca"])
        wrong.load_cert_chain(str(path))
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            await asyncio.wait_for(_get_root(server.url + "/", wrong), 10)
    finally:
        await server.stop()
