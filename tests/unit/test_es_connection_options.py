"""Client certificates, the Elastic Cloud ID and the failure store switch: checked at start,
each problem a ConfigError naming its key (exit 2), secrets never shown."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import pytest
import trustme
import yaml
from cryptography.hazmat.primitives import serialization

from shipper.cli import main
from shipper.config import masked, parse_config
from shipper.config.schema import cloud_id_host
from shipper.errors import ConfigError
from shipper.sinks.elasticsearch.client import ElasticsearchConnection
from shipper.sinks.elasticsearch.tls import client_tls_context

KEY_PASSWORD = "key-pw-Vb41-never-print"
HTTPS = ["https://127.0.0.1:9200"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    ca = trustme.CA()
    client = ca.issue_cert("shipper-client")
    other = trustme.CA().issue_cert("someone-else")
    base = tmp_path_factory.mktemp("pki")
    files = {
        "ca": base / "ca.pem",
        "cert": base / "client.pem",
        "key": base / "client-key.pem",
        "encrypted": base / "client-key-encrypted.pem",
        "both": base / "client-and-key.pem",
        "other_key": base / "other-key.pem",
        "password": base / "key-password",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    client.cert_chain_pems[0].write_to_path(str(files["cert"]))
    client.private_key_pem.write_to_path(str(files["key"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(files["both"]))
    other.private_key_pem.write_to_path(str(files["other_key"]))
    key = serialization.load_pem_private_key(client.private_key_pem.bytes(), None)
    files["encrypted"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
        )
    )
    files["password"].write_text(KEY_PASSWORD + "\n")
    return {k: str(v) for k, v in files.items()}


def es(**options: object) -> dict[str, object]:
    return {"elasticsearch": {"hosts": HTTPS, **options}}


# -- client certificates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"client_cert": "cert", "client_key": "key"},
        {"client_cert": "both"},  # the key in the certificate's file
        {"client_cert": "cert", "client_key": "encrypted", "client_key_password": KEY_PASSWORD},
        {"client_cert": "cert", "client_key": "encrypted", "client_key_password_file": "password"},
    ],
)
def test_a_client_certificate_loads(pki: dict[str, str], options: dict[str, str]) -> None:
    resolved = {k: v if k == "client_key_password" else pki[v] for k, v in options.items()}
    config = parse_config(es(ca_certs=pki["ca"], **resolved)).elasticsearch
    context = client_tls_context(config)
    assert context is not None
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is False  # 127.0.0.1, as the client does for an IP host
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2


def test_no_client_certificate_means_the_client_builds_its_own_context() -> None:
    assert client_tls_context(parse_config(es()).elasticsearch) is None


@pytest.mark.parametrize(
    ("options", "key", "problem"),
    [
        (
            {"client_cert": "missing.pem"},
            "elasticsearch.client_cert",
            "cannot read",
        ),
        (
            {"client_cert": "key", "client_key": "key"},
            "elasticsearch.client_cert",
            "holds no PEM certificate",
        ),
        (
            {"client_cert": "cert"},
            "elasticsearch.client_cert",
            "holds no PEM private key (give the key as client_key)",
        ),
        (
            {"client_cert": "cert", "client_key": "cert"},
            "elasticsearch.client_key",
            "holds no PEM private key",
        ),
        (
            {"client_cert": "cert", "client_key": "encrypted"},
            "elasticsearch.client_key_password",
            "is encrypted: give client_key_password or client_key_password_file",
        ),
        (
            {"client_cert": "cert", "client_key": "encrypted", "client_key_password": "wrong"},
            "elasticsearch.client_key_password",
            "does not decrypt",
        ),
        (
            {"client_cert": "cert", "client_key": "other_key"},
            "elasticsearch.client_key",
            "is not the key of the certificate in client_cert",
        ),
    ],
)
def test_client_certificate_problems_name_the_key(
    pki: dict[str, str], options: dict[str, str], key: str, problem: str, tmp_path: Path
) -> None:
    resolved = {
        k: (pki[v] if v in pki else "wrong" if k == "client_key_password" else str(tmp_path / v))
        for k, v in options.items()
    }
    config = parse_config(es(**resolved)).elasticsearch
    with pytest.raises(ConfigError) as caught:
        client_tls_context(config)
    assert caught.value.key == key
    assert problem in caught.value.problem
    assert KEY_PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    ("options", "key", "problem"),
    [
        ({"client_key": "/k.pem"}, "client_key", "without client_cert"),
        ({"client_key_password": "x"}, "client_key_password", "without client_cert"),
        (
            {"client_cert": "/c.pem", "client_key_password": "x", "client_key_password_file": "/f"},
            "client_key_password_file",
            "not both",
        ),
        (
            {"client_cert": "/c.pem", "ssl_assert_fingerprint": "AB" * 32},
            "client_cert",
            "cannot be combined with ssl_assert_fingerprint",
        ),
    ],
)
def test_client_certificate_combinations(options: dict[str, str], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(es(**options))
    assert caught.value.key == f"elasticsearch.{key}"
    assert problem in caught.value.problem


def test_a_client_certificate_needs_https_hosts() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"elasticsearch": {"client_cert": "/c.pem"}})
    assert str(caught.value) == (
        "elasticsearch.client_cert: needs https:// hosts; http://localhost:9200 is not one"
    )


def test_the_key_password_is_a_secret(pki: dict[str, str]) -> None:
    config = parse_config(
        es(client_cert=pki["cert"], client_key=pki["encrypted"], client_key_password=KEY_PASSWORD)
    )
    shown = masked(config)["elasticsearch"]
    assert shown["client_key_password"] == "***"
    assert shown["client_cert"] == pki["cert"]  # paths are not secrets
    assert shown["client_key"] == pki["encrypted"]


async def test_the_connection_uses_the_context_with_the_certificate(pki: dict[str, str]) -> None:
    config = parse_config(
        es(
            ca_certs=pki["ca"],
            client_cert=pki["cert"],
            client_key=pki["encrypted"],
            client_key_password_file=pki["password"],
        )
    ).elasticsearch
    connection = ElasticsearchConnection(config)
    try:
        nodes = connection._client.transport.node_pool.all()
        assert nodes and all(node.config.ssl_context is not None for node in nodes)
        assert all(node.config.ca_certs is None for node in nodes)  # the context has it
    finally:
        await connection.close()


def test_check_config_refuses_an_encrypted_key_without_its_password(
    pki: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "shipper.yml"
    path.write_text(yaml.safe_dump(es(client_cert=pki["cert"], client_key=pki["encrypted"])))
    assert main(["check-config", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "shipper: configuration error: elasticsearch.client_key_password: "
        f"'{pki['encrypted']}' is encrypted: give client_key_password or "
        "client_key_password_file\n"
    )


# -- Elastic Cloud ---------------------------------------------------------------------------------


def cloud_id(decoded: str, name: str = "my-deployment") -> str:
    return f"{name}:" + base64.b64encode(decoded.encode()).decode()


@pytest.mark.parametrize(
    ("decoded", "host"),
    [
        ("us-east-1.aws.found.io$abc123$def456", "https://abc123.us-east-1.aws.found.io:443"),
        ("eu-west-1.aws.found.io:9243$abc$def", "https://abc.eu-west-1.aws.found.io:9243"),
        (
            "westeurope.azure.elastic-cloud.com$es1",
            "https://es1.westeurope.azure.elastic-cloud.com:443",
        ),
    ],
)
def test_a_cloud_id_decodes_as_the_official_client_does(decoded: str, host: str) -> None:
    assert cloud_id_host(cloud_id(decoded)) == host
    config = parse_config({"elasticsearch": {"cloud_id": cloud_id(decoded), "api_key": "k"}})
    assert config.elasticsearch.hosts == [host]


@pytest.mark.parametrize(
    "value",
    [
        "no-colon-at-all",
        "name:%%%not base64%%%",
        cloud_id("$abc$def"),  # no domain
        cloud_id("us-east-1.aws.found.io"),  # no Elasticsearch part
        cloud_id("us-east-1.aws.found.io:notaport$abc$def"),
    ],
)
def test_a_malformed_cloud_id_names_the_key(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"elasticsearch": {"cloud_id": value}})
    assert caught.value.key == "elasticsearch.cloud_id"
    assert "is not a valid Elastic Cloud ID" in caught.value.problem


def test_hosts_and_cloud_id_together_are_an_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {"elasticsearch": {"cloud_id": cloud_id("a.io$es$kb"), "hosts": ["https://x:9200"]}}
        )
    assert str(caught.value) == (
        "elasticsearch.hosts: give hosts or cloud_id, not both (cloud_id decodes to "
        "https://es.a.io:443)"
    )


def test_check_config_shows_the_decoded_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "shipper.yml"
    value = cloud_id("us-east-1.aws.found.io$abc123$def456")
    path.write_text(f"elasticsearch:\n  cloud_id: '{value}'\n  api_key: c2VjcmV0\n")
    assert main(["check-config", "--config", str(path)]) == 0
    out, _ = capsys.readouterr()
    shown = yaml.safe_load(out)["elasticsearch"]
    assert shown["hosts"] == ["https://abc123.us-east-1.aws.found.io:443"]
    assert shown["cloud_id"] == value
    assert shown["api_key"] == "***"


# -- the failure store switch ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("on", "on"), ("off", "off"), ("'on'", "on"), ("true", "on"), ("false", "off")],
)
def test_failure_store_reads_yaml_on_and_off(text: str, expected: str) -> None:
    raw = yaml.safe_load(f"elasticsearch:\n  failure_store: {text}\n")
    assert parse_config(raw).elasticsearch.failure_store == expected


def test_failure_store_from_the_environment() -> None:
    from shipper.config import load_config

    config = load_config(None, environ={"SHIPPER_ELASTICSEARCH_FAILURE_STORE": "on"})
    assert config.elasticsearch.failure_store == "on"
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ={"SHIPPER_ELASTICSEARCH_FAILURE_STORE": "maybe"})
    assert caught.value.key == "elasticsearch.failure_store"
