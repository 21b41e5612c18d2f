"""SHIPPER_TEST_ES_URL mode: parsing the environment, the shipper's config, and the whole
test_es_server.py and test_ingest_and_failure_store.py suites run against a secured (https +
password) "real" cluster.

No real Elasticsearch runs here, so the "real" cluster is the test server in its own process,
reached only through what a real cluster offers: plain HTTP with credentials and a CA.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipper.config import ElasticsearchConfig
from shipper.sinks.elasticsearch.client import ElasticsearchConnection
from tests.es_server import EsTestServer
from tests.es_server.fixtures import (
    ENV_API_KEY,
    ENV_CA,
    ENV_URL,
    ENV_VERIFY,
    Connection,
    RealCluster,
    shipper_es_config,
)

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "p@ss:w/rd"  # needs percent-encoding in a URL
QUOTED = "p%40ss%3Aw%2Frd"

pytestmark = pytest.mark.skipif(
    bool(os.environ.get(ENV_URL)), reason="drives its own server; nothing to check on a real one"
)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    base = tmp_path_factory.mktemp("tls")
    files = {"cert": base / "cert.pem", "key": base / "key.pem", "ca": base / "ca.pem"}
    cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    cert.private_key_pem.write_to_path(str(files["key"]))
    ca.cert_pem.write_to_path(str(files["ca"]))
    return {k: str(v) for k, v in files.items()}


@pytest.fixture
async def secured(tls_files: dict[str, str]) -> Any:
    server = EsTestServer(
        8,
        users={"elastic": PASSWORD},
        tls_cert=tls_files["cert"],
        tls_key=tls_files["key"],
        tls_ca=tls_files["ca"],
    )
    await server.start(0)
    yield server
    await server.stop()


def test_connection_from_env() -> None:
    assert Connection.from_env({}) is None
    conn = Connection.from_env(
        {ENV_URL: f"https://el%40stic:{QUOTED}@es.example:9243/prefix/", ENV_CA: "/ca.pem"}
    )
    assert conn == Connection(
        url="https://es.example:9243/prefix",
        username="el@stic",
        password=PASSWORD,
        ca_certs="/ca.pem",
    )
    assert conn.shipper_config() == {
        "hosts": ["https://es.example:9243/prefix"],
        "username": "el@stic",
        "password": PASSWORD,
        "ca_certs": "/ca.pem",
    }
    unverified = Connection.from_env({ENV_URL: "https://es:9200", ENV_VERIFY: "0"})
    assert unverified is not None
    assert unverified.shipper_config() == {"hosts": ["https://es:9200"], "verify_certs": False}
    keyed = Connection.from_env({ENV_URL: "http://localhost:9200", ENV_API_KEY: "aWQ6a2V5"})
    assert keyed is not None
    assert keyed.shipper_config() == {"hosts": ["http://localhost:9200"], "api_key": "aWQ6a2V5"}
    # Every key is one the shipper's closed config model accepts.
    for config in (conn, unverified, keyed):
        ElasticsearchConfig.model_validate(config.shipper_config())
    with pytest.raises(pytest.UsageError, match="is not an http"):
        Connection.from_env({ENV_URL: "localhost:9200"})
    with pytest.raises(pytest.UsageError, match="not both"):
        Connection.from_env({ENV_URL: "http://u:p@h:9200", ENV_API_KEY: "aWQ6a2V5"})


def test_in_process_shipper_config(tls_files: dict[str, str]) -> None:
    plain = EsTestServer(9)
    plain.port = 9999
    assert plain.shipper_config() == {"hosts": ["http://127.0.0.1:9999"]}
    keyed = EsTestServer(9, api_keys={"id": "key"})
    keyed.port = 9999
    assert keyed.shipper_config() == {"hosts": ["http://127.0.0.1:9999"], "api_key": "aWQ6a2V5"}
    unverifiable = EsTestServer(
        9, users={"u": "p"}, tls_cert=tls_files["cert"], tls_key=tls_files["key"]
    )
    unverifiable.port = 9999
    assert unverifiable.shipper_config() == {
        "hosts": ["https://127.0.0.1:9999"],
        "username": "u",
        "password": "p",
        "verify_certs": False,
    }
    for server in (plain, keyed, unverifiable):
        ElasticsearchConfig.model_validate(server.shipper_config())


async def test_secured_cluster_from_the_environment(
    secured: EsTestServer, tls_files: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_URL, secured.url.replace("https://", f"https://elastic:{QUOTED}@"))
    monkeypatch.setenv(ENV_CA, tls_files["ca"])
    expected = {
        "hosts": [secured.url],
        "username": "elastic",
        "password": PASSWORD,
        "ca_certs": tls_files["ca"],
    }
    assert shipper_es_config(secured.url) == expected
    assert shipper_es_config(secured.url + "/") == expected
    assert shipper_es_config("http://elsewhere:9200") == {"hosts": ["http://elsewhere:9200"]}
    assert secured.shipper_config() == expected
    # The shipper's own client gets in with it: credentials and certificate checks both work.
    connection = ElasticsearchConnection(ElasticsearchConfig.model_validate(expected))
    try:
        assert await connection.connect() == 8
    finally:
        await connection.close()

    conn = Connection.from_env()
    assert conn is not None
    cluster = RealCluster(conn)
    await cluster.connect()
    assert (cluster.major, cluster.version["number"]) == (8, "8.17.0")
    before = await cluster.inventory()
    assert "logs" in before.index_templates and before.data_streams == frozenset()
    probe = cluster.probe()
    await probe.request("PUT", "/_ilm/policy/p1", {"policy": {"phases": {}}})
    await probe.request("PUT", "/_component_template/c1", {"template": {}})
    await probe.request(
        "PUT",
        "/_index_template/t1",
        {"index_patterns": ["t1-*"], "composed_of": ["c1"], "data_stream": {}, "priority": 7},
    )
    await probe.request("PUT", "/_data_stream/t1-a")
    await probe.request("PUT", "/plain-index")
    await probe.request("PUT", "/_ingest/pipeline/pl1", {"processors": []})
    grown = await cluster.inventory()
    assert grown.data_streams == {"t1-a"} and grown.indices == {"plain-index"}
    assert grown.pipelines - before.pipelines == {"pl1"}
    await cluster.cleanup(before)
    assert await cluster.inventory() == before
    assert secured.store.indices == {}

    # What only the in-process server has skips the test instead of failing it.
    with pytest.raises(pytest.skip.Exception, match=r"es_server\.faults needs the in-process"):
        _ = cluster.faults
    with pytest.raises(AttributeError):
        _ = cluster._private


async def test_wrong_credentials_fail_with_a_hint(
    secured: EsTestServer, tls_files: dict[str, str]
) -> None:
    wrong = Connection(secured.url, "elastic", "wrong", ca_certs=tls_files["ca"])
    with pytest.raises(pytest.fail.Exception, match=r"answers HTTP 401 \(credentials: "):
        await RealCluster(wrong).connect()
    untrusted = RealCluster(Connection(url=secured.url, username="elastic", password=PASSWORD))
    with pytest.raises(pytest.fail.Exception, match=r"cannot be reached: .*certificate"):
        await untrusted.connect()


@pytest.fixture
def secured_process(tls_files: dict[str, str], request: pytest.FixtureRequest) -> Iterator[str]:
    major = request.param
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.es_server",
            "--port",
            "0",
            "--major",
            str(major),
            "--user",
            f"elastic:{PASSWORD}",
            "--tls-cert",
            tls_files["cert"],
            "--tls-key",
            tls_files["key"],
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().decode().strip()
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _results(junit: Path) -> dict[str, str]:
    outcome: dict[str, str] = {}
    for case in ET.parse(junit).iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("skipped", "failure", "error")]
        outcome[case.attrib["name"]] = kinds[0] if kinds else "passed"
    return outcome


ONLY_8 = {
    "test_client_9_is_rejected_by_8x_server",
    "test_8x_accepts_compat_8_and_mismatch_is_rejected",
}
ONLY_9 = {
    "test_root_and_product_header_with_official_client",
    # test_ingest_and_failure_store.py: the failure store is 9.1's (8.19's, not 8.17's)
    "test_a_mapping_failure_goes_to_the_failure_store",
    "test_pipeline_failures_go_to_the_failure_store_as_sent",
    "test_without_the_failure_store_errors_say_not_enabled",
}


@pytest.mark.parametrize("secured_process", [8, 9], indirect=True)
async def test_the_server_suite_runs_against_a_real_cluster(
    secured_process: str, tls_files: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    major = int(request.node.callspec.params["secured_process"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPPER_TEST_")}
    env[ENV_URL] = secured_process.replace("https://", f"https://elastic:{QUOTED}@")
    env[ENV_CA] = tls_files["ca"]
    junit = tmp_path / "junit.xml"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        f"--junitxml={junit}",
        "tests/es_server_tests/test_es_server.py",
        "tests/es_server_tests/test_ingest_and_failure_store.py",
    ]
    run = await asyncio.to_thread(
        subprocess.run, command, cwd=REPO, env=env, capture_output=True, timeout=240
    )
    results = _results(junit)
    failed = {name: kind for name, kind in results.items() if kind in ("failure", "error")}
    assert not failed, run.stdout.decode()[-5000:]
    skipped = {name for name, kind in results.items() if kind == "skipped"}
    assert skipped == (ONLY_9 if major == 8 else ONLY_8)
    assert run.returncode == 0

    # Every test cleaned up after itself on the "real" cluster.
    probe = Connection(
        url=secured_process, username="elastic", password=PASSWORD, ca_certs=tls_files["ca"]
    ).probe()
    _, stats = await probe.request("GET", "/_test/stats")
    assert stats["doc_counts"] == {}
    assert stats["requests"]["POST /_bulk"] > 10
    _, templates = await probe.request("GET", "/_index_template")
    assert [t["name"] for t in templates["index_templates"]] == ["logs"]
