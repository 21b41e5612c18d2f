"""The Helm chart in helm/shipper: rendered and linted by Helm's own engine, validated against
the Kubernetes API schemas, and checked for what matters on a node: the Docker socket is
mounted read-only, the state directory is a per-node hostPath, and no secret's value ever
lands in the ConfigMap.

Helm is helm-python-sdk (Helm v4's Go SDK bundled as a shared library, driven over ctypes);
the schemas are kubernetes-validate's bundled OpenAPI schemas (strict: unknown fields fail).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Installed by the `deploy-test` extra (scripts/bootstrap): never skipped silently.
import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from shipper.config import Config, ElasticsearchConfig, is_secret_key, parse_config

CHART = Path(__file__).resolve().parents[2] / "helm" / "shipper"
RELEASE = "logs"
NAMESPACE = "logging"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schema set.
KUBE_VERSIONS = ["1.25.0", kubernetes_validate.latest_version()]
# Kinds whose schemas come from a CRD (prometheus-operator), not the Kubernetes API.
CRD_KINDS = {"ServiceMonitor", "PodMonitor"}

SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    # A secured cluster: basic auth from an existing Secret, a private CA, node placement.
    "secured": {
        "image": {"repository": "registry.example.com/shipper", "tag": "0.1.0"},
        "elasticsearch": {
            "hosts": ["https://es-0.example.com:9200", "https://es-1.example.com:9200"],
            "dataStream": "logs-docker-prod",
            "username": "shipper",
            "existingSecret": "shipper-es-credentials",
            "passwordKey": "password",
            "tls": {"caSecret": "es-ca", "caKey": "ca.pem"},
        },
        "docker": {"socketGroupId": 998},
        "priorityClassName": "system-node-critical",
        "tolerations": [{"operator": "Exists"}],
        "nodeSelector": {"kubernetes.io/os": "linux", "logging": "enabled"},
        "resources": {
            "requests": {"cpu": "200m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
        "config": {"storage": {"max_bytes": 2147483648}, "elasticsearch": {"batch_max_docs": 5000}},
    },
    # Elastic Cloud style: an API key instead of a password, prometheus-operator scraping.
    "api-key-and-monitoring": {
        "elasticsearch": {
            "hosts": ["https://cloud.example.com:443"],
            "existingSecret": "shipper-es",
            "passwordKey": "",
            "apiKeyKey": "api-key",
        },
        "metrics": {
            "port": 9200,
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}},
            "podMonitor": {"enabled": True, "interval": "15s"},
        },
        "podAnnotations": {"example.com/team": "platform"},
    },
    # Minimal footprint: no metrics Service, no json-file mount, a custom state path and name.
    "minimal": {
        "fullnameOverride": "node-logs",
        "serviceAccount": {"create": False, "name": "logging"},
        "docker": {"mountContainersDir": False, "socketPath": "/run/docker.sock"},
        "state": {"hostPath": "/var/lib/node-logs", "initChown": False},
        "metrics": {"service": {"enabled": False}},
        "log": {"level": "debug", "format": "text"},
        "shutdownTimeoutSeconds": 20,
        "terminationGracePeriodSeconds": 45,
    },
}


def render(values: dict[str, Any]) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def manifests(values: dict[str, Any]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path, text in sorted(render(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def shipper_config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["shipper.yml"])
    assert isinstance(config, dict)
    return config


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "DaemonSet")["spec"]["template"]["spec"]
    return spec


def shipper_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = [c for c in pod_spec(docs)["containers"] if c["name"] == "shipper"]
    return container


def mounts_by_volume(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in shipper_container(docs)["volumeMounts"]}


def volumes(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in pod_spec(docs)["volumes"]}


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair anywhere in a nested structure."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key), value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


# A key naming an inline secret: what shipper.config treats as secret (password, api_key,
# token, secret in the name), except the *_file keys that only name a mounted file.
SECRET_KEY = re.compile(r"(?i)(password|api_?key|token|secret)$")
URL_WITH_PASSWORD = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/@\s]*:[^/@\s]*@")


def strings(node: Any) -> Iterator[str]:
    """Every string value anywhere in a nested structure, list items included."""
    if isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, str):
        yield node


def inline_secrets(node: Any) -> list[str]:
    """Keys holding an inline secret, and strings that are URLs with user:password@."""
    keys = [key for key, _ in walk(node) if SECRET_KEY.search(key)]
    return keys + [text for text in strings(node) if URL_WITH_PASSWORD.match(text)]


def config_secret_keys(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """Every inline-secret key of the shipper's config models, as dotted paths."""
    keys: list[str] = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += config_secret_keys(annotation, f"{prefix}{name}.")
        elif not name.endswith("_file") and is_secret_key(name):
            keys.append(prefix + name)
    return keys


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    name: str = request.param
    return name, manifests(SCENARIOS[name])


def test_chart_lints_clean_in_strict_mode() -> None:
    for values in SCENARIOS.values():
        report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert report["errors"] == [] and problems == [], report


def test_every_manifest_matches_the_kubernetes_schemas(
    scenario: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = scenario
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def test_scenarios_render_the_expected_objects(
    scenario: tuple[str, list[dict[str, Any]]],
) -> None:
    name, docs = scenario
    kinds = sorted(doc["kind"] for doc in docs)
    expected = {
        "default": ["ConfigMap", "DaemonSet", "Service", "ServiceAccount"],
        "secured": ["ConfigMap", "DaemonSet", "Service", "ServiceAccount"],
        "api-key-and-monitoring": [
            "ConfigMap",
            "DaemonSet",
            "PodMonitor",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ],
        "minimal": ["ConfigMap", "DaemonSet"],
    }[name]
    assert kinds == expected
    for doc in docs:
        assert doc["metadata"]["namespace"] == NAMESPACE
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_the_daemonset_mounts_the_docker_socket_read_only(
    scenario: tuple[str, list[dict[str, Any]]],
) -> None:
    name, docs = scenario
    socket_path = SCENARIOS[name].get("docker", {}).get("socketPath", "/var/run/docker.sock")
    assert volumes(docs)["docker-socket"]["hostPath"] == {"path": socket_path, "type": "Socket"}
    mount = mounts_by_volume(docs)["docker-socket"]
    assert mount["readOnly"] is True
    assert mount["mountPath"] == "/var/run/docker.sock"
    assert shipper_config(docs)["docker"]["host"] == "unix:///var/run/docker.sock"
    # Nothing else from the node is writable except the state directory.
    writable = {m["name"] for m in shipper_container(docs)["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"state", "tmp"}


def test_the_json_file_directory_is_mounted_read_only_when_enabled(
    scenario: tuple[str, list[dict[str, Any]]],
) -> None:
    name, docs = scenario
    enabled = SCENARIOS[name].get("docker", {}).get("mountContainersDir", True)
    if not enabled:
        assert "docker-containers" not in volumes(docs)
        return
    assert volumes(docs)["docker-containers"]["hostPath"]["path"] == "/var/lib/docker/containers"
    mount = mounts_by_volume(docs)["docker-containers"]
    assert (mount["mountPath"], mount["readOnly"]) == ("/var/lib/docker/containers", True)


def test_the_state_directory_is_a_per_node_host_path(
    scenario: tuple[str, list[dict[str, Any]]],
) -> None:
    name, docs = scenario
    host_path = SCENARIOS[name].get("state", {}).get("hostPath", "/var/lib/shipper")
    assert volumes(docs)["state"]["hostPath"] == {"path": host_path, "type": "DirectoryOrCreate"}
    assert mounts_by_volume(docs)["state"]["mountPath"] == "/var/lib/shipper"
    assert shipper_config(docs)["storage"]["path"] == "/var/lib/shipper"
    init = {c["name"]: c for c in pod_spec(docs).get("initContainers", [])}
    if SCENARIOS[name].get("state", {}).get("initChown", True):
        assert init["prepare-state"]["volumeMounts"] == [
            {"name": "state", "mountPath": "/var/lib/shipper"}
        ]
    else:
        assert init == {}


def test_the_shipper_runs_unprivileged_and_probes_its_health_endpoints(
    scenario: tuple[str, list[dict[str, Any]]],
) -> None:
    name, docs = scenario
    spec = pod_spec(docs)
    container = shipper_container(docs)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    group = SCENARIOS[name].get("docker", {}).get("socketGroupId", 999)
    assert spec["securityContext"]["supplementalGroups"] == [group]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    port = SCENARIOS[name].get("metrics", {}).get("port", 9108)
    assert container["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    assert shipper_config(docs)["metrics"]["listen"] == f"0.0.0.0:{port}"
    # Draining must fit in the grace period, or SIGKILL cuts it short.
    assert shipper_config(docs)["shutdown_timeout_s"] < spec["terminationGracePeriodSeconds"]


def test_no_scenario_puts_a_secret_in_the_config_map_or_a_literal_env_value(
    scenario: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = scenario
    config = shipper_config(docs)
    assert inline_secrets(config) == []
    for key, value in walk(config):
        if key.endswith("_file") and SECRET_KEY.search(key.removesuffix("_file")):
            assert str(value).startswith("/etc/shipper/secrets/"), (key, value)
    # The whole ConfigMap, not only the parsed config, and every env var of every container.
    assert inline_secrets(one(docs, "ConfigMap")) == []
    pod = pod_spec(docs)
    for container in pod["containers"] + pod.get("initContainers", []):
        for env in container.get("env", []):
            if SECRET_KEY.search(env["name"]):
                assert "value" not in env, env
    assert [doc for doc in docs if doc["kind"] == "Secret"] == []


def test_the_pod_knows_its_uid_to_skip_its_own_logs(
    scenario: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = scenario
    env = {e["name"]: e for e in shipper_container(docs)["env"]}
    assert env["POD_UID"] == {
        "name": "POD_UID",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}},
    }
    # Not a SHIPPER_* name: those are config keys, and an unknown one fails the start.
    assert [name for name in env if name.startswith("SHIPPER_")] == ["SHIPPER_HOST_NAME"]


def test_placement_values_reach_the_pod() -> None:
    spec = pod_spec(manifests(SCENARIOS["secured"]))
    assert spec["priorityClassName"] == "system-node-critical"
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux", "logging": "enabled"}
    assert spec["containers"][0]["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert spec["containers"][0]["image"] == "registry.example.com/shipper:0.1.0"


def test_the_rendered_config_is_one_the_shipper_accepts(
    scenario: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = scenario
    config = shipper_config(docs)
    uses_secret_files = {"password_file", "api_key_file"} & set(config["elasticsearch"])
    missing = uses_secret_files - set(ElasticsearchConfig.model_fields)
    if missing:
        pytest.skip(f"shipper.config has no elasticsearch.{sorted(missing)} yet")
    parse_config(config)


def test_credentials_come_from_the_existing_secret_and_never_from_the_config_map() -> None:
    docs = manifests(SCENARIOS["secured"])
    config = shipper_config(docs)
    assert inline_secrets(config) == []
    assert config["elasticsearch"]["username"] == "shipper"
    assert config["elasticsearch"]["password_file"] == "/etc/shipper/secrets/password"
    assert config["elasticsearch"]["ca_certs"] == "/etc/shipper/tls/ca.pem"
    assert volumes(docs)["elasticsearch-credentials"]["secret"]["secretName"] == (
        "shipper-es-credentials"
    )
    assert volumes(docs)["elasticsearch-credentials"]["secret"]["items"] == [
        {"key": "password", "path": "password"}
    ]
    mount = mounts_by_volume(docs)["elasticsearch-credentials"]
    assert (mount["mountPath"], mount["readOnly"]) == ("/etc/shipper/secrets", True)
    # The chart creates no Secret of its own, so it never holds a credential's value.
    assert [doc for doc in docs if doc["kind"] == "Secret"] == []


def test_an_api_key_is_read_from_the_secret_file() -> None:
    docs = manifests(SCENARIOS["api-key-and-monitoring"])
    elasticsearch = shipper_config(docs)["elasticsearch"]
    assert elasticsearch["api_key_file"] == "/etc/shipper/secrets/api-key"
    assert "password_file" not in elasticsearch and "api_key" not in elasticsearch
    assert volumes(docs)["elasticsearch-credentials"]["secret"]["items"] == [
        {"key": "api-key", "path": "api-key"}
    ]


def test_monitors_scrape_the_metrics_port() -> None:
    docs = manifests(SCENARIOS["api-key-and-monitoring"])
    service_monitor = one(docs, "ServiceMonitor")
    assert service_monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert service_monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert (
        service_monitor["spec"]["selector"]["matchLabels"]
        == one(docs, "Service")["spec"]["selector"]
    )
    pod_monitor = one(docs, "PodMonitor")
    assert pod_monitor["spec"]["podMetricsEndpoints"][0] == {
        "port": "metrics",
        "path": "/metrics",
        "interval": "15s",
        "scrapeTimeout": "10s",
        "relabelings": [
            {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}
        ],
    }
    assert one(docs, "Service")["spec"]["ports"][0]["port"] == 9200


def test_config_changes_roll_the_pods() -> None:
    def checksum(values: dict[str, Any]) -> str:
        template = one(manifests(values), "DaemonSet")["spec"]["template"]
        return str(template["metadata"]["annotations"]["checksum/config"])

    assert checksum({}) != checksum({"elasticsearch": {"dataStream": "logs-docker-other"}})


def test_notes_tell_how_to_check_the_rollout() -> None:
    notes = render({})["shipper/templates/NOTES.txt"]
    assert f"kubectl -n {NAMESPACE} rollout status daemonset/{RELEASE}-shipper" in notes


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"config": {"elasticsearch": {"password": "hunter2"}}}, "/config/elasticsearch/password"),
        ({"config": {"kibana": {"api_key": "abc"}}}, "/config/kibana/api_key"),
        # Secret-named keys at any depth, and URLs carrying user:password@.
        (
            {"config": {"processing": {"redaction": {"rules": [{"id": "a", "secret": "x"}]}}}},
            "/config/processing/redaction/rules/0/secret",
        ),
        ({"config": {"kibana": {"url": "https://u:pw@kb:5601"}}}, "/config/kibana/url"),
        ({"elasticsearch": {"hosts": ["https://u:pw@es:9200"]}}, "/elasticsearch/hosts/0"),
        ({"extraEnv": [{"name": "SHIPPER_ELASTICSEARCH_PASSWORD", "value": "x"}]}, "extraEnv"),
        ({"elasticsearch": {"hosts": ["es:9200"]}}, "hosts"),
        ({"elasticsearch": {"dataStream": "Logs"}}, "dataStream"),
        ({"docker": {"socketGroupId": "docker"}}, "socketGroupId"),
        ({"replicas": 2}, "replicas"),
    ],
)
def test_the_values_schema_rejects_secrets_and_mistakes(
    values: dict[str, Any], complaint: str
) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError, match=complaint):
        chart.validate_schema(values)


def test_the_values_schema_rejects_every_inline_secret_the_shipper_config_has() -> None:
    keys = config_secret_keys()
    # Derived from shipper.config, so a new secret key is covered (or this list fails).
    assert keys == [
        "elasticsearch.password",
        "elasticsearch.api_key",
        "elasticsearch.bearer_token",
        "elasticsearch.client_key_password",
        "kibana.password",
        "kibana.api_key",
    ]
    with helm.Chart.load(CHART) as chart:
        for dotted in keys:
            section, key = dotted.split(".")
            where = f"/config/{section}/{key}"
            with pytest.raises(helm.HelmValuesError, match=where):
                chart.validate_schema({"config": {section: {key: "inline"}}})
            # The file variant only names a mounted file: allowed.
            chart.validate_schema({"config": {section: {f"{key}_file": "/etc/shipper/x"}}})


def test_a_password_from_a_secret_env_var_is_allowed() -> None:
    env = {
        "name": "EXTRA_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}},
    }
    spec = pod_spec(manifests({"extraEnv": [env]}))
    assert env in spec["containers"][0]["env"]


def test_values_schema_is_valid_json_schema() -> None:
    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(defaults)
