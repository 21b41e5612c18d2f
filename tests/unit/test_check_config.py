"""`shipper check-config`: every broken config names its key and exits 2; secrets never shown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shipper.cli import main

SECRET_PASSWORD = "pw-Zq81-never-print"
SECRET_URL_PASSWORD = "url-Kx93-never-print"
SECRET_FILE_CONTENT = "file-Mv27-never-print"


def _check(
    tmp_path: Path,
    text: str | None,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str] | None = None,
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> tuple[int, str, str]:
    path = tmp_path / "shipper.yml"
    if text is not None:
        path.write_text(text)
    if env and monkeypatch is not None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
    code = main(["check-config", "--config", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


BROKEN = [
    pytest.param("storage:\n  pathh: /tmp/x\n", {}, "storage.pathh: unknown key", id="unknown-key"),
    pytest.param(
        "elasticsearch:\n  batch_max_docs: many\n",
        {},
        "elasticsearch.batch_max_docs: Input should be a valid integer",
        id="wrong-type",
    ),
    pytest.param(
        "elasticsearch:\n  hosts: ['es.example:9200']\n",
        {},
        "elasticsearch.hosts: ",
        id="bad-url",
    ),
    pytest.param(
        "elasticsearch:\n  username: shipper\n  password_file: /nonexistent/es-password\n",
        {},
        "elasticsearch.password_file: cannot read",
        id="unreadable-secret-file",
    ),
    pytest.param(
        "storage:\n  max_bytes: -1\n",
        {},
        "storage.max_bytes: Input should be greater than 0",
        id="negative-size",
    ),
    pytest.param(
        "metrics:\n  listen: 'localhost'\n", {}, "metrics.listen: ", id="bad-listen-address"
    ),
    pytest.param(
        "processing:\n  drop:\n    - id: x\n      message_pattern: '(unclosed'\n",
        {},
        "processing.drop.0.message_pattern: ",
        id="bad-regex",
    ),
    pytest.param("log:\n  level: verbose\n", {}, "log.level: Input should be", id="bad-enum"),
    pytest.param(None, {}, "--config: file", id="missing-file"),
    pytest.param("storage: [unclosed\n", {}, "--config: ", id="invalid-yaml"),
    pytest.param(
        "output: elasticsearch\n",
        {"SHIPPER_ELASTICSEARCH_MAX_CONCURRENT_REQUESTS": "0"},
        "elasticsearch.max_concurrent_requests: Input should be greater than or equal to 1",
        id="env-bad-value",
    ),
    pytest.param(
        "output: elasticsearch\n",
        {"SHIPPER_ELASTICSEARCH_HOST": "http://a:9200"},
        "SHIPPER_ELASTICSEARCH_HOST: unknown environment variable",
        id="env-unknown-variable",
    ),
    pytest.param(
        "elasticsearch:\n  username: shipper\n  password: ${ES_PASSWORD_UNSET_IN_TEST}\n",
        {},
        "elasticsearch.password: environment variable ES_PASSWORD_UNSET_IN_TEST is not set",
        id="missing-interpolated-variable",
    ),
    pytest.param(
        "elasticsearch:\n  ssl_assert_fingerprint: 'zz:not-hex'\n",
        {},
        "elasticsearch.ssl_assert_fingerprint: must be a SHA-256 fingerprint: 64 hex digits, "
        "colons allowed, as `openssl x509 -noout -fingerprint -sha256` prints it "
        "(got 'zz:not-hex')",
        id="bad-fingerprint",
    ),
    pytest.param(
        "elasticsearch:\n  ca_certs: /nonexistent/ca.pem\n",
        {},
        "elasticsearch.ca_certs: cannot read '/nonexistent/ca.pem': No such file or directory",
        id="unreadable-ca-certs",
    ),
    pytest.param(
        "kibana:\n  url: https://kibana:5601\n  ca_certs: /nonexistent/kibana-ca.pem\n",
        {},
        "kibana.ca_certs: cannot read '/nonexistent/kibana-ca.pem': No such file or directory",
        id="unreadable-kibana-ca-certs",
    ),
    pytest.param(
        "elasticsearch:\n  username: u\n  password: p\n  password_file: /run/p\n",
        {},
        "elasticsearch.password_file: give password or password_file, not both",
        id="password-and-password-file",
    ),
    pytest.param(
        "kibana:\n  api_key: k\n  api_key_file: /run/k\n",
        {},
        "kibana.api_key_file: give api_key or api_key_file, not both",
        id="kibana-api-key-and-file",
    ),
]


@pytest.mark.parametrize(("text", "env", "message"), BROKEN)
def test_broken_config_names_the_key_and_exits_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    text: str | None,
    env: dict[str, str],
    message: str,
) -> None:
    code, out, err = _check(tmp_path, text, capsys, env, monkeypatch)
    assert code == 2
    assert out == ""
    assert err.startswith("shipper: configuration error: " + message), err
    assert len(err.splitlines()) == 1  # one sentence, no traceback


def test_valid_config_prints_the_effective_config_with_secrets_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "api-key"
    secret_file.write_text(SECRET_FILE_CONTENT + "\n")
    monkeypatch.setenv("ES_HOST_PASSWORD", SECRET_URL_PASSWORD)
    monkeypatch.setenv("SHIPPER_HOST_NAME", "node-from-env")
    code, out, err = _check(
        tmp_path,
        "elasticsearch:\n"
        "  hosts: ['https://u:${ES_HOST_PASSWORD}@es:9200']\n"
        f"  api_key_file: {secret_file}\n"
        "storage:\n  path: ${STATE_DIR:-/var/lib/from-default}\n",
        capsys,
    )
    assert code == 0, err
    effective = yaml.safe_load(out)
    assert effective["host_name"] == "node-from-env"
    assert effective["storage"]["path"] == "/var/lib/from-default"
    assert effective["elasticsearch"]["hosts"] == ["https://u:***@es:9200"]
    assert effective["elasticsearch"]["api_key_file"] == str(secret_file)
    assert SECRET_URL_PASSWORD not in out + err
    assert SECRET_FILE_CONTENT not in out + err


def test_inline_secrets_from_file_and_environment_are_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_PASSWORD", SECRET_PASSWORD)
    code, out, err = _check(tmp_path, "elasticsearch:\n  username: shipper\n", capsys)
    assert code == 0, err
    assert yaml.safe_load(out)["elasticsearch"]["password"] == "***"
    assert SECRET_PASSWORD not in out + err


def test_the_real_program_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("storage:\n  max_bytes: -5\n")
    result = subprocess.run(
        [sys.executable, "-m", "shipper", "check-config", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("SHIPPER_")},
    )
    assert result.returncode == 2
    assert "storage.max_bytes" in result.stderr


def test_a_ca_bundle_without_certificates_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("this is not a certificate\n")
    code, out, err = _check(tmp_path, f"elasticsearch:\n  ca_certs: {bundle}\n", capsys)
    assert (code, out) == (2, "")
    assert err == (
        f"shipper: configuration error: elasticsearch.ca_certs: '{bundle}' holds no PEM "
        "certificate (NO_CERTIFICATE_OR_CRL_FOUND)\n"
    )


def test_docker_tls_files_that_do_not_load_name_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.pem").write_text("garbage\n")
    code, out, err = _check(
        tmp_path, f"docker:\n  host: tcp://docker:2376\n  cert_path: {certs}\n", capsys
    )
    assert (code, out) == (2, "")
    assert err.startswith(
        "shipper: configuration error: docker.cert_path: cannot load TLS files: "
    ), err


def test_the_same_broken_file_stops_run_with_exit_2_before_it_starts(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("this is not a certificate\n")
    config = tmp_path / "shipper.yml"
    config.write_text(
        f"elasticsearch:\n  hosts: ['https://127.0.0.1:9']\n  ca_certs: {bundle}\n"
        f"storage:\n  path: {tmp_path / 'storage'}\nmetrics:\n  listen: null\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "shipper", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("SHIPPER_")},
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"shipper: configuration error: elasticsearch.ca_certs: '{bundle}' holds no PEM "
        "certificate (NO_CERTIFICATE_OR_CRL_FOUND)\n"
    )
    assert not (tmp_path / "storage").exists()  # stopped before anything started


def test_tls_verification_off_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _check(
        tmp_path,
        "elasticsearch:\n  hosts: ['https://es:9200']\n  verify_certs: false\n"
        "kibana:\n  url: https://kibana:5601\n  verify_certs: false\n",
        capsys,
    )
    assert code == 0
    assert err.splitlines() == [
        "shipper: warning: elasticsearch.verify_certs is false: the certificates of the "
        "https:// hosts are not verified (use ca_certs or ssl_assert_fingerprint instead)",
        "shipper: warning: kibana.verify_certs is false: Kibana's certificate is not verified "
        "(use kibana.ca_certs instead)",
        f"shipper: the configuration is valid ({tmp_path / 'shipper.yml'}).",
    ]


def test_a_pinned_fingerprint_is_accepted_without_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fingerprint = ":".join(["0F"] * 32)
    code, out, err = _check(
        tmp_path,
        "elasticsearch:\n  hosts: ['https://es:9200']\n  verify_certs: false\n"
        f"  ssl_assert_fingerprint: '{fingerprint}'\n",
        capsys,
    )
    assert code == 0, err
    assert yaml.safe_load(out)["elasticsearch"]["ssl_assert_fingerprint"] == fingerprint
    assert err == f"shipper: the configuration is valid ({tmp_path / 'shipper.yml'}).\n"
