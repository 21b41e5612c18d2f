"""The shipper only reads from the Docker API: every request it makes is a GET of a read path."""

from __future__ import annotations

import asyncio
import re
import ssl
from pathlib import Path
from typing import Any

import docker
import pytest
import trustme

from tests.integration.helpers import assert_shipped_exactly_once
from tests.support.docker_proxy import RecordingDockerProxy
from tests.support.shipper_process import free_port

pytestmark = pytest.mark.docker

READ_PATHS = [
    r"/_ping",
    r"/version",  # unversioned: the API version is negotiated from it
    r"/v[\d.]+/(version|info|events)",
    r"/v[\d.]+/containers/json",
    r"/v[\d.]+/containers/[0-9a-f]{64}/(json|logs)",
]


async def test_every_docker_api_request_is_a_read(
    es_server: Any,
    docker_client: docker.DockerClient,
    containers: Any,
    shipper_factory: Any,
    tmp_path: Path,
) -> None:
    proxy = RecordingDockerProxy(tmp_path / "docker.sock")
    await proxy.start()
    try:
        # The logs API is what is audited here: no json-file fast path.
        config = {"docker": {"host": proxy.url, "read_mode": "api"}}
        shipper = shipper_factory(es_server.url, config)
        shipper.start()
        await asyncio.to_thread(shipper.wait_ready_http)
        container = containers("echo audited; echo err >&2", tty=False)
        renamed = containers("echo before rename; sleep 2; echo after rename")
        await asyncio.sleep(0.5)
        renamed.rename(renamed.name + "-renamed")
        await asyncio.to_thread(container.wait, timeout=30)
        await asyncio.to_thread(renamed.wait, timeout=30)
        await assert_shipped_exactly_once(es_server, docker_client, container.id)
        _, docs = await assert_shipped_exactly_once(es_server, docker_client, renamed.id)
        names = {d["_source"]["message"]: d["_source"]["container"]["name"] for d in docs}
        assert names["after rename"] == renamed.name + "-renamed"
        container.remove(force=True)  # destroy: the shipper lets go of it
        await asyncio.sleep(1)
        assert await asyncio.to_thread(shipper.stop) == 0
    finally:
        await proxy.stop()
    assert proxy.requests, "the shipper made no request through the proxy"
    for method, path in proxy.requests:
        assert method in ("GET", "HEAD"), (method, path)
        assert any(re.fullmatch(pattern, path) for pattern in READ_PATHS), path
    assert {p.rsplit("/", 1)[-1] for _, p in proxy.requests} >= {"events", "logs", "json"}


async def test_docker_over_tcp_with_tls_the_docker_cli_way(
    es_server: Any,
    docker_client: docker.DockerClient,
    containers: Any,
    shipper_factory: Any,
    tmp_path: Path,
) -> None:
    """tcp:// + DOCKER_TLS_VERIFY + DOCKER_CERT_PATH (ca.pem, cert.pem, key.pem), mutual TLS."""
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    client_cert = ca.issue_cert("shipper-client")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(server_context)
    ca.configure_trust(server_context)
    server_context.verify_mode = ssl.CERT_REQUIRED  # like dockerd --tlsverify
    certs = tmp_path / "certs"
    certs.mkdir()
    ca.cert_pem.write_to_path(str(certs / "ca.pem"))
    client_cert.cert_chain_pems[0].write_to_path(str(certs / "cert.pem"))
    client_cert.private_key_pem.write_to_path(str(certs / "key.pem"))

    proxy = RecordingDockerProxy(None, tcp_port=free_port(), ssl_context=server_context)
    await proxy.start()
    try:
        config = {"docker": {"host": proxy.url, "read_mode": "api"}}
        shipper = shipper_factory(es_server.url, config)
        shipper.start(env={"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)})
        await asyncio.to_thread(shipper.wait_ready_http)
        container = containers("echo over tls; echo second >&2")
        await asyncio.to_thread(container.wait, timeout=30)
        await assert_shipped_exactly_once(es_server, docker_client, container.id)
        assert await asyncio.to_thread(shipper.stop) == 0
    finally:
        await proxy.stop()
    assert any(path.endswith("/logs") for _, path in proxy.requests)


async def test_docker_tls_rejects_an_untrusted_daemon(
    es_server: Any, shipper_factory: Any, tmp_path: Path
) -> None:
    """Verification is on: a daemon whose certificate our CA did not sign is refused."""
    ours, theirs = trustme.CA(), trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    theirs.issue_cert("127.0.0.1").configure_cert(server_context)
    certs = tmp_path / "certs"
    certs.mkdir()
    ours.cert_pem.write_to_path(str(certs / "ca.pem"))
    proxy = RecordingDockerProxy(None, tcp_port=free_port(), ssl_context=server_context)
    await proxy.start()
    try:
        shipper = shipper_factory(es_server.url, {"docker": {"host": proxy.url}})
        shipper.start(env={"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)})
        await asyncio.to_thread(shipper.wait_ready_http)
        await asyncio.sleep(2)
        status, body = shipper.http_get("/readyz")
        assert status == 503 and "Docker API not reachable" in body
        assert proxy.requests == []  # no request got through the failed handshake
        assert await asyncio.to_thread(shipper.stop) == 0
    finally:
        await proxy.stop()
    assert "CERTIFICATE_VERIFY_FAILED" in shipper.stderr()
