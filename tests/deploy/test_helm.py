"""The Helm chart in helm/shipper: rendered and linted by Helm's own engine, validated against
the Kubernetes API schemas, and checked for what matters on a node. For each runtime
(docker, containerd, cri-o, auto) the DaemonSet's exact volumes, mounts, environment, security
contexts and tolerations and the shipper config it is given are asserted, so a mount or a
variable that goes missing fails; the state directory is a per-node hostPath, and no
secret's value ever lands in the ConfigMap.

Helm is helm-python-sdk (Helm v4's Go SDK bundled as a shared library, driven over ctypes);
the schemas are kubernetes-validate's bundled OpenAPI schemas (strict: unknown fields fail).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
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
    # runtime auto: containerd or CRI-O, whichever answers on the node.
    "default": {},
    "docker": {"runtime": "docker"},
    "containerd": {"runtime": "containerd"},
    "cri-o": {"runtime": "cri-o"},
    # k3s's containerd socket, and a kubelet with another podLogsDir.
    "custom-paths": {
        "runtime": "containerd",
        "cri": {
            "socketPath": "/run/k3s/containerd/containerd.sock",
            "logDirectory": "/srv/kubelet/pods",
        },
    },
    # The README's alternative on containerd: non-root, reading through the root group.
    "containerd-non-root": {
        "runtime": "containerd",
        "podSecurityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "supplementalGroups": [0],
        },
    },
    # A secured cluster: basic auth from an existing Secret, a private CA, node placement.
    "secured": {
        "runtime": "containerd",
        "image": {"repository": "registry.example.com/shipper", "tag": "0.1.0"},
        "elasticsearch": {
            "hosts": ["https://es-0.example.com:9200", "https://es-1.example.com:9200"],
            "dataStream": "logs-docker-prod",
            "username": "shipper",
            "existingSecret": "shipper-es-credentials",
            "passwordKey": "password",
            "tls": {"caSecret": "es-ca", "caKey": "ca.pem"},
        },
        "priorityClassName": "system-node-critical",
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "logging", "effect": "NoSchedule"}
        ],
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
    # Docker nodes, minimal footprint: no metrics Service, no json-file mount, a custom socket
    # (and group), state path and name.
    "minimal": {
        "runtime": "docker",
        "fullnameOverride": "node-logs",
        "serviceAccount": {"create": False, "name": "logging"},
        "docker": {
            "mountContainersDir": False,
            "socketPath": "/run/docker.sock",
            "socketGroupId": 998,
        },
        "state": {"hostPath": "/var/lib/node-logs", "initChown": False},
        "metrics": {"service": {"enabled": False}},
        "log": {"level": "debug", "format": "text"},
        "shutdownTimeoutSeconds": 20,
        "terminationGracePeriodSeconds": 45,
    },
}


# --- What each scenario's pod must take from its node, exactly -------------------------------


def host_path(name: str, path: str, kind: str) -> dict[str, Any]:
    return {"name": name, "hostPath": {"path": path, "type": kind}}


def read_only(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "mountPath": path, "readOnly": True}


def runtime_dir(name: str, path: str) -> dict[str, Any]:
    """A CRI socket's directory: read-only, following the runtime's mounts below it."""
    return {**read_only(name, path), "mountPropagation": "HostToContainer"}


@dataclass(frozen=True)
class NodeAccess:
    """The host paths a runtime needs, and the source config that goes with them."""

    volumes: list[dict[str, Any]]
    mounts: list[dict[str, Any]]
    source: dict[str, Any]


# runtime auto: both runtimes' socket directories, created empty where a node lacks one.
AUTO = NodeAccess(
    volumes=[
        host_path("pod-logs", "/var/log/pods", "Directory"),
        host_path("containerd-run", "/run/containerd", "DirectoryOrCreate"),
        host_path("crio-run", "/var/run/crio", "DirectoryOrCreate"),
    ],
    mounts=[
        read_only("pod-logs", "/var/log/pods"),
        runtime_dir("containerd-run", "/run/containerd"),
        runtime_dir("crio-run", "/var/run/crio"),
    ],
    source={"source": "cri", "cri": {"socket": "auto", "log_directory": "/var/log/pods"}},
)
CONTAINERD = NodeAccess(
    volumes=[
        host_path("pod-logs", "/var/log/pods", "Directory"),
        host_path("containerd-run", "/run/containerd", "Directory"),
    ],
    mounts=[
        read_only("pod-logs", "/var/log/pods"),
        runtime_dir("containerd-run", "/run/containerd"),
    ],
    source={
        "source": "cri",
        "cri": {"socket": "/run/containerd/containerd.sock", "log_directory": "/var/log/pods"},
    },
)
CRI_O = NodeAccess(
    volumes=[
        host_path("pod-logs", "/var/log/pods", "Directory"),
        host_path("crio-run", "/var/run/crio", "Directory"),
    ],
    mounts=[read_only("pod-logs", "/var/log/pods"), runtime_dir("crio-run", "/var/run/crio")],
    source={
        "source": "cri",
        "cri": {"socket": "/var/run/crio/crio.sock", "log_directory": "/var/log/pods"},
    },
)
K3S_PATHS = NodeAccess(
    volumes=[
        host_path("pod-logs", "/srv/kubelet/pods", "Directory"),
        host_path("containerd-run", "/run/k3s/containerd", "Directory"),
    ],
    mounts=[
        read_only("pod-logs", "/srv/kubelet/pods"),
        runtime_dir("containerd-run", "/run/k3s/containerd"),
    ],
    source={
        "source": "cri",
        "cri": {
            "socket": "/run/k3s/containerd/containerd.sock",
            "log_directory": "/srv/kubelet/pods",
        },
    },
)
DOCKER = NodeAccess(
    volumes=[
        host_path("docker-socket", "/var/run/docker.sock", "Socket"),
        host_path("docker-containers", "/var/lib/docker/containers", "Directory"),
    ],
    mounts=[
        read_only("docker-socket", "/var/run/docker.sock"),
        read_only("docker-containers", "/var/lib/docker/containers"),
    ],
    source={"source": "docker", "docker": {"host": "unix:///var/run/docker.sock"}},
)
DOCKER_MINIMAL = NodeAccess(
    volumes=[host_path("docker-socket", "/run/docker.sock", "Socket")],
    mounts=[read_only("docker-socket", "/var/run/docker.sock")],
    source=DOCKER.source,
)

SECCOMP = {"seccompProfile": {"type": "RuntimeDefault"}}
# CRI runtimes: uid 0, which owns the log files and the socket, with no capability at all.
ROOT = {"runAsNonRoot": False, "runAsUser": 0, "runAsGroup": 0, **SECCOMP}


def docker_user(socket_group: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "supplementalGroups": [socket_group],
        **SECCOMP,
    }


CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
EVERY_TAINT = [{"operator": "Exists"}]
# The node's name (kubernetes.node.name, host.name) and the pod's uid (to skip its own logs).
ENV = [
    {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    {"name": "SHIPPER_HOST_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
]


@dataclass(frozen=True)
class Expected:
    node: NodeAccess
    pod_security: dict[str, Any]
    fullname: str = f"{RELEASE}-shipper"
    state_path: str = "/var/lib/shipper"
    # (volume, mount) pairs besides the node's: mounted Secrets.
    secrets: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    tolerations: list[dict[str, Any]] = field(default_factory=lambda: EVERY_TAINT)
    init_chown: bool = True


def secret_volume(name: str, secret: str, key: str, mode: int | None = 0o440) -> dict[str, Any]:
    volume: dict[str, Any] = {"secretName": secret, "items": [{"key": key, "path": key}]}
    if mode is not None:
        volume["defaultMode"] = mode
    return {"name": name, "secret": volume}


EXPECTED: dict[str, Expected] = {
    "default": Expected(AUTO, ROOT),
    "docker": Expected(DOCKER, docker_user(999)),
    "containerd": Expected(CONTAINERD, ROOT),
    "cri-o": Expected(CRI_O, ROOT),
    "custom-paths": Expected(K3S_PATHS, ROOT),
    "containerd-non-root": Expected(
        CONTAINERD,
        {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "supplementalGroups": [0],
            **SECCOMP,
        },
    ),
    "secured": Expected(
        CONTAINERD,
        ROOT,
        secrets=[
            (
                secret_volume("elasticsearch-credentials", "shipper-es-credentials", "password"),
                read_only("elasticsearch-credentials", "/etc/shipper/secrets"),
            ),
            (
                secret_volume("elasticsearch-ca", "es-ca", "ca.pem", mode=None),
                read_only("elasticsearch-ca", "/etc/shipper/tls"),
            ),
        ],
        tolerations=[
            {"key": "dedicated", "operator": "Equal", "value": "logging", "effect": "NoSchedule"}
        ],
    ),
    "api-key-and-monitoring": Expected(
        AUTO,
        ROOT,
        secrets=[
            (
                secret_volume("elasticsearch-credentials", "shipper-es", "api-key"),
                read_only("elasticsearch-credentials", "/etc/shipper/secrets"),
            )
        ],
    ),
    "minimal": Expected(
        DOCKER_MINIMAL,
        docker_user(998),
        fullname="node-logs",
        state_path="/var/lib/node-logs",
        init_chown=False,
    ),
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
        "api-key-and-monitoring": [
            "ConfigMap",
            "DaemonSet",
            "PodMonitor",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ],
        "minimal": ["ConfigMap", "DaemonSet"],
    }.get(name, ["ConfigMap", "DaemonSet", "Service", "ServiceAccount"])
    assert kinds == expected
    for doc in docs:
        assert doc["metadata"]["namespace"] == NAMESPACE
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_expectations_cover_every_scenario() -> None:
    assert set(EXPECTED) == set(SCENARIOS)


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    named = {item["name"]: item for item in items}
    assert len(named) == len(items), f"duplicate names in {items}"
    return named


def test_the_pod_takes_exactly_what_its_runtime_needs_from_the_node(
    scenario: tuple[str, list[dict[str, Any]]],
) -> None:
    """Every volume and mount, compared whole: one missing, added or changed fails."""
    name, docs = scenario
    expected = EXPECTED[name]
    secret_volumes = [volume for volume, _ in expected.secrets]
    secret_mounts = [mount for _, mount in expected.secrets]
    assert by_name(pod_spec(docs)["volumes"]) == by_name(
        [
            {"name": "config", "configMap": {"name": expected.fullname}},
            *expected.node.volumes,
            host_path("state", expected.state_path, "DirectoryOrCreate"),
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
            *secret_volumes,
        ]
    )
    assert by_name(shipper_container(docs)["volumeMounts"]) == by_name(
        [
            {
                "name": "config",
                "mountPath": "/etc/shipper/shipper.yml",
                "subPath": "shipper.yml",
                "readOnly": True,
            },
            *expected.node.mounts,
            {"name": "state", "mountPath": "/var/lib/shipper"},
            {"name": "tmp", "mountPath": "/tmp"},
            *secret_mounts,
        ]
    )


def test_the_shipper_is_told_which_source_to_read(
    scenario: tuple[str, list[dict[str, Any]]],
) -> None:
    name, docs = scenario
    config = shipper_config(docs)
    told = {key: config[key] for key in ("source", "cri", "docker") if key in config}
    assert told == EXPECTED[name].node.source


def test_the_default_config_is_exactly_this() -> None:
    """The whole file the default install gives the shipper (runtime auto)."""
    assert shipper_config(manifests({})) == {
        "output": "elasticsearch",
        "shutdown_timeout_s": 10,
        "source": "cri",
        "cri": {"socket": "auto", "log_directory": "/var/log/pods"},
        "elasticsearch": {
            "hosts": ["http://elasticsearch:9200"],
            "data_stream": "logs-docker-default",
            "verify_certs": True,
        },
        "storage": {"path": "/var/lib/shipper"},
        "metrics": {"listen": "0.0.0.0:9108"},
        "log": {"level": "info", "format": "json"},
    }


def test_the_environment_is_exactly_the_node_and_pod_identity(
    scenario: tuple[str, list[dict[str, Any]]],
) -> None:
    # NODE_NAME and POD_UID are not SHIPPER_* names: those are config keys, and an unknown
    # one fails the start.
    _, docs = scenario
    assert shipper_container(docs)["env"] == ENV


def test_security_contexts_follow_the_runtime(
    scenario: tuple[str, list[dict[str, Any]]],
) -> None:
    name, docs = scenario
    expected = EXPECTED[name]
    spec = pod_spec(docs)
    assert spec["securityContext"] == expected.pod_security
    assert shipper_container(docs)["securityContext"] == CONTAINER_SECURITY
    init = by_name(spec.get("initContainers", []))
    if not expected.init_chown:
        assert init == {}
        return
    owner = f"{expected.pod_security['runAsUser']}:{expected.pod_security['runAsGroup']}"
    assert init["prepare-state"]["command"] == [
        "/bin/sh",
        "-c",
        f"chown -R {owner} /var/lib/shipper && chmod 0750 /var/lib/shipper",
    ]
    assert init["prepare-state"]["securityContext"]["capabilities"] == {
        "drop": ["ALL"],
        "add": ["CHOWN", "FOWNER"],
    }
    assert init["prepare-state"]["volumeMounts"] == [
        {"name": "state", "mountPath": "/var/lib/shipper"}
    ]


def test_tolerations_default_to_every_taint(
    scenario: tuple[str, list[dict[str, Any]]],
) -> None:
    name, docs = scenario
    assert pod_spec(docs)["tolerations"] == EXPECTED[name].tolerations


def test_nothing_from_the_node_is_writable_but_the_state_directory(
    scenario: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = scenario
    host_paths = {name for name, volume in volumes(docs).items() if "hostPath" in volume}
    writable = {m["name"] for m in shipper_container(docs)["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"state", "tmp"}
    assert host_paths & writable == {"state"}
    assert shipper_config(docs)["storage"]["path"] == "/var/lib/shipper"


def test_the_shipper_probes_its_health_endpoints(
    scenario: tuple[str, list[dict[str, Any]]],
) -> None:
    name, docs = scenario
    spec = pod_spec(docs)
    container = shipper_container(docs)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    port = SCENARIOS[name].get("metrics", {}).get("port", 9108)
    assert container["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    assert shipper_config(docs)["metrics"]["listen"] == f"0.0.0.0:{port}"
    # Draining must fit in the grace period, or SIGKILL cuts it short.
    assert shipper_config(docs)["shutdown_timeout_s"] < spec["terminationGracePeriodSeconds"]


def test_security_values_merge_over_the_runtime_defaults() -> None:
    """The README's json-file case on Docker nodes: uid 0 keeps the socket's group, the
    state directory follows the user (0 is a user, not "unset"), and a capability given is
    added to the dropped ones, not in their place."""
    docs = manifests(
        {
            "runtime": "docker",
            "podSecurityContext": {"runAsNonRoot": False, "runAsUser": 0, "runAsGroup": 0},
            "securityContext": {"capabilities": {"add": ["DAC_READ_SEARCH"]}},
        }
    )
    spec = pod_spec(docs)
    assert spec["securityContext"] == {
        "runAsNonRoot": False,
        "runAsUser": 0,
        "runAsGroup": 0,
        "fsGroup": 10001,
        "supplementalGroups": [999],
        **SECCOMP,
    }
    assert shipper_container(docs)["securityContext"]["capabilities"] == {
        "drop": ["ALL"],
        "add": ["DAC_READ_SEARCH"],
    }
    (init,) = spec["initContainers"]
    assert init["command"][-1].startswith("chown -R 0:0 /var/lib/shipper ")


@pytest.mark.parametrize("runtime", ["auto", "docker"])
def test_a_cri_socket_path_needs_a_named_cri_runtime(runtime: str) -> None:
    values = {"runtime": runtime, "cri": {"socketPath": "/run/k3s/containerd/containerd.sock"}}
    with pytest.raises(helm.HelmRenderError, match=r"cri\.socketPath .*set runtime to"):
        render(values)


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


def test_placement_values_reach_the_pod() -> None:
    spec = pod_spec(manifests(SCENARIOS["secured"]))
    assert spec["priorityClassName"] == "system-node-critical"
    assert spec["tolerations"] == SCENARIOS["secured"]["tolerations"]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux", "logging": "enabled"}
    assert spec["containers"][0]["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert spec["containers"][0]["image"] == "registry.example.com/shipper:0.1.0"


def test_the_rendered_config_is_one_the_shipper_accepts(
    scenario: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = scenario
    config = shipper_config(docs)
    # Keys the chart sets that this shipper does not know yet (the CRI source's `source` and
    # `cri` come with issue 19's source): a skip, which CI's SHIPPER_TEST_NO_SKIPS turns into
    # a failure, so the chart cannot ship config its shipper rejects.
    missing = [key for key in config if key not in Config.model_fields]
    missing += [
        f"elasticsearch.{key}"
        for key in config["elasticsearch"]
        if key not in ElasticsearchConfig.model_fields
    ]
    if missing:
        pytest.skip(f"shipper.config has no {missing} yet")
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
    ("values", "says"),
    [
        ({}, "/run/containerd/containerd.sock, else /var/run/crio/crio.sock"),
        ({"runtime": "containerd"}, "containerd CRI socket /run/containerd/containerd.sock"),
        ({"runtime": "cri-o"}, "cri-o CRI socket /var/run/crio/crio.sock"),
        ({"runtime": "docker"}, "docker.socketGroupId (now 999)"),
    ],
)
def test_notes_name_what_the_pods_read(values: dict[str, Any], says: str) -> None:
    assert says in render(values)["shipper/templates/NOTES.txt"]


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
        # The runtimes the chart knows, spelled as it spells them.
        ({"runtime": "crio"}, "runtime"),
        ({"runtime": "podman"}, "runtime"),
        ({"runtime": ""}, "runtime"),
        # A socket below a directory (the directory is what is mounted), absolute.
        ({"cri": {"socketPath": "/containerd.sock"}}, "socketPath"),
        ({"cri": {"socketPath": "run/containerd/containerd.sock"}}, "socketPath"),
        ({"cri": {"socketPath": "/run/containerd/"}}, "socketPath"),
        ({"cri": {"logDirectory": ""}}, "logDirectory"),
        ({"cri": {"logDirectory": "var/log/pods"}}, "logDirectory"),
        # Shipper behaviour goes through config.cri, not the chart's cri values.
        ({"cri": {"annotations": ["example.com/*"]}}, "annotations"),
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
