"""Shared fixtures: the real Docker daemon, test containers, the shipper as a process."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import pytest
from docker.models.containers import Container

from tests.support.shipper_process import ShipperProcess, deep_merge

if TYPE_CHECKING:
    from tests.support.engines import Engine

TEST_IMAGE = "shipper-test-busybox:latest"
RUN_ID = uuid.uuid4().hex[:8]
TEST_LABEL = "shipper.test"

pytest_plugins = [
    "tests.es_server.fixtures",
    "tests.support.containerd",
    "tests.support.engines",
    "tests.support.podman",
]


@pytest.fixture(scope="session")
def docker_client(engine: Engine) -> Iterator[docker.DockerClient]:
    """The engine under test (tests/support/engines.py: SHIPPER_TEST_ENGINE)."""
    client = docker.DockerClient(base_url=engine.host)
    try:
        client.ping()
    except Exception as exc:  # pragma: no cover - the environment is broken, say so
        pytest.fail(f"no Docker daemon answers ({exc}); run scripts/ensure-docker")
    yield client
    client.close()


ContainerFactory = Callable[..., Container]


@pytest.fixture
def containers(docker_client: docker.DockerClient) -> Iterator[ContainerFactory]:
    """Starts test containers; every one of them is removed at teardown.

    They run without a network unless a test asks for one (`network_mode=...`): they only
    write logs, and the bridge is where Debian's dockerd 20.10.24 deadlocks when many
    containers exit at once (libnetwork's getSvcRecords vs processEndpointDelete,
    moby/libnetwork#2679, not in that build). CI met it in the 200-container test: dockerd
    stopped answering, and every test after it failed.
    """
    created: list[Container] = []

    def run(command: str | list[str], **kwargs: Any) -> Container:
        kwargs.setdefault("network_mode", "none")
        labels = {TEST_LABEL: RUN_ID, **kwargs.pop("labels", {})}
        container = docker_client.containers.run(
            kwargs.pop("image", TEST_IMAGE),
            command if isinstance(command, list) else ["sh", "-c", command],
            detach=True,
            labels=labels,
            **kwargs,
        )
        created.append(container)
        return container

    yield run
    for container in created:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


@pytest.fixture
def shipper_factory(tmp_path: Path, engine: Engine) -> Iterator[Callable[..., ShipperProcess]]:
    """Builds ShipperProcess objects (not started); all are killed at teardown."""
    made: list[ShipperProcess] = []

    def make(
        es_url: str | None, config: dict[str, Any] | None = None, name: str = "shipper"
    ) -> ShipperProcess:
        workdir = tmp_path / name
        workdir.mkdir(exist_ok=True)
        # The engine under test, unless the test names a daemon of its own.
        config = deep_merge({"docker": {"host": engine.host}}, dict(config or {}))
        processing = dict(config.get("processing") or {})
        if "selection" not in processing:
            # Only this run's containers: other containers on the host (a developer's, or a
            # second test run's) are none of this test's business.
            processing["selection"] = {"include": [{"labels": [f"{TEST_LABEL}={RUN_ID}"]}]}
            config["processing"] = processing
        if es_url is not None:
            # Imported here: the module is a pytest plugin (pytest_plugins above), which
            # pytest must import first to rewrite its asserts.
            from tests.es_server.fixtures import shipper_es_config

            # A real cluster (SHIPPER_TEST_ES_URL) brings its credentials and TLS settings;
            # what the test sets itself wins.
            config = deep_merge({"elasticsearch": shipper_es_config(es_url)}, config)
        process = ShipperProcess(workdir, es_url, config)
        made.append(process)
        return process

    yield make
    for process in made:
        process.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """With SHIPPER_TEST_NO_SKIPS=1 (CI sets it) a skipped test fails: a tool missing on the
    CI machine must not turn a check into a silent pass."""
    report = yield
    if os.environ.get("SHIPPER_TEST_NO_SKIPS") == "1" and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, but SHIPPER_TEST_NO_SKIPS=1 forbids skips: {reason}"
    return report
