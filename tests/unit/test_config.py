from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shipper.cli import main
from shipper.config import Config, load_config, parse_config
from shipper.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "config" / "shipper.yml"


def _keys(model: Any, prefix: str = "") -> set[str]:
    keys = set()
    for name in type(model).model_fields:
        value = getattr(model, name)
        keys.add(prefix + name)
        if hasattr(type(value), "model_fields") and type(value).model_fields:
            keys |= _keys(value, prefix + name + ".")
    return keys


def _yaml_keys(data: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for key, value in data.items():
        keys.add(prefix + key)
        if isinstance(value, dict):
            keys |= _yaml_keys(value, prefix + key + ".")
    return keys


def test_example_config_is_valid_and_documents_every_key() -> None:
    config = load_config(EXAMPLE)
    assert _yaml_keys(yaml.safe_load(EXAMPLE.read_text())) == _keys(config)


def test_example_config_states_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    monkeypatch.delenv("DOCKER_CERT_PATH", raising=False)
    assert load_config(EXAMPLE) == Config()


def test_docker_host_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.5:2376")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", "/certs")
    docker = parse_config({}).docker
    assert (docker.host, docker.tls_verify, docker.cert_path) == (
        "tcp://10.0.0.5:2376",
        True,
        "/certs",
    )


@pytest.mark.parametrize(
    ("raw", "key", "problem"),
    [
        ({"elasticsearch": {"hostz": []}}, "elasticsearch.hostz", "unknown key"),
        ({"storage": {"max_bytes": "lots"}}, "storage.max_bytes", "valid integer"),
        ({"storage": {"max_bytes": -5}}, "storage.max_bytes", "greater than 0"),
        ({"elasticsearch": {"hosts": ["localhost:9200"]}}, "elasticsearch.hosts", "not an http"),
        ({"docker": {"host": "/var/run/docker.sock"}}, "docker.host", "unix://"),
        ({"metrics": {"listen": "9108"}}, "metrics.listen", "host:port"),
        ({"storage": {"fsync": "sometimes"}}, "storage.fsync", "'always'"),
        ({"output": "kafka"}, "output", "'console'"),
        ({"source": "kubernetes"}, "source", "'cri'"),
        ({"cri": {"socket": "containerd.sock"}}, "cri.socket", "absolute path"),
        ({"cri": {"log_directory": "pods"}}, "cri.log_directory", "absolute path"),
        ({"cri": {"sockets": []}}, "cri.sockets", "unknown key"),
        ({"cri": {"timeout_s": 0}}, "cri.timeout_s", "greater than 0"),
        (
            {"processing": {"selection": {"include": [{}]}}},
            "processing.selection.include.0",
            "namespace",
        ),
    ],
)
def test_wrong_config_names_the_key_and_the_problem(
    raw: dict[str, Any], key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert caught.value.key == key
    assert problem in caught.value.problem


def test_a_cri_socket_may_be_given_as_a_unix_url() -> None:
    assert parse_config(
        {"cri": {"socket": "unix:///run/k3s/containerd/containerd.sock"}}
    ).cri.socket == ("/run/k3s/containerd/containerd.sock")


def test_secret_values_are_not_echoed_in_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"elasticsearch": {"password": ["hunter2-secret"]}})
    assert "hunter2" not in str(caught.value)


def test_cli_exits_2_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("storage:\n  pathh: /tmp/x\n")
    assert main(["run", "--config", str(bad)]) == 2
    assert "storage.pathh: unknown key" in capsys.readouterr().err
    assert main(["run", "--config", str(tmp_path / "missing.yml")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("raw", "key", "problem"),
    [
        (
            {"elasticsearch": {"username": "u", "password": "p", "password_file": "/p"}},
            "elasticsearch.password_file",
            "give password or password_file, not both",
        ),
        (
            {"elasticsearch": {"api_key": "k", "api_key_file": "/k"}},
            "elasticsearch.api_key_file",
            "give api_key or api_key_file, not both",
        ),
        (
            {"elasticsearch": {"bearer_token": "t", "bearer_token_file": "/t"}},
            "elasticsearch.bearer_token_file",
            "give bearer_token or bearer_token_file, not both",
        ),
        (
            {"elasticsearch": {"username": "u", "api_key_file": "/k"}},
            "elasticsearch.api_key_file",
            "choose one way to authenticate, not username/password and api_key",
        ),
        (
            {"elasticsearch": {"api_key": "k", "bearer_token": "t"}},
            "elasticsearch.bearer_token",
            "choose one way to authenticate, not api_key and bearer_token",
        ),
        (
            {"elasticsearch": {"password_file": "/p"}},
            "elasticsearch.password_file",
            "a password without username; set username too",
        ),
        (
            {"elasticsearch": {"dead_letter": {"data_stream": "logs-docker-default"}}},
            "elasticsearch.dead_letter.data_stream",
            "must differ from data_stream",
        ),
        (
            {"kibana": {"username": "u", "password": "p", "password_file": "/p"}},
            "kibana.password_file",
            "give password or password_file, not both",
        ),
        (
            {"kibana": {"api_key": "k", "api_key_file": "/k"}},
            "kibana.api_key_file",
            "give api_key or api_key_file, not both",
        ),
        (
            {"kibana": {"username": "u", "api_key": "k"}},
            "kibana.api_key",
            "choose one way to authenticate, not username/password and api_key",
        ),
        (
            {"kibana": {"password": "p"}},
            "kibana.password",
            "a password without username; set username too",
        ),
        (
            {
                "processing": {
                    "redaction": {"rules": [{"id": "r", "pattern": "a", "replacement": "\\2"}]}
                }
            },
            "processing.redaction.rules.0.replacement",
            "invalid replacement: invalid group reference 2 at position 1",
        ),
    ],
)
def test_cross_field_errors_name_the_exact_key(raw: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert (caught.value.key, caught.value.problem) == (key, problem)


def test_cross_field_errors_never_echo_the_secrets() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"elasticsearch": {"api_key": "K3y-never-echo", "bearer_token": "T0k-never"}})
    assert "K3y-never-echo" not in str(caught.value) and "T0k-never" not in str(caught.value)


def test_a_cross_field_error_names_the_variable_that_set_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(
            None,
            environ={
                "SHIPPER_ELASTICSEARCH_USERNAME": "u",
                "SHIPPER_ELASTICSEARCH_PASSWORD": "p",
                "SHIPPER_ELASTICSEARCH_PASSWORD_FILE": str(tmp_path / "p"),
            },
        )
    assert str(caught.value) == (
        "elasticsearch.password_file: give password or password_file, not both "
        "(set by the environment variable SHIPPER_ELASTICSEARCH_PASSWORD_FILE)"
    )


FINGERPRINT = "AB:" * 31 + "CD"  # 32 bytes, as openssl and Elasticsearch print it


@pytest.mark.parametrize("value", [FINGERPRINT, FINGERPRINT.replace(":", ""), FINGERPRINT.lower()])
def test_a_sha256_fingerprint_is_accepted_with_or_without_colons(value: str) -> None:
    config = parse_config({"elasticsearch": {"ssl_assert_fingerprint": value}})
    assert config.elasticsearch.ssl_assert_fingerprint == value


@pytest.mark.parametrize(
    "value",
    [
        "zz:not-hex",
        "AB:" * 19 + "CD",  # 20 bytes: SHA-1, refused by the TLS client
        FINGERPRINT + "EF",  # 33 bytes
        "",
        FINGERPRINT.replace("AB", "GB", 1),
    ],
)
def test_a_malformed_fingerprint_names_the_key(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"elasticsearch": {"ssl_assert_fingerprint": value}})
    assert caught.value.key == "elasticsearch.ssl_assert_fingerprint"
    assert caught.value.problem.startswith(
        "must be a SHA-256 fingerprint: 64 hex digits, colons allowed, as "
        "`openssl x509 -noout -fingerprint -sha256` prints it (got "
    )


def test_validator_messages_have_no_pydantic_prefix() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"elasticsearch": {"hosts": ["es:9200"]}})
    assert caught.value.problem == "'es:9200' is not an http:// or https:// URL (got ['es:9200'])"


@pytest.mark.parametrize(
    ("raw", "key", "problem"),
    [
        ({"start_at": "yesterday"}, "start_at", "beginning, now or a duration"),
        ({"start_at": "-5m"}, "start_at", "beginning, now or a duration"),
        ({"docker": {"start_at": "0s"}}, "start_at", "(given as docker.start_at)"),
        (
            {"start_at": "now", "docker": {"start_at": "10m"}},
            "docker.start_at",
            "same setting",
        ),
        (
            {"processing": {"rate_limit": {"rules": [{"id": "a"}]}}},
            "processing.rate_limit.rules.0.lines_per_s",
            "give lines_per_s, bytes_per_s or both",
        ),
        (
            {"processing": {"rate_limit": {"rules": [{"id": "a", "bytes_per_s": -1}]}}},
            "processing.rate_limit.rules.0.bytes_per_s",
            "greater than 0",
        ),
        (
            {
                "processing": {
                    "rate_limit": {"rules": [{"id": "a", "lines_per_s": 1, "action": "x"}]}
                }
            },
            "processing.rate_limit.rules.0.action",
            "'pause' or 'drop'",
        ),
        (
            {"processing": {"rate_limit": {"rules": [{"lines_per_s": 1}]}}},
            "processing.rate_limit.rules.0.id",
            "Field required",
        ),
        (
            {
                "processing": {
                    "rate_limit": {"rules": [{"id": "a", "lines_per_s": 1, "labels": ["a b"]}]}
                }
            },
            "processing.rate_limit.rules.0.labels",
            "is not 'key'",
        ),
        (
            {"processing": {"rate_limit": {"summary_interval_s": 0}}},
            "processing.rate_limit.summary_interval_s",
            "greater than 0",
        ),
        (
            {"processing": {"drop": [{"id": "rate_limit", "stream": "stdout"}]}},
            "processing.drop.0.id",
            "choose another id",
        ),
        (
            {"processing": {"json_logs": {"keep_original": "maybe"}}},
            "processing.json_logs.keep_original",
            "valid boolean",
        ),
    ],
)
def test_operator_controls_are_validated_naming_the_key(
    raw: dict[str, Any], key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert caught.value.key == key
    assert problem in caught.value.problem


def test_start_at_has_one_value_whatever_name_or_layer_gives_it(tmp_path: Path) -> None:
    path = tmp_path / "shipper.yml"
    path.write_text("docker:\n  start_at: 10m\n")
    assert load_config(path).start_at == "10m"
    assert load_config(path, environ={"SHIPPER_START_AT": "now"}).start_at == "now"
    assert load_config(path, {"start_at": "beginning"}, environ={}).start_at == "beginning"
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ={"SHIPPER_START_AT": "now", "SHIPPER_DOCKER_START_AT": "1h"})
    assert caught.value.key == "SHIPPER_START_AT"


def test_a_wrong_start_at_flag_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "--storage-path", str(tmp_path), "--start-at", "yesterday"])
    assert code == 2
    assert "start_at: must be beginning, now or a duration" in capsys.readouterr().err
