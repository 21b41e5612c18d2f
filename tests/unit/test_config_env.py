"""Environment overrides (SHIPPER_<SECTION>_<KEY>) and ${VAR} interpolation."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipper.config import (
    env_variables,
    interpolate,
    load_config,
    masked,
    secret_values,
)
from shipper.errors import ConfigError


def test_every_variable_names_one_key() -> None:
    table = env_variables()
    keys = [dotted for dotted, _ in table.values()]
    assert len(keys) == len(set(keys))
    assert table["SHIPPER_ELASTICSEARCH_HOSTS"][0] == "elasticsearch.hosts"
    assert table["SHIPPER_HOST_NAME"][0] == "host_name"
    assert table["SHIPPER_PROCESSING_SELECTION_MODE"][0] == "processing.selection.mode"
    # Rules and mappings are for the file only.
    assert not any(dotted.startswith("processing.drop") for dotted in keys)
    assert "processing.fields" not in keys


def test_overrides_are_parsed_by_the_field_type(tmp_path: Path) -> None:
    file = tmp_path / "c.yml"
    file.write_text("elasticsearch:\n  hosts: [http://file:9200]\n  username: shipper\n")
    config = load_config(
        file,
        environ={
            "SHIPPER_ELASTICSEARCH_HOSTS": "http://a:9200, http://b:9200,",
            "SHIPPER_ELASTICSEARCH_PASSWORD": "pw-from-env",
            "SHIPPER_ELASTICSEARCH_COMPRESSION": "false",
            "SHIPPER_ELASTICSEARCH_BATCH_MAX_DOCS": "500",
            "SHIPPER_ELASTICSEARCH_FLUSH_INTERVAL_S": "0.5",
            "SHIPPER_STORAGE_PATH": "/data/shipper",
            "SHIPPER_HOST_NAME": "node-7",
            "SHIPPER_METRICS_LISTEN": "",  # null: disabled
            "SHIPPER_PROCESSING_REDACTION_PRESETS": "authorization,url_password",
            "SHIPPER_CONFIG": "/ignored/here.yml",
            "SHIPPER_HEALTHCHECK_URL": "http://127.0.0.1:9108/healthz",
            "SHIPPER_TEST_ES_URL": "http://test-suite-setting",
            "OTHER": "x",
        },
    )
    assert config.elasticsearch.hosts == ["http://a:9200", "http://b:9200"]
    assert config.elasticsearch.username == "shipper"  # from the file, untouched
    assert config.elasticsearch.password == "pw-from-env"
    assert config.elasticsearch.compression is False
    assert config.elasticsearch.batch_max_docs == 500
    assert config.elasticsearch.flush_interval_s == 0.5
    assert config.storage.path == "/data/shipper"
    assert config.host_name == "node-7"
    assert config.metrics.listen is None
    assert config.processing.redaction.presets == ["authorization", "url_password"]


def test_command_line_flags_win_over_the_environment() -> None:
    config = load_config(
        None, {"storage.path": "/from/flag"}, environ={"SHIPPER_STORAGE_PATH": "/from/env"}
    )
    assert config.storage.path == "/from/flag"


def test_an_unknown_variable_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ={"SHIPPER_ELASTICSEARCH_HOST": "http://a:9200"})
    assert caught.value.key == "SHIPPER_ELASTICSEARCH_HOST"
    assert "unknown" in caught.value.problem


@pytest.mark.parametrize(
    ("variable", "value", "key"),
    [
        ("SHIPPER_STORAGE_MAX_BYTES", "lots", "storage.max_bytes"),
        ("SHIPPER_ELASTICSEARCH_VERIFY_CERTS", "maybe", "elasticsearch.verify_certs"),
        ("SHIPPER_ELASTICSEARCH_HOSTS", "es:9200", "elasticsearch.hosts"),
        ("SHIPPER_LOG_LEVEL", "loud", "log.level"),
    ],
)
def test_a_bad_value_names_the_key_and_the_variable(variable: str, value: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ={variable: value})
    assert caught.value.key == key
    assert variable in caught.value.problem


def test_a_bad_secret_value_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(
            None,
            environ={"SHIPPER_ELASTICSEARCH_PASSWORD": "hunter2-pw"},  # without username
        )
    assert "hunter2" not in str(caught.value)


def test_interpolation_forms() -> None:
    env = {"A": "alpha", "EMPTY": ""}
    data = {
        "plain": "${A}",
        "inside": "x-${A}-y",
        "default_unset": "${NOPE:-fallback}",
        "default_empty": "${EMPTY:-fallback}",
        "dash_empty": "${EMPTY-fallback}",
        "dash_unset": "${NOPE-fallback}",
        "dollar": "cost $$5 and $${A}",
        "list": ["${A}", 3, None],
        "regex": "^\\d+$",
    }
    assert interpolate(data, env) == {
        "plain": "alpha",
        "inside": "x-alpha-y",
        "default_unset": "fallback",
        "default_empty": "fallback",
        "dash_empty": "",
        "dash_unset": "fallback",
        "dollar": "cost $5 and ${A}",
        "list": ["alpha", 3, None],
        "regex": "^\\d+$",
    }


def test_interpolated_values_are_validated_by_the_field_type(tmp_path: Path) -> None:
    file = tmp_path / "c.yml"
    file.write_text("storage:\n  max_bytes: ${MAX}\n  path: ${DIR:-/var/lib/x}\n")
    config = load_config(file, environ={"MAX": "1000"})
    assert (config.storage.max_bytes, config.storage.path) == (1000, "/var/lib/x")


def test_a_missing_variable_names_the_key(tmp_path: Path) -> None:
    file = tmp_path / "c.yml"
    file.write_text("elasticsearch:\n  hosts: ['http://a:9200', '${SECOND_HOST}']\n")
    with pytest.raises(ConfigError) as caught:
        load_config(file, environ={})
    assert caught.value.key == "elasticsearch.hosts.1"
    assert "SECOND_HOST" in caught.value.problem


def test_an_unterminated_reference_is_an_error() -> None:
    with pytest.raises(ConfigError) as caught:
        interpolate({"log": {"level": "${LEVEL"}}, {})
    assert caught.value.key == "log.level"


def test_masked_and_secret_values() -> None:
    config = load_config(
        None,
        environ={
            "SHIPPER_ELASTICSEARCH_HOSTS": "https://u:url-secret-1@es:9200",
            "SHIPPER_ELASTICSEARCH_USERNAME": "shipper",
            "SHIPPER_ELASTICSEARCH_PASSWORD": "pw-secret-2",
        },
    )
    shown = masked(config)
    assert shown["elasticsearch"]["password"] == "***"
    assert shown["elasticsearch"]["hosts"] == ["https://u:***@es:9200"]
    assert shown["elasticsearch"]["username"] == "shipper"
    assert shown["elasticsearch"]["api_key"] is None
    assert "secret" not in repr(shown)
    assert set(secret_values(config)) == {"url-secret-1", "pw-secret-2"}


def test_the_deployments_environment_works() -> None:
    """docker-compose.yml sets SHIPPER_ELASTICSEARCH_PASSWORD, the Helm chart SHIPPER_HOST_NAME."""
    compose = Path(__file__).parents[2] / "deploy" / "compose" / "shipper.yml"
    config = load_config(
        compose,
        environ={
            "SHIPPER_CONFIG": str(compose),
            "SHIPPER_ELASTICSEARCH_PASSWORD": "from-dot-env",
            "SHIPPER_HOST_NAME": "k8s-node-3",
        },
    )
    assert config.elasticsearch.username == "shipper"
    assert config.elasticsearch.password == "from-dot-env"
    assert config.host_name == "k8s-node-3"
