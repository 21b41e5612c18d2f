"""What today's clusters offer, with the real shipper process and real containers (issue 21):
the data stream failure store, client certificates, an Elastic Cloud ID, ingest pipelines.

Each test proves one of them end to end, asserting the exact documents. The Elasticsearch
behaviours they rely on are those of the test server (tests/es_server: ingest.py,
failure_store.py), each with its reference.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import docker
import orjson
import pytest
import trustme
import yaml
from cryptography.hazmat.primitives import serialization

from shipper.pipeline.encoder import document_id
from tests.es_server.app import EsTestServer
from tests.es_server.probe import Probe
from tests.integration.helpers import assert_shipped_exactly_once, documents_of, epoch_ns
from tests.support.docker_logs import reference_lines
from tests.support.shipper_process import ShipperProcess

pytestmark = pytest.mark.docker

STREAM = "logs-docker-default"
DLQ = "logs-shipper.deadletter-default"
KEY_PASSWORD = "mtls-Wd63-never-print"


async def wait_exit(container: Any, timeout_s: float = 60) -> None:
    await asyncio.to_thread(container.wait, timeout=timeout_s)


async def wait_until(predicate: Any, timeout_s: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.25)


async def dead_letters_of(es: Any, container_id: str) -> list[dict[str, Any]]:
    out = []
    for document in await es.probe().fetch_all(DLQ):
        original = orjson.loads(document["_source"]["event"]["original"])
        if original["container"]["id"] == container_id:
            out.append(document)
    return out


async def failure_documents(es: Any, stream: str = STREAM) -> list[dict[str, Any]]:
    """The stream's failure store, by its indices' names (as the reference's REST test)."""
    return await es.probe().search_hits(f".fs-{stream}-*", {"match_all": {}}, 1000)


def dead_letter_file(shipper: ShipperProcess) -> list[dict[str, Any]]:
    path = shipper.storage / "dead-letter" / "dead-letter.ndjson"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def expected_id(docker_client: docker.DockerClient, container_id: str, message: str) -> str:
    """The shipper's `_id` of the line with this text (pipeline/encoder.document_id: the
    seq counts earlier lines of the same stream with the same timestamp)."""
    seen: Counter[tuple[str, str]] = Counter()
    for line in reference_lines(docker_client, container_id):
        seq = seen[(line.timestamp, line.stream)]
        seen[(line.timestamp, line.stream)] += 1
        if line.message == message:
            return document_id(container_id, epoch_ns(line.timestamp), line.stream, seq)
    raise AssertionError(f"no line {message!r}")


# -- the failure store ------------------------------------------------------------------------


async def test_the_failure_store_keeps_what_cannot_be_indexed(
    docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    """`failure_store: on`: a mapping conflict and a missing pipeline are kept in the stream's
    failure store (201 "used", counted apart); a line too large for any request still goes to
    the dead letters, where nothing but the file can take it."""
    server = EsTestServer(9)
    server.faults.max_content_length = 40_000  # a 50 kB line fits no request
    await server.start(0)
    try:
        shipper = shipper_factory(
            server.url,
            {"elasticsearch": {"failure_store": "on", "compression": False}},
        )
        shipper.start()
        # Ready: connected, and the templates (asked for below) are installed.
        await asyncio.to_thread(shipper.wait_ready)
        _, template = await server.probe().request("GET", f"/_index_template/shipper-{STREAM}")
        assert template["index_templates"][0]["index_template"]["template"] == {
            "data_stream_options": {"failure_store": {"enabled": True}}
        }
        _, dlq_template = await server.probe().request("GET", f"/_index_template/shipper-{DLQ}")
        assert "template" not in dlq_template["index_templates"][0]["index_template"]

        mixed = containers(
            """echo '{"a":1,"msg":"first"}'; echo '{"a":{"b":1},"msg":"second"}'; echo plain; """
            "head -c 50000 /dev/zero | tr '\\0' x; echo",
            labels={"shipper.json": "true"},
        )
        piped = containers("echo 'through a missing pipeline'", labels={"shipper.pipeline": "nope"})
        await wait_exit(mixed)
        await wait_exit(piped)

        async def settled() -> bool:
            return len(await failure_documents(server)) >= 2 and bool(dead_letter_file(shipper))

        await wait_until(settled, what="two failure documents and one dead letter")
        await asyncio.sleep(0.5)

        stored = await documents_of(server, mixed.id)
        assert sorted(d["_source"]["message"] for d in stored) == ["first", "plain"]
        assert await documents_of(server, piped.id) == []
        by_message = {
            f["_source"]["document"]["source"]["message"]: f
            for f in await failure_documents(server)
        }
        assert sorted(by_message) == ["second", "through a missing pipeline"]
        conflict = by_message["second"]["_source"]
        assert conflict["document"]["id"] == expected_id(
            docker_client, mixed.id, '{"a":{"b":1},"msg":"second"}'
        )
        assert conflict["document"]["index"] == STREAM
        assert conflict["document"]["source"]["json"] == {"a": {"b": 1}}
        assert conflict["document"]["source"]["container"]["id"] == mixed.id
        assert conflict["error"]["type"] in (
            "mapper_parsing_exception",
            "document_parsing_exception",
        )
        missing = by_message["through a missing pipeline"]["_source"]
        assert missing["error"]["type"] == "illegal_argument_exception"
        assert missing["error"]["message"] == "pipeline with id [nope] does not exist"
        assert missing["document"]["index"] == STREAM

        # Not a dead letter in the stream: the one line nothing takes is in the file.
        assert await dead_letters_of(server, mixed.id) == []
        (too_large,) = dead_letter_file(shipper)
        assert too_large["error"]["type"] == "request_entity_too_large"
        assert too_large["http"]["response"]["status_code"] == 413
        assert orjson.loads(too_large["event"]["original"])["message"] == "x" * 50000

        used = {"failure_store": "used"}
        assert shipper.metric("shipper_bulk_items_total", used) == 2
        assert shipper.metric("shipper_bulk_items_total", {"status": "201", **used}) == 2
        _, report = await asyncio.to_thread(shipper.http_get, "/status")
        status = json.loads(report)
        assert status["failure_store"] == {"since_start": 2}
        # The per-container accounting counts them apart too, and still adds up.
        assert status["accounting"]["totals"]["failure_stored"] == 2
        assert status["accounting"]["problems"] == []
        assert "kept them in the data stream's failure store" in shipper.stderr()
        assert await asyncio.to_thread(shipper.stop) == 0
    finally:
        await server.stop()


async def test_the_failure_store_on_an_older_cluster_stops_the_start(
    shipper_factory: Any,
) -> None:
    server = EsTestServer(8)  # 8.17.0: failure stores came with 8.19
    await server.start(0)
    try:
        shipper = shipper_factory(server.url, {"elasticsearch": {"failure_store": "on"}})
        shipper.start()
        assert shipper.process is not None
        code = await asyncio.to_thread(shipper.process.wait, 60)
        assert code == 2
        assert shipper.stderr().splitlines()[-1] == (
            "shipper: configuration error: elasticsearch.failure_store: is on, but the cluster "
            "is Elasticsearch 8.17.0, which has no data stream failure store (8.19, 9.1 and "
            "later have one); set it to off or upgrade"
        )
        assert server.stats.bulk_requests == 0
        assert "shipper-logs-docker-default" not in server.store.templates
    finally:
        await server.stop()


# -- ingest pipelines --------------------------------------------------------------------------


async def test_ingest_pipelines_by_config_rule_and_label_and_their_failures(
    docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    """Every document names its pipeline (default, routing rule, label: the label wins); a
    pipeline that does not exist or that fails is a per-document error, dead-lettered with
    Elasticsearch's reason, not retried."""
    server = EsTestServer(9)
    await server.start(0)
    try:
        probe = server.probe()
        for name in ("everything", "by-rule", "by-label"):
            await probe.request("PUT", f"/_ingest/pipeline/{name}", {"processors": []})
        await probe.request(
            "PUT",
            "/_ingest/pipeline/refusing",
            {"processors": [{"fail": {"message": "this pipeline refuses everything"}}]},
        )
        suffix = str(time.time_ns())[-6:]
        shipper = shipper_factory(
            server.url,
            {
                "elasticsearch": {
                    "pipeline": "everything",
                    "routing": [{"name": f"piped-rule-{suffix}", "pipeline": "by-rule"}],
                }
            },
        )
        shipper.start()
        await asyncio.to_thread(shipper.wait_ready_http)
        default = containers('for i in 1 2 3; do echo "default $i"; done')
        by_rule = containers('echo "by rule"', name=f"piped-rule-{suffix}")
        by_label = containers(
            'echo "by label"',
            name=f"piped-rule-{suffix}-l",
            labels={"shipper.pipeline": "by-label"},
        )
        missing = containers(
            'echo "lost pipeline 1"; echo "lost pipeline 2"', labels={"shipper.pipeline": "gone"}
        )
        refused = containers('echo "refused"', labels={"shipper.pipeline": "refusing"})
        for container in (default, by_rule, by_label, missing, refused):
            await wait_exit(container)

        for container, pipeline in (
            (default, "everything"),
            (by_rule, "by-rule"),
            (by_label, "by-label"),
        ):
            _, documents = await assert_shipped_exactly_once(server, docker_client, container.id)
            ids = {d["_id"] for d in documents}
            named = {
                d["_id"]: d["_pipeline"]
                for d in server.documents_with_pipelines(STREAM)
                if d["_id"] in ids
            }
            assert set(named.values()) == {pipeline}, (container.name, named)

        async def dead() -> bool:
            return (
                len(await dead_letters_of(server, missing.id)) == 2
                and len(await dead_letters_of(server, refused.id)) == 1
            )

        await wait_until(dead, what="the dead letters of the two failing pipelines")
        for letter in await dead_letters_of(server, missing.id):
            source = letter["_source"]
            assert source["error"] == {
                "type": "illegal_argument_exception",
                "message": "pipeline with id [gone] does not exist",
            }
            assert source["http"]["response"]["status_code"] == 400
            assert source["shipper"]["target_index"] == STREAM
        assert sorted(
            orjson.loads(d["_source"]["event"]["original"])["message"]
            for d in await dead_letters_of(server, missing.id)
        ) == ["lost pipeline 1", "lost pipeline 2"]
        (letter,) = await dead_letters_of(server, refused.id)
        assert letter["_source"]["error"] == {
            "type": "fail_processor_exception",
            "message": "this pipeline refuses everything",
        }
        assert letter["_source"]["http"]["response"]["status_code"] == 500
        assert await documents_of(server, missing.id) == []
        assert await documents_of(server, refused.id) == []
        # A 500 from a fail processor is permanent: dead-lettered once, never retried.
        assert server.stats.items_by_pipeline["refusing"] == 1
        assert shipper.metric("shipper_retries_total", {"reason": "item_rejected"}) == 0
        assert (
            shipper.metric(
                "shipper_dead_lettered_total", {"error_type": "illegal_argument_exception"}
            )
            == 2
        )
        assert (
            shipper.metric(
                "shipper_dead_lettered_total", {"error_type": "fail_processor_exception"}
            )
            == 1
        )
        assert await asyncio.to_thread(shipper.stop) == 0
    finally:
        await server.stop()


# -- client certificates ---------------------------------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("shipper")
    files = {
        "ca": tmp_path / "ca.pem",
        "cert": tmp_path / "server.pem",
        "key": tmp_path / "server-key.pem",
        "client_cert": tmp_path / "client.pem",
        "client_key": tmp_path / "client-key.pem",
        "client_both": tmp_path / "client-both.pem",
        "password": tmp_path / "key-password",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server_cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server_cert.private_key_pem.write_to_path(str(files["key"]))
    client.cert_chain_pems[0].write_to_path(str(files["client_cert"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(files["client_both"]))
    key = serialization.load_pem_private_key(client.private_key_pem.bytes(), None)
    files["client_key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
        )
    )
    files["password"].write_text(KEY_PASSWORD + "\n")
    return {k: str(v) for k, v in files.items()}


class _Viewer:
    """The server seen through a probe that presents the client certificate."""

    def __init__(self, server: EsTestServer, pki: dict[str, str]) -> None:
        self._url = server.url
        self._pki = pki

    def probe(self) -> Probe:
        return Probe(self._url, ca_file=self._pki["ca"], client_cert=self._pki["client_both"])


async def test_a_cluster_that_requires_a_client_certificate(
    pki: dict[str, str], docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    server = EsTestServer(
        9, tls_cert=pki["cert"], tls_key=pki["key"], tls_client_ca=pki["ca"], tls_ca=pki["ca"]
    )
    await server.start(0)
    try:
        container = containers('for i in $(seq 1 25); do echo "mutual $i"; done')
        await wait_exit(container)
        # Without a certificate the cluster refuses the handshake: nothing is sent, and
        # /readyz says why.
        without = shipper_factory(server.url, {"elasticsearch": {"ca_certs": pki["ca"]}})
        without.start()
        await asyncio.to_thread(without.wait_ready_http)

        refusal = (
            "not ready\n- output not accepting writes: Elasticsearch unreachable: Connection "
            "error (the server closed the connection; a cluster that requires client "
            "certificates does that: see elasticsearch.client_cert)\n"
        )
        body = ""

        async def refused_alone() -> bool:
            # Until then, other reasons may show too: the output not connected yet, or Docker
            # not yet reached by a discovery that is still starting on a loaded machine.
            nonlocal body
            status, body = await asyncio.to_thread(without.http_get, "/readyz")
            return status == 503 and body == refusal

        try:
            await wait_until(refused_alone, 30, "/readyz to give the refusal alone")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the last answer: {body!r}") from None
        assert server.stats.bulk_requests == 0
        assert await asyncio.to_thread(without.stop) == 0

        # With the certificate and its encrypted key (the password from a file): every line,
        # once; the password appears nowhere.
        shipper = shipper_factory(
            server.url,
            {
                "elasticsearch": {
                    "ca_certs": pki["ca"],
                    "client_cert": pki["client_cert"],
                    "client_key": pki["client_key"],
                    "client_key_password_file": pki["password"],
                }
            },
            name="with-certificate",
        )
        shipper.start()
        await assert_shipped_exactly_once(_Viewer(server, pki), docker_client, container.id)
        status, _ = await asyncio.to_thread(shipper.http_get, "/readyz")
        assert status == 200
        assert await asyncio.to_thread(shipper.stop) == 0
        assert KEY_PASSWORD not in shipper.stderr()

        # A wrong password stops the start, naming the key.
        Path(pki["password"]).write_text("not the password\n")
        shipper.start()
        assert shipper.process is not None
        assert await asyncio.to_thread(shipper.process.wait, 60) == 2
        assert shipper.stderr().splitlines()[-1] == (
            "shipper: configuration error: elasticsearch.client_key_password_file: does not "
            f"decrypt '{pki['client_key']}'"
        )
    finally:
        await server.stop()


# -- Elastic Cloud -------------------------------------------------------------------------------


async def test_an_elastic_cloud_id_with_an_api_key(
    pki: dict[str, str],
    tmp_path: Path,
    docker_client: docker.DockerClient,
    containers: Any,
    shipper_factory: Any,
) -> None:
    """The Cloud ID is decoded as the official clients do: `<es id>.<domain>:<port>`. With
    es id `127` and domain `0.0.1:<port>` that is this machine's test server, over https with
    the test CA, as a Cloud deployment is reached."""
    server = EsTestServer(
        9, tls_cert=pki["cert"], tls_key=pki["key"], tls_ca=pki["ca"], api_keys={"kid": "ksecret"}
    )
    await server.start(0)
    try:
        cloud_id = (
            "test-deployment:"
            + base64.b64encode(f"0.0.1:{server.port}$127$kibana-id".encode()).decode()
        )
        api_key = base64.b64encode(b"kid:ksecret").decode()
        shipper = shipper_factory(
            server.url,
            {"elasticsearch": {"cloud_id": cloud_id, "api_key": api_key, "ca_certs": pki["ca"]}},
        )
        # The test harness writes hosts for every shipper: a Cloud ID replaces them.
        del shipper.config["elasticsearch"]["hosts"]
        shipper.config_path.write_text(yaml.safe_dump(shipper.config))

        checked = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "shipper", "check-config", "--config", str(shipper.config_path)],
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("SHIPPER_")},
        )
        assert checked.returncode == 0, checked.stderr
        shown = yaml.safe_load(checked.stdout)["elasticsearch"]
        assert shown["hosts"] == [f"https://127.0.0.1:{server.port}"]
        assert shown["cloud_id"] == cloud_id
        assert shown["api_key"] == "***"

        shipper.start()
        container = containers('for i in $(seq 1 15); do echo "cloud $i"; done')
        await wait_exit(container)
        viewer = _ApiKeyViewer(server, pki["ca"], api_key)
        await assert_shipped_exactly_once(viewer, docker_client, container.id)
        assert server.stats.last_bulk_headers["Authorization"] == f"ApiKey {api_key}"
        assert await asyncio.to_thread(shipper.stop) == 0
    finally:
        await server.stop()


class _ApiKeyViewer:
    def __init__(self, server: EsTestServer, ca: str, api_key: str) -> None:
        self._url, self._ca, self._key = server.url, ca, api_key

    def probe(self) -> Probe:
        return Probe(self._url, ca_file=self._ca, api_key=self._key)
