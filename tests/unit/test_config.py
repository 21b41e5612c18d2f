from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shipper.cli import main
from shipper.config import Config, ConfigError, load_config, parse_config

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
    ],
)
def test_wrong_config_names_the_key_and_the_problem(
    raw: dict[str, Any], key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert caught.value.key == key
    assert problem in caught.value.problem


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
