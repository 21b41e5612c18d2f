"""The shipper image, run as a container next to the Docker daemon it reads.

The container gets the socket read-only and the host's network (to reach the Elasticsearch
test server on 127.0.0.1); sibling containers write known lines; every line must arrive
exactly once, the container must report healthy, never ship its own logs, and `docker stop`
must drain it to exit 0 well inside the stop timeout, even while a sibling is still writing,
so that a new shipper container on the same state volume continues without a gap or a repeat.

Each test's shipper only follows containers carrying that test's own label (an include rule):
other tests share the Docker daemon, and their containers must not count here. The shipper's
own container carries the label too, so only own-container detection keeps it out.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import tomllib
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tests.deploy import support
from tests.deploy.conftest import REPO, free_port

pytestmark = pytest.mark.docker

BUSYBOX = "shipper-test-busybox:latest"
DATA_STREAM = "logs-docker-default"
STOP_TIMEOUT_S = 30
SOCKET = "/var/run/docker.sock"


@pytest.fixture
def run_label() -> str:
    """A label only this test's containers carry; its shipper follows only those."""
    return f"shipper.test.run={uuid.uuid4().hex[:12]}"


def run_sibling(containers: list[str], run_label: str, script: str, *options: str) -> str:
    container_id = support.docker(
        "run", "--detach", "--label", support.LABEL, "--label", run_label, *options,
        BUSYBOX, "sh", "-c", script,
    ).stdout.strip()  # fmt: skip
    containers.append(container_id)
    return container_id


def start_shipper(
    image: str,
    es_url: str,
    tmp_path: Path,
    containers: list[str],
    run_label: str,
    *,
    network: str = "host",
    state_volume: str | None = None,
) -> tuple[str, int]:
    """Starts the image as a container; its id and metrics port. Without `state_volume` the
    state directory is the image's anonymous volume."""
    port = free_port()
    config = tmp_path / f"shipper-{port}.yml"
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
                "processing": {"selection": {"include": [{"labels": [run_label]}]}},
            }
        )
    )
    config.chmod(0o644)
    state = ["--volume", f"{state_volume}:/var/lib/shipper"] if state_volume else []
    container_id = support.docker(
        "run", "--detach",
        "--name", f"shipper-deploy-test-{os.getpid()}-{port}",
        "--label", support.LABEL,
        "--label", run_label,
        "--network", network,
        # The image runs as uid 10001; the socket's group lets it read the socket.
        "--group-add", str(os.stat(SOCKET).st_gid),
        "--volume", f"{SOCKET}:/var/run/docker.sock:ro",
        "--volume", "/var/lib/docker/containers:/var/lib/docker/containers:ro",
        "--volume", f"{config}:/etc/shipper/shipper.yml:ro",
        *state,
        "--env", f"SHIPPER_HEALTHCHECK_URL=http://127.0.0.1:{port}/healthz",
        "--health-interval", "1s",
        "--stop-timeout", str(STOP_TIMEOUT_S),
        image,
    ).stdout.strip()  # fmt: skip
    containers.append(container_id)
    return container_id, port


def stop_cleanly(shipper: str) -> float:
    """`docker stop`s the shipper; asserts it drained to exit 0 in time. The seconds taken."""
    started = time.monotonic()
    support.docker("stop", "--time", str(STOP_TIMEOUT_S), shipper)
    stop_s = time.monotonic() - started
    assert support.inspect(shipper, "{{.State.ExitCode}}") == "0"
    assert support.inspect(shipper, "{{.State.OOMKilled}}") == "false"
    assert stop_s < STOP_TIMEOUT_S - 5, f"docker stop took {stop_s:.1f} s: SIGTERM not handled?"
    return stop_s


def metric(metrics_url: str, series: str) -> float:
    """One series' value from /metrics, e.g. `shipper_lines_read_total{stream="stdout"}`."""
    for line in support.metrics(metrics_url).splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    raise AssertionError(f"{series} is not in {metrics_url}/metrics")


def assert_own_logs_not_shipped(es_url: str, shipper: str) -> None:
    """The shipper logged (so shipping its logs would show), and none of it was stored."""
    assert support.log_lines(shipper), "the shipper logged nothing: the check would be empty"
    assert support.documents(es_url, "logs-*", shipper) == []


def test_the_image_runs_unprivileged_with_a_state_volume(shipper_image: str) -> None:
    config = support.docker("image", "inspect", "--format", "{{json .Config}}", shipper_image)
    image = yaml.safe_load(config.stdout)
    assert image["User"] == "10001:10001"
    assert list(image["Volumes"]) == ["/var/lib/shipper"]
    assert image["StopSignal"] == "SIGTERM"
    assert image["Entrypoint"] == ["shipper"] and image["Cmd"] == ["run"]
    assert "/healthz" in " ".join(image["Healthcheck"]["Test"])

    labels = image["Labels"]
    created = labels.pop("org.opencontainers.image.created")
    assert datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ")  # what scripts/build-image passes
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    assert labels == {
        "org.opencontainers.image.title": "shipper",
        "org.opencontainers.image.description": (
            "Ships every container's logs (Docker, Podman, Kubernetes) into Elasticsearch "
            "exactly once."
        ),
        "org.opencontainers.image.version": project["version"],
        "org.opencontainers.image.revision": revision or "unknown",
        "org.opencontainers.image.licenses": "Apache-2.0",
        # The runtime stage re-declares ARG BASE_IMAGE, or this would be "".
        "org.opencontainers.image.base.name": os.environ.get("BASE_IMAGE", "shipper-base:bookworm"),
        # scripts/build-image labels what it builds, for cleanup.
        "shipper.test": "deploy",
    }
    version = support.docker("run", "--rm", "--label", support.LABEL, shipper_image, "--version")
    assert version.stdout.strip() == f"shipper {project['version']}"


def test_the_containerised_shipper_ships_sibling_logs_exactly_once_and_drains_on_stop(
    shipper_image: str,
    es_server: str,
    containers: list[str],
    tmp_path: Path,
    run_label: str,
) -> None:
    shipper, port = start_shipper(shipper_image, es_server, tmp_path, containers, run_label)
    support.wait_healthy(shipper, timeout_s=60)
    support.wait_ready(f"http://127.0.0.1:{port}", timeout_s=30)

    siblings = [
        run_sibling(containers, run_label, "for i in $(seq 1 50); do echo line $i; done"),
        run_sibling(
            containers, run_label, "for i in $(seq 1 50); do echo oops $i >&2; echo ok $i; done"
        ),
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
    # The shipper's container matches the include rule too: only own-container detection
    # keeps its logs out.
    assert_own_logs_not_shipped(es_server, shipper)

    # Still healthy after the work, then a clean drain on SIGTERM.
    assert support.inspect(shipper, "{{.State.Health.Status}}") == "healthy"
    stop_cleanly(shipper)


def test_a_shipper_sharing_another_containers_network_still_skips_only_its_own_logs(
    shipper_image: str,
    es_server: str,
    containers: list[str],
    tmp_path: Path,
    run_label: str,
) -> None:
    """`--network container:X` (kubelet + cri-dockerd, shared-network sidecars): the shipper
    sees X's hostname/hosts/resolv.conf mounts; it must still ship X and skip itself."""
    # X has the host's network (so the shipper, inside it, reaches the test server), and
    # writes its lines only when told, after the shipper is ready.
    owner = run_sibling(
        containers,
        run_label,
        "while [ ! -f /tmp/go ]; do sleep 0.1; done; "
        "for i in $(seq 1 20); do echo owner $i; done; sleep 600",
        "--network",
        "host",
    )
    shipper, port = start_shipper(
        shipper_image, es_server, tmp_path, containers, run_label, network=f"container:{owner}"
    )
    support.wait_healthy(shipper, timeout_s=60)
    support.wait_ready(f"http://127.0.0.1:{port}", timeout_s=30)
    # The situation under test: the shipper's network files are the owner's.
    mounts = support.docker("exec", shipper, "cat", "/proc/self/mountinfo").stdout
    assert f"/containers/{owner}/hostname " in mounts
    assert f"/containers/{shipper}/" not in mounts

    support.docker("exec", owner, "touch", "/tmp/go")
    expected = [f"owner {i}" for i in range(1, 21)]
    docs = support.wait_for_documents(es_server, DATA_STREAM, owner, count=20, timeout_s=60)
    assert Counter(doc["message"] for doc in docs) == Counter(expected)
    assert_own_logs_not_shipped(es_server, shipper)
    stop_cleanly(shipper)


def test_docker_stop_mid_write_drains_and_a_new_container_on_the_volume_continues(
    shipper_image: str,
    es_server: str,
    containers: list[str],
    state_volume: str,
    tmp_path: Path,
    run_label: str,
) -> None:
    first, first_port = start_shipper(
        shipper_image, es_server, tmp_path, containers, run_label, state_volume=state_volume
    )
    support.wait_healthy(first, timeout_s=60)
    support.wait_ready(f"http://127.0.0.1:{first_port}", timeout_s=30)

    # Writes about 200 numbered lines a second until told to stop: through the first
    # shipper's life, its drain, the gap between the two, and the second shipper's life.
    writer = run_sibling(
        containers,
        run_label,
        "i=0; while [ ! -f /tmp/stop ]; do i=$((i + 1)); echo line $i; "
        "if [ $((i % 10)) -eq 0 ]; then sleep 0.05; fi; done",
    )
    deadline = time.monotonic() + 60
    while len(support.documents(es_server, DATA_STREAM, writer)) < 200:
        assert time.monotonic() < deadline, "the first shipper shipped nothing"
        time.sleep(0.3)

    stop_cleanly(first)
    assert support.inspect(writer, "{{.State.Running}}") == "true", "stopped after the writes"
    # Everything the first shipper read is stored: the drain flushed it before exiting.
    shipped_by_first = len(support.documents(es_server, DATA_STREAM, writer))
    assert_own_logs_not_shipped(es_server, first)
    # Replaced, as an upgrade would: the state volume is all the second shipper inherits (and
    # the first one's own logs, which the second would rightly ship, do not muddle counts).
    support.docker("rm", first)
    time.sleep(1)  # lines written while no shipper runs

    second, second_port = start_shipper(
        shipper_image, es_server, tmp_path, containers, run_label, state_volume=state_volume
    )
    second_url = f"http://127.0.0.1:{second_port}"
    support.wait_healthy(second, timeout_s=60)
    support.wait_ready(second_url, timeout_s=30)
    time.sleep(1)  # lines written while the second shipper follows live
    support.docker("exec", writer, "touch", "/tmp/stop")
    assert support.docker("wait", writer).stdout.strip() == "0"

    written = support.log_lines(writer)
    last = int(written[-1].removeprefix("line "))
    assert written == [f"line {i}" for i in range(1, last + 1)]
    docs = support.wait_for_documents(
        es_server, DATA_STREAM, writer, count=len(written), timeout_s=60
    )
    shipped = Counter(doc["message"] for doc in docs)
    missing = sorted(set(written) - set(shipped), key=lambda line: int(line.split()[1]))
    repeated = sorted(line for line, n in shipped.items() if n > 1)
    assert (len(docs), missing[:5], repeated[:5]) == (len(written), [], [])
    assert shipped == Counter(written)
    # The second shipper resumed at the first one's checkpoint on the volume: it read exactly
    # the lines the first had not shipped, and Elasticsearch had none of them already.
    assert metric(second_url, 'shipper_lines_read_total{stream="stdout"}') == (
        len(written) - shipped_by_first
    )
    conflicts = re.findall(r'shipper_bulk_items_total\{[^}]*status="409"[^}]*\} (\S+)',
                           support.metrics(second_url))  # fmt: skip
    assert sum(float(n) for n in conflicts) == 0
    assert_own_logs_not_shipped(es_server, second)
    stop_cleanly(second)
