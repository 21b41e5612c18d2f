"""docker-compose.yml: validated with docker-compose's own parser, converted to a Swarm stack
the Docker CLI accepts, and its shipper + demo services run against the Elasticsearch test
server (Elasticsearch and Kibana images cannot be pulled in CI, so an override file points
the shipper at the test server and takes the host's network to reach it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipper.config import DeadLetterConfig
from tests.deploy import support
from tests.deploy.conftest import REPO, free_port

COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
DATA_STREAM = "logs-docker-default"
CYCLES = 3  # of the demo app, each writing 7 lines

needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="apt-get install docker-compose"
)


def compose(
    *args: str, env_file: Path = ENV_EXAMPLE, files: tuple[Path, ...] = (COMPOSE_FILE,)
) -> subprocess.CompletedProcess[str]:
    command = ["docker-compose", "--project-directory", str(REPO), "--env-file", str(env_file)]
    for file in files:
        command += ["--file", str(file)]
    # Only the variables the files name: nothing from the caller's environment leaks in.
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300
    )


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    result = compose("config")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


@needs_compose
def test_the_compose_file_validates_with_the_example_env(resolved: dict[str, Any]) -> None:
    assert set(resolved["services"]) == {
        "elasticsearch", "setup", "kibana", "kibana-setup", "shipper", "demo",
    }  # fmt: skip
    assert set(resolved["volumes"]) == {"esdata", "shipper-data"}
    # The demo's stack traces are joined by the preset its label names.
    assert resolved["services"]["demo"]["labels"] == {
        "shipper.demo": "app",
        "shipper.multiline.preset": "java",
    }


@needs_compose
def test_elasticsearch_runs_with_security_and_kibana_waits_for_its_users(
    resolved: dict[str, Any],
) -> None:
    services = resolved["services"]
    es_env = services["elasticsearch"]["environment"]
    assert es_env["xpack.security.enabled"] == "true"
    assert es_env["ELASTIC_PASSWORD"] == "change-me-elastic"
    assert "healthcheck" in services["elasticsearch"]
    assert services["kibana"]["depends_on"] == {
        "setup": {"condition": "service_completed_successfully"}
    }
    assert services["kibana"]["environment"]["ELASTICSEARCH_USERNAME"] == "kibana_system"
    assert services["kibana-setup"]["depends_on"] == {"kibana": {"condition": "service_healthy"}}


def mount(volume: str | dict[str, Any]) -> tuple[str, tuple[str, bool]]:
    """(target, (source, read-only)) from compose v1's short or v2's long volume syntax."""
    if isinstance(volume, dict):
        return volume["target"], (volume["source"], bool(volume.get("read_only")))
    source, target, *mode = volume.split(":")
    return target, (source, mode == ["ro"])


@needs_compose
def test_the_shipper_service_reads_the_socket_read_only_and_keeps_its_buffer(
    resolved: dict[str, Any],
) -> None:
    shipper = resolved["services"]["shipper"]
    volumes = dict(mount(v) for v in shipper["volumes"])
    assert volumes["/var/run/docker.sock"] == ("/var/run/docker.sock", True)
    assert volumes["/var/lib/docker/containers"] == ("/var/lib/docker/containers", True)
    assert volumes["/var/lib/shipper"] == ("shipper-data", False)
    assert shipper["user"] == "10001:999"
    assert "/healthz" in " ".join(shipper["healthcheck"]["test"])
    assert shipper["restart"] == "unless-stopped"
    assert shipper["stop_grace_period"] == "30s"
    assert shipper["depends_on"] == {
        "elasticsearch": {"condition": "service_healthy"},
        "setup": {"condition": "service_completed_successfully"},
    }
    assert shipper["deploy"]["mode"] == "global"
    # The password comes from .env through the environment, never from the config file.
    assert shipper["environment"]["SHIPPER_ELASTICSEARCH_PASSWORD"] == "change-me-shipper"
    mounted = yaml.safe_load((REPO / "deploy/compose/shipper.yml").read_text())
    assert "password" not in mounted["elasticsearch"]


@needs_compose
def test_a_missing_password_stops_compose_with_a_message(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("DOCKER_GID=999\n")
    result = compose("config", env_file=env)
    assert result.returncode != 0
    assert "set ELASTIC_PASSWORD in .env" in result.stderr


@needs_compose
def test_the_stack_converts_to_a_swarm_stack_with_one_shipper_per_node(
    docker_available: None,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPPER_", "DEMO_"))}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    stack = subprocess.run(
        [str(REPO / "scripts/compose-swarm-stack")], capture_output=True, text=True, env=env
    )
    assert stack.returncode == 0, stack.stderr
    checked = subprocess.run(
        ["docker", "stack", "config", "--compose-file", "-"],
        input=stack.stdout,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
    services = yaml.safe_load(checked.stdout)["services"]
    assert services["shipper"]["deploy"]["mode"] == "global"
    assert services["shipper"]["depends_on"] == ["elasticsearch", "setup"]


def test_the_setup_scripts_parse() -> None:
    for script in ("setup.sh", "kibana-setup.sh"):
        subprocess.run(["bash", "-n", str(REPO / "deploy/compose" / script)], check=True)
    subprocess.run(["sh", "-n", str(REPO / "deploy/compose/demo.sh")], check=True)


def run_with_recording_curl(script: str, env: dict[str, str], tmp_path: Path) -> list[list[str]]:
    """Runs a setup script with a `curl` that succeeds and records its arguments: the
    Elasticsearch and Kibana images cannot be pulled here, so this checks what the script
    would send (paths, and that every body is valid JSON with the right content)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "curl.jsonl"
    curl = bin_dir / "curl"
    curl.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "with open(os.environ['CURL_LOG'], 'a') as log:\n"
        "    log.write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    curl.chmod(0o755)
    result = subprocess.run(
        ["bash", str(REPO / "deploy/compose" / script)],
        env={**env, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CURL_LOG": str(log)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in log.read_text().splitlines()]


def request(args: list[str]) -> tuple[str, str, Any]:
    """(method, URL, parsed JSON body) of one recorded curl call."""
    method = args[args.index("-X") + 1] if "-X" in args else "GET"
    url = next(arg for arg in args if arg.startswith("http"))
    body = json.loads(args[args.index("-d") + 1]) if "-d" in args else None
    return method, url, body


def test_setup_gives_the_shipper_a_role_for_every_stream_it_writes(tmp_path: Path) -> None:
    calls = run_with_recording_curl(
        "setup.sh",
        {
            "ES_URL": "http://es:9200",
            "ELASTIC_PASSWORD": "e",
            # Characters JSON must escape: the bodies stay valid and carry them unchanged.
            "KIBANA_PASSWORD": 'k"1\tx',
            "SHIPPER_ES_PASSWORD": "s\\2",
        },
        tmp_path,
    )
    requests = [request(call) for call in calls]
    assert [(method, url) for method, url, _ in requests] == [
        ("GET", "http://es:9200/_cluster/health?wait_for_status=yellow&timeout=5s"),
        ("POST", "http://es:9200/_security/user/kibana_system/_password"),
        ("PUT", "http://es:9200/_security/role/shipper_writer"),
        ("PUT", "http://es:9200/_security/user/shipper"),
    ]
    assert all(call[call.index("-u") + 1] == "elastic:e" for call in calls)
    assert requests[1][2] == {"password": 'k"1\tx'}
    role = requests[2][2]
    assert role == {
        "cluster": ["monitor", "manage_index_templates", "manage_ilm"],
        "indices": [{"names": ["logs-*-*"], "privileges": ["create_doc", "auto_configure"]}],
    }
    assert requests[3][2] == {
        "password": "s\\2",
        "roles": ["shipper_writer"],
        "full_name": "shipper log forwarder",
    }
    # The compose config's stream, the default dead-letter stream and a label-routed one
    # (shipper.dataset=web, shipper.namespace=prod) are all covered.
    compose_config = yaml.safe_load((REPO / "deploy/compose/shipper.yml").read_text())
    streams = [
        compose_config["elasticsearch"]["data_stream"],
        DeadLetterConfig().data_stream,
        "logs-web-prod",
    ]
    assert streams == ["logs-docker-default", "logs-shipper.deadletter-default", "logs-web-prod"]
    for stream in streams:
        assert any(fnmatchcase(stream, name) for name in role["indices"][0]["names"]), stream


def test_kibana_setup_makes_the_docker_logs_data_view_the_default(tmp_path: Path) -> None:
    env = {"KIBANA_URL": "http://kb:5601", "ELASTIC_PASSWORD": "e"}
    requests = [request(call) for call in run_with_recording_curl("kibana-setup.sh", env, tmp_path)]
    assert requests == [
        ("GET", "http://kb:5601/api/data_views", None),
        (
            "POST",
            "http://kb:5601/api/data_views/data_view",
            {
                "override": True,
                "data_view": {
                    "id": "docker-logs",
                    "name": "Docker logs",
                    "title": "logs-docker-*",
                    "timeFieldName": "@timestamp",
                },
            },
        ),
        (
            "POST",
            "http://kb:5601/api/data_views/default",
            {"data_view_id": "docker-logs", "force": True},
        ),
    ]


@pytest.fixture
def ci_stack(
    shipper_image: str, es_server: str, tmp_path: Path
) -> Iterator[tuple[Path, tuple[Path, ...], str, str]]:
    """The compose stack's shipper + demo, pointed at the test server by an override file."""
    port = free_port()
    config = tmp_path / "shipper.yml"
    base = yaml.safe_load((REPO / "deploy/compose/shipper.yml").read_text())
    base["elasticsearch"]["hosts"] = [es_server]
    base["elasticsearch"]["flush_interval_s"] = 0.2
    base["metrics"]["listen"] = f"127.0.0.1:{port}"
    config.write_text(yaml.safe_dump(base))
    config.chmod(0o644)
    labels = {"shipper.test": "deploy"}
    url = f"http://127.0.0.1:{port}/healthz"
    healthcheck = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=4)"
    override = tmp_path / "compose.ci.yml"
    override.write_text(
        yaml.safe_dump(
            {
                "services": {
                    "shipper": {
                        "image": shipper_image,
                        "network_mode": "host",
                        "volumes": [f"{config}:/etc/shipper/shipper.yml:ro"],
                        "healthcheck": {
                            "test": ["CMD", "python3", "-c", healthcheck],
                            "interval": "1s",
                        },
                        "labels": labels,
                    },
                    "demo": {"restart": "no", "labels": labels},
                },
                "networks": {"default": {"labels": labels}},
                "volumes": {"shipper-data": {"labels": labels}},
            }
        )
    )
    env = tmp_path / ".env"
    env.write_text(
        ENV_EXAMPLE.read_text()
        + f"\nDOCKER_GID={os.stat('/var/run/docker.sock').st_gid}\n"
        + f"DEMO_IMAGE=shipper-test-busybox:latest\nDEMO_CYCLES={CYCLES}\nDEMO_INTERVAL_S=0\n"
    )
    project = f"shipper-deploy-test-{uuid.uuid4().hex[:8]}"
    files = (COMPOSE_FILE, override)
    try:
        yield env, files, project, f"http://127.0.0.1:{port}"
    finally:
        down = compose("--project-name", project, "down", "--volumes", "--timeout", "30",
                       env_file=env, files=files)  # fmt: skip
        assert down.returncode == 0, down.stderr


def service_container(project: str, service: str) -> str:
    result = support.docker(
        "ps", "--all", "--quiet", "--no-trunc",
        "--filter", f"label=com.docker.compose.project={project}",
        "--filter", f"label=com.docker.compose.service={service}",
    )  # fmt: skip
    (container_id,) = result.stdout.split()
    return container_id


def demo_documents(cycle: int) -> list[dict[str, Any]]:
    """What deploy/compose/demo.sh's cycle must become: four documents, the trace joined by the
    demo service's shipper.multiline.preset=java label, the JSON line decoded."""
    trace = "\n".join(
        [
            f'Exception in thread "worker-{cycle}" java.lang.IllegalStateException: '
            f"order {cycle} is already paid",
            "\tat com.example.shop.Orders.pay(Orders.java:42)",
            "\tat com.example.shop.Checkout.run(Checkout.java:17)",
            "\tat java.base/java.lang.Thread.run(Thread.java:1583)",
        ]
    )
    return [
        {"stream": "stdout", "message": f"GET /orders/{cycle} 200 12ms user=demo cycle={cycle}"},
        {
            "stream": "stdout",
            "message": "order placed",
            "level": "info",
            "json": {"order_id": cycle, "amount_eur": cycle * 7 % 100 + 0.5, "cycle": cycle},
        },
        {"stream": "stderr", "message": f"WARN cache miss ratio high cycle={cycle}"},
        {"stream": "stderr", "message": trace, "flags": ["multiline"]},
    ]


def document_view(doc: dict[str, Any]) -> dict[str, Any]:
    """The parts of a stored document the demo's lines decide (the rest is metadata)."""
    log = doc.get("log", {})
    view: dict[str, Any] = {"stream": log.get("iostream"), "message": doc["message"]}
    for key in ("level", "flags"):
        if key in log:
            view[key] = log[key]
    if "json" in doc:
        view["json"] = doc["json"]
    return view


@needs_compose
@pytest.mark.docker
def test_the_stacks_shipper_ships_the_demo_apps_logs(
    ci_stack: tuple[Path, tuple[Path, ...], str, str], es_server: str
) -> None:
    env, files, project, metrics_url = ci_stack

    def up(service: str) -> None:
        result = compose("--project-name", project, "up", "--detach", "--no-deps", "--no-build",
                         service, env_file=env, files=files)  # fmt: skip
        assert result.returncode == 0, result.stderr

    up("shipper")
    shipper = service_container(project, "shipper")
    support.wait_healthy(shipper, timeout_s=60)
    support.wait_ready(metrics_url, timeout_s=30)
    assert support.inspect(shipper, "{{.HostConfig.RestartPolicy.Name}}") == "unless-stopped"

    up("demo")
    demo = service_container(project, "demo")
    assert support.docker("wait", demo).stdout.strip() == "0"
    # One cycle: a plain line, a JSON line, a warning and a 4-line stack trace, in this order.
    assert len(support.log_lines(demo)) == CYCLES * 7

    expected = sorted(
        (doc for cycle in range(1, CYCLES + 1) for doc in demo_documents(cycle)), key=repr
    )
    docs = support.wait_for_documents(
        es_server, DATA_STREAM, demo, count=len(expected), timeout_s=60
    )
    shipper_logs = support.docker("logs", "--tail", "20", shipper).stderr
    assert sorted(map(document_view, docs), key=repr) == expected, (
        f"the shipper said:\n{shipper_logs}\n{support.metrics(metrics_url)}"
    )

    stop = compose("--project-name", project, "stop", "shipper", env_file=env, files=files)
    assert stop.returncode == 0, stop.stderr
    assert support.inspect(shipper, "{{.State.ExitCode}}") == "0"
