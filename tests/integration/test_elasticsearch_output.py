"""The Elasticsearch output with the real shipper process and real containers: faults, failover,
TLS and auth, both majors, routing. Every line ends up in its data stream exactly once or in
the dead-letter stream with its reason."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import ssl
import time
from pathlib import Path
from typing import Any

import docker
import orjson
import pytest
import yaml

from tests.es_server.app import EsTestServer
from tests.es_server.fixtures import require_fault_injection
from tests.integration.helpers import assert_shipped_exactly_once, documents_of
from tests.support.docker_logs import reference_lines
from tests.support.shipper_process import deep_merge

pytestmark = pytest.mark.docker

DLQ = "logs-shipper.deadletter-default"


async def wait_exit(container: Any, timeout_s: float = 60) -> None:
    await asyncio.to_thread(container.wait, timeout=timeout_s)


async def dead_letters_of(es: Any, container_id: str) -> list[dict[str, Any]]:
    documents = await es.probe().fetch_all(DLQ)
    out = []
    for document in documents:
        original = orjson.loads(document["_source"]["event"]["original"])
        if original["container"]["id"] == container_id:
            out.append(document)
    return out


async def wait_until(predicate: Any, timeout_s: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.25)


async def test_rejections_outages_conflicts_and_too_large_requests(
    es_server: Any, docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    server = require_fault_injection(es_server)
    server.faults.reject_items(fraction=0.2, seed=1)  # 20 % of items answered 429
    server.faults.fail_requests(503, times=3)  # the cluster refuses three whole requests
    server.faults.mapping_error = lambda source: "conflict" in source.get("message", "")
    server.faults.max_content_length = 30_000  # 413 for most batches: split
    shipper = shipper_factory(
        server.url, {"elasticsearch": {"compression": False, "retry_max_backoff_s": 1.0}}
    )
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    clean = containers('for i in $(seq 1 400); do echo "clean $i"; done')
    mixed = containers(
        'for i in $(seq 1 300); do if [ $((i % 10)) -eq 0 ]; then echo "conflict $i"; '
        'else echo "fine $i"; fi; done'
    )
    await wait_exit(clean)
    await wait_exit(mixed)

    await assert_shipped_exactly_once(server, docker_client, clean.id)
    expected = await asyncio.to_thread(reference_lines, docker_client, mixed.id)
    assert len(expected) == 300

    async def mixed_settled() -> bool:
        stored = await documents_of(server, mixed.id)
        dead = await dead_letters_of(server, mixed.id)
        return len(stored) + len(dead) >= 300

    await wait_until(mixed_settled, what="the mixed container's lines")
    await asyncio.sleep(0.5)
    stored = await documents_of(server, mixed.id)
    dead = await dead_letters_of(server, mixed.id)
    assert sorted(d["_source"]["message"] for d in stored) == sorted(
        f"fine {i}" for i in range(1, 301) if i % 10
    )
    assert len({d["_id"] for d in stored}) == 270
    assert sorted(orjson.loads(d["_source"]["event"]["original"])["message"] for d in dead) == (
        sorted(f"conflict {i}" for i in range(10, 301, 10))
    )
    for d in dead:
        assert d["_source"]["error"]["type"] == "document_parsing_exception"
        assert "failed to parse field" in d["_source"]["error"]["message"]
        assert d["_source"]["http"]["response"]["status_code"] == 400
        assert d["_source"]["shipper"]["target_index"] == "logs-docker-default"
    assert server.stats.items_by_status[429] > 0
    assert (
        shipper.metric("shipper_dead_lettered_total", {"error_type": "document_parsing_exception"})
        == 30
    )
    assert shipper.metric("shipper_retries_total", {"reason": "request_too_large"}) > 0
    assert shipper.metric("shipper_retries_total", {"reason": "item_rejected"}) > 0
    failed = {"outcome": "failed", "status": "503"}
    assert shipper.metric("shipper_bulk_requests_total", failed) == 3
    # Only what was refused is sent again: nothing already stored comes back as a 409.
    assert server.stats.items_by_status.get(409, 0) == 0
    assert await asyncio.to_thread(shipper.stop) == 0


async def test_a_real_mapping_conflict_in_json_mode_is_dead_lettered_with_its_reason(
    es_server: Any, docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    """{"a":1} maps json.a as a number; {"a":{"b":1}} then cannot be indexed as it is."""
    shipper = shipper_factory(es_server.url)
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    container = containers(
        """echo '{"a":1,"msg":"first"}'; echo '{"a":{"b":1},"msg":"second"}'; echo plain""",
        labels={"shipper.json": "true"},
    )
    await wait_exit(container)
    await wait_until(
        lambda: _settled(es_server, container.id, 3), what="every line stored or dead-lettered"
    )
    stored = await documents_of(es_server, container.id)
    assert sorted(d["_source"]["message"] for d in stored) == ["first", "plain"]
    (dead,) = await dead_letters_of(es_server, container.id)
    original = orjson.loads(dead["_source"]["event"]["original"])
    assert (original["message"], original["json"]) == ("second", {"a": {"b": 1}})
    assert dead["_source"]["error"]["type"] in (
        "mapper_parsing_exception",
        "document_parsing_exception",
    )
    assert dead["_source"]["http"]["response"]["status_code"] == 400
    assert dead["_source"]["shipper"]["target_index"] == "logs-docker-default"
    assert shipper.metric("shipper_dead_lettered_total") == 1
    assert await asyncio.to_thread(shipper.stop) == 0


async def _settled(es: Any, container_id: str, lines: int) -> bool:
    stored = await documents_of(es, container_id)
    return len(stored) + len(await dead_letters_of(es, container_id)) >= lines


async def test_two_hosts_one_killed_mid_run_loses_nothing(
    docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    first = EsTestServer(9)
    second = EsTestServer(9)
    # Two nodes of one cluster: they share the data.
    second.store = first.store
    second._app.store = first.store
    await first.start(0)
    await second.start(0)
    try:
        shipper = shipper_factory(first.url, {"elasticsearch": {"hosts": [first.url, second.url]}})
        shipper.start()
        await asyncio.to_thread(shipper.wait_ready_http)
        container = containers('for i in $(seq 1 60); do echo "tick $i"; sleep 0.05; done')
        await asyncio.sleep(1.0)
        await first.stop()  # killed mid-run: connections refused from now on
        await wait_exit(container)
        await assert_shipped_exactly_once(second, docker_client, container.id)
        assert second.stats.bulk_requests > 0
        assert await asyncio.to_thread(shipper.stop) == 0
    finally:
        await first.stop()
        await second.stop()


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "cert.pem", "key": tmp_path / "key.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    cert.private_key_pem.write_to_path(str(files["key"]))
    return {k: str(v) for k, v in files.items()}


async def test_tls_auth_wrong_password_then_fixed(
    tls_files: dict[str, str],
    tmp_path: Path,
    docker_client: docker.DockerClient,
    containers: Any,
    shipper_factory: Any,
) -> None:
    server = EsTestServer(
        8,
        users={"elastic": "changeme"},
        api_keys={"key-id": "key-secret"},
        tls_cert=tls_files["cert"],
        tls_key=tls_files["key"],
    )
    await server.start(0)
    probe_auth = {"basic_auth": ("elastic", "changeme"), "ca_file": tls_files["ca"]}
    checked = _Authed(server, probe_auth)
    try:
        password_file = tmp_path / "password"
        password_file.write_text("wrong\n")
        es = {"ca_certs": tls_files["ca"], "username": "elastic"}
        es["password_file"] = str(password_file)
        shipper = shipper_factory(server.url, {"elasticsearch": es})
        container = containers('for i in $(seq 1 50); do echo "secure $i"; done')
        await wait_exit(container)
        shipper.start()
        await asyncio.to_thread(shipper.wait_ready_http)

        async def not_ready_naming_credentials() -> bool:
            status, body = await asyncio.to_thread(shipper.http_get, "/readyz")
            return status == 503 and "credentials" in body and "HTTP 401" in body

        await wait_until(not_ready_naming_credentials, 20, "/readyz to name the credentials")
        assert "rejected the shipper's credentials" in shipper.stderr()
        assert "wrong" not in shipper.stderr().replace("wrong password", "")
        assert await asyncio.to_thread(shipper.stop) == 0

        password_file.write_text("changeme\n")
        shipper.start()
        await assert_shipped_exactly_once(checked, docker_client, container.id)
        status, _ = await asyncio.to_thread(shipper.http_get, "/readyz")
        assert status == 200
        assert server.stats.last_bulk_headers["Authorization"].startswith("Basic ")
        assert await asyncio.to_thread(shipper.stop) == 0

        # The same cluster with an API key from a file.
        key_file = tmp_path / "api_key"
        key_file.write_text(base64.b64encode(b"key-id:key-secret").decode())
        keyed = shipper_factory(
            server.url,
            {"elasticsearch": {"ca_certs": tls_files["ca"], "api_key_file": str(key_file)}},
            name="keyed",
        )
        keyed.start()
        await asyncio.to_thread(keyed.wait_ready_http)
        after = containers('echo "with an api key"')
        await wait_exit(after)
        await assert_shipped_exactly_once(checked, docker_client, after.id)
        assert server.stats.last_bulk_headers["Authorization"].startswith("ApiKey ")
        assert await asyncio.to_thread(keyed.stop) == 0
    finally:
        await server.stop()


class _Authed:
    """The server seen through an authenticated, CA-verifying probe (for the helpers)."""

    def __init__(self, server: EsTestServer, probe_kwargs: dict[str, Any]) -> None:
        self._server = server
        self._kwargs = probe_kwargs

    def probe(self) -> Any:
        return self._server.probe(**self._kwargs)


@pytest.mark.parametrize("major", [8, 9])
async def test_both_majors(
    major: int, docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    server = EsTestServer(major)
    await server.start(0)
    try:
        shipper = shipper_factory(server.url)
        shipper.start()
        container = containers('for i in $(seq 1 20); do echo "major $i"; done')
        await wait_exit(container)
        await assert_shipped_exactly_once(server, docker_client, container.id)
        headers = server.stats.last_bulk_headers
        assert headers["Content-Type"] == (
            f"application/vnd.elasticsearch+x-ndjson; compatible-with={major}"
        )
        assert headers["Accept"] == f"application/vnd.elasticsearch+json; compatible-with={major}"
        assert headers.get("Content-Encoding") == "gzip"  # compression is on by default
        assert await asyncio.to_thread(shipper.stop) == 0
    finally:
        await server.stop()


async def test_routing_by_label_and_by_rule(
    es_server: Any, docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    shipper = shipper_factory(
        es_server.url,
        {
            "elasticsearch": {
                "routing": [{"name": "routed-by-rule-*", "dataset": "rules", "namespace": "qa"}]
            }
        },
    )
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    suffix = str(time.time_ns())[-6:]
    by_rule = containers('echo "by rule"', name=f"routed-by-rule-{suffix}")
    by_label = containers(
        'echo "by label"',
        labels={"shipper.dataset": "Shop-Web", "shipper.namespace": "prod"},
    )
    plain = containers('echo "plain"')
    for container in (by_rule, by_label, plain):
        await wait_exit(container)
    await assert_shipped_exactly_once(es_server, docker_client, by_rule.id, index="logs-rules-qa")
    _, documents = await assert_shipped_exactly_once(
        es_server, docker_client, by_label.id, index="logs-shop_web-prod"
    )
    assert documents[0]["_source"]["data_stream"] == {
        "type": "logs",
        "dataset": "shop_web",
        "namespace": "prod",
    }
    await assert_shipped_exactly_once(es_server, docker_client, plain.id)
    assert await documents_of(es_server, by_label.id) == []  # not in the default stream
    _, mapping = await es_server.probe().request("GET", "/logs-shop_web-prod/_mapping")
    properties = next(iter(mapping.values()))["mappings"]["properties"]
    assert properties["@timestamp"]["type"] == "date_nanos"  # its template was installed
    assert await asyncio.to_thread(shipper.stop) == 0


def test_unreadable_secret_file_exits_2(tmp_path: Path, shipper_factory: Any) -> None:
    shipper = shipper_factory(
        "http://127.0.0.1:9",
        {"elasticsearch": {"username": "u", "password_file": str(tmp_path / "nope")}},
    )
    shipper.start()
    assert shipper.process is not None
    assert shipper.process.wait(timeout=30) == 2
    assert "elasticsearch.password_file: cannot read" in shipper.stderr()


def _sha256_fingerprint(pem_path: str) -> str:
    """AB:CD:... over the certificate's DER bytes, as `openssl x509 -fingerprint` prints it."""
    der = ssl.PEM_cert_to_DER_cert(Path(pem_path).read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


async def test_a_pinned_fingerprint_verifies_the_server_and_a_wrong_one_fails_clearly(
    tls_files: dict[str, str],
    docker_client: docker.DockerClient,
    containers: Any,
    shipper_factory: Any,
) -> None:
    # No ca_certs anywhere in the shipper's config, and the test CA is in no trust store:
    # only the pinned fingerprint can make the server trusted.
    server = EsTestServer(9, tls_cert=tls_files["cert"], tls_key=tls_files["key"])
    await server.start(0)
    checked = _Authed(server, {"ca_file": tls_files["ca"]})
    right = _sha256_fingerprint(tls_files["cert"])
    wrong = _sha256_fingerprint(tls_files["ca"])  # well formed, another certificate's
    assert right != wrong
    try:
        shipper = shipper_factory(server.url, {"elasticsearch": {"ssl_assert_fingerprint": wrong}})
        container = containers('for i in $(seq 1 30); do echo "pinned $i"; done')
        await wait_exit(container)
        shipper.start()
        await asyncio.to_thread(shipper.wait_ready_http)

        async def not_ready() -> bool:
            status, _ = await asyncio.to_thread(shipper.http_get, "/readyz")
            return status == 503

        await wait_until(not_ready, 20, "/readyz to say not ready")
        await asyncio.sleep(1.5)  # past "not connected yet": the connection attempt failed
        _, body = await asyncio.to_thread(shipper.http_get, "/readyz")
        # The reason names the key and the fingerprint the server showed, so the operator
        # can compare it with the one they meant to pin.
        assert body == (
            "not ready\n- output not accepting writes: TLS failure talking to Elasticsearch: "
            "the server's certificate does not match elasticsearch.ssl_assert_fingerprint "
            f"(the server's SHA-256 fingerprint is {right})\n"
        ), body
        assert await documents_of(checked, container.id) == []
        assert server.stats.bulk_requests == 0  # nothing crossed an unverified connection
        assert await asyncio.to_thread(shipper.stop) == 0
        assert "Traceback" not in shipper.stderr()

        # Fixed: the right fingerprint, same storage; every line arrives, once.
        shipper.config_path.write_text(
            yaml.safe_dump(
                deep_merge(shipper.config, {"elasticsearch": {"ssl_assert_fingerprint": right}})
            )
        )
        shipper.start()
        await assert_shipped_exactly_once(checked, docker_client, container.id)
        status, body = await asyncio.to_thread(shipper.http_get, "/readyz")
        assert (status, body) == (200, "ready\n")
        assert "TLS CERTIFICATE VERIFICATION IS OFF" not in shipper.stderr()
        assert await asyncio.to_thread(shipper.stop) == 0
    finally:
        await server.stop()


async def test_verify_certs_false_ships_and_says_so_loudly(
    tls_files: dict[str, str],
    docker_client: docker.DockerClient,
    containers: Any,
    shipper_factory: Any,
) -> None:
    server = EsTestServer(9, tls_cert=tls_files["cert"], tls_key=tls_files["key"])
    await server.start(0)
    try:
        shipper = shipper_factory(server.url, {"elasticsearch": {"verify_certs": False}})
        shipper.start()
        container = containers('for i in $(seq 1 10); do echo "unverified $i"; done')
        await wait_exit(container)
        await assert_shipped_exactly_once(
            _Authed(server, {"ca_file": tls_files["ca"]}), docker_client, container.id
        )
        assert await asyncio.to_thread(shipper.stop) == 0
        warnings = [
            json.loads(line)
            for line in shipper.stderr().splitlines()
            if "TLS CERTIFICATE VERIFICATION IS OFF" in line
        ]
        assert len(warnings) == 1  # once per start
        assert warnings[0]["log.level"] == "error"
        assert warnings[0]["message"] == (
            "TLS CERTIFICATE VERIFICATION IS OFF (elasticsearch.verify_certs: false): anyone "
            "between the shipper and Elasticsearch can read and change the logs and the "
            "credentials. Use ca_certs or ssl_assert_fingerprint instead."
        )
        assert warnings[0]["hosts"] == [server.url]
    finally:
        await server.stop()
