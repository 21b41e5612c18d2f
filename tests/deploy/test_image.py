"""The shipper image, run as a container next to the Docker daemon it reads.

The container gets the socket read-only and the host's network (to reach the Elasticsearch
test server on 127.0.0.1); sibling containers write known lines; every line must arrive
exactly once, the container must report healthy, and `docker stop` must drain it to exit 0
well inside the stop timeout.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.deploy import support
from tests.deploy.conftest import free_port

pytestmark = pytest.mark.docker

BUSYBOX = "shipper-test-busybox:latest"
DATA_STREAM = "logs-docker-default"
STOP_TIMEOUT_S = 30
SOCKET = "/var/run/docker.sock"


def run_sibling(containers: list[str], script: str) -> str:
    container_id = support.docker(
        "run", "--detach", "--label", support.LABEL, BUSYBOX, "sh", "-c", script
    ).stdout.strip()
    containers.append(container_id)
    return container_id


def start_shipper(
    image: str, es_url: str, tmp_path: Path, containers: list[str]
) -> tuple[str, int]:
    port = free_port()
    config = tmp_path / "shipper.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "elasticsearch": {
                    "hosts": [es_url],
                    "data_stream": DATA_STREAM,
                    "flush_interval_s": 0.2,
                },
                "storage": {"path": "/var/lib/shipper"},
                "metrics": {"listen": f"127.0.0.1:{port}"},
                "shutdown_timeout_s": 10,
            }
        )
    )
    config.chmod(0o644)
    container_id = support.docker(
        "run", "--detach",
        "--name", f"shipper-deploy-test-{os.getpid()}-{port}",
        "--label", support.LABEL,
        "--network", "host",
        # The image runs as uid 10001; the socket's group lets it read the socket.
        "--group-add", str(os.stat(SOCKET).st_gid),
        "--volume", f"{SOCKET}:/var/run/docker.sock:ro",
        "--volume", "/var/lib/docker/containers:/var/lib/docker/containers:ro",
        "--volume", f"{config}:/etc/shipper/shipper.yml:ro",
        "--env", f"SHIPPER_HEALTHCHECK_URL=http://127.0.0.1:{port}/healthz",
        "--health-interval", "1s",
        "--stop-timeout", str(STOP_TIMEOUT_S),
        image,
    ).stdout.strip()  # fmt: skip
    containers.append(container_id)
    return container_id, port


def test_the_image_runs_unprivileged_with_a_state_volume(shipper_image: str) -> None:
    config = support.docker("image", "inspect", "--format", "{{json .Config}}", shipper_image)
    image = yaml.safe_load(config.stdout)
    assert image["User"] == "10001:10001"
    assert list(image["Volumes"]) == ["/var/lib/shipper"]
    assert image["StopSignal"] == "SIGTERM"
    assert image["Entrypoint"] == ["shipper"] and image["Cmd"] == ["run"]
    assert "/healthz" in " ".join(image["Healthcheck"]["Test"])
    assert image["Labels"]["org.opencontainers.image.title"] == "shipper"
    version = support.docker("run", "--rm", "--label", support.LABEL, shipper_image, "--version")
    assert version.stdout.strip().startswith("shipper ")


def test_the_containerised_shipper_ships_sibling_logs_exactly_once_and_drains_on_stop(
    shipper_image: str,
    es_server: str,
    containers: list[str],
    tmp_path: Path,
) -> None:
    shipper, port = start_shipper(shipper_image, es_server, tmp_path, containers)
    support.wait_healthy(shipper, timeout_s=60)
    support.wait_ready(f"http://127.0.0.1:{port}", timeout_s=30)

    siblings = [
        run_sibling(containers, "for i in $(seq 1 50); do echo line $i; done"),
        run_sibling(containers, "for i in $(seq 1 50); do echo oops $i >&2; echo ok $i; done"),
    ]
    for sibling in siblings:
        assert support.docker("wait", sibling).stdout.strip() == "0"

    for sibling in siblings:
        written = support.log_lines(sibling)
        assert len(written) in (50, 100)
        docs = support.wait_for_documents(
            es_server, DATA_STREAM, sibling, count=len(written), timeout_s=60
        )
        shipped = Counter(doc["message"] for doc in docs)
        assert shipped == Counter(written), f"sibling {sibling[:12]}: shipped != docker logs"
    assert support.docker("logs", siblings[0]).stdout.splitlines() == [
        f"line {i}" for i in range(1, 51)
    ]

    # Still healthy after the work, then a clean drain on SIGTERM.
    assert support.inspect(shipper, "{{.State.Health.Status}}") == "healthy"
    started = time.monotonic()
    support.docker("stop", "--time", str(STOP_TIMEOUT_S), shipper)
    stop_s = time.monotonic() - started
    assert support.inspect(shipper, "{{.State.ExitCode}}") == "0"
    assert support.inspect(shipper, "{{.State.OOMKilled}}") == "false"
    assert stop_s < STOP_TIMEOUT_S - 5, f"docker stop took {stop_s:.1f} s: SIGTERM not handled?"
