"""Which Docker Engine the tests drive: the system's, or a current one beside it.

`SHIPPER_TEST_ENGINE` picks it for a whole pytest run:

- `system` (default): the machine's dockerd on DOCKER_HOST or /var/run/docker.sock (Debian
  bookworm's 20.10, Engine API 1.41).
- `current`: Debian sid's docker.io (28.x, API 1.51), which scripts/ensure-docker-current
  unpacks into /opt/shipper-test/docker-current, started once for the session as a private
  daemon (own socket, data root, exec root, network namespace) with
  `DOCKER_MIN_API_VERSION=1.44`, so that it refuses API versions below 1.44 as Docker 29
  does. The test image is copied into it from the system daemon.

The `docker_client` and `containers` fixtures, the shipper's `docker.host` (see
`shipper_factory`) and `private_dockerd` (a daemon a test may stop and start) all follow the
choice, so a test file runs unchanged against either engine. `.ci/run` runs the engine
tests a second time with `SHIPPER_TEST_ENGINE=current`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.support.dockerd import PrivateDockerd, running_private_dockerd

ENGINE_ENV = "SHIPPER_TEST_ENGINE"
CURRENT_DOCKERD = os.environ.get(
    "SHIPPER_TEST_CURRENT_DOCKERD", "/opt/shipper-test/docker-current/usr/sbin/dockerd"
)
# What Docker 29 refuses below by default; dockerd 28 does the same when told to.
CURRENT_MIN_API_VERSION = "1.44"


@dataclass(frozen=True)
class EngineKind:
    name: str
    dockerd: str  # the binary a private daemon of this kind runs
    min_api_version: str | None  # DOCKER_MIN_API_VERSION it is started with


SYSTEM = EngineKind("system", "dockerd", None)
CURRENT = EngineKind("current", CURRENT_DOCKERD, CURRENT_MIN_API_VERSION)
KINDS = {kind.name: kind for kind in (SYSTEM, CURRENT)}


def selected_kind() -> EngineKind:
    name = os.environ.get(ENGINE_ENV, SYSTEM.name)
    if name not in KINDS:
        raise pytest.UsageError(f"{ENGINE_ENV}={name!r}: expected one of {sorted(KINDS)}")
    return KINDS[name]


@dataclass(frozen=True)
class Engine:
    kind: EngineKind
    host: str  # unix://... as the shipper's docker.host takes it
    daemon: PrivateDockerd | None  # None for the system's dockerd


def system_host() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


@pytest.fixture(scope="session")
def system_docker_client() -> Iterator[docker.DockerClient]:
    """The machine's own daemon: where the test image is built, and copied from."""
    client = docker.DockerClient(base_url=system_host())
    try:
        client.ping()
    except Exception as exc:  # pragma: no cover - the environment is broken, say so
        pytest.fail(f"no Docker daemon answers ({exc}); run scripts/ensure-docker")
    yield client
    client.close()


# The engines this run drove, for the summary at its end: "which engine did it run on".
_DRIVEN: dict[str, str] = {}


def _describe(host: str, kind: EngineKind) -> str:
    client = docker.DockerClient(base_url=host)
    try:
        version = client.version()
    finally:
        client.close()
    return (
        f"Docker Engine {version.get('Version')} on {host}: API {version.get('MinAPIVersion')} "
        f"to {version.get('ApiVersion')} [{kind.name}]"
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for description in _DRIVEN.values():
        terminalreporter.write_line(f"engine under test: {description}")


@pytest.fixture(scope="session")
def engine(system_docker_client: docker.DockerClient) -> Iterator[Engine]:
    kind = selected_kind()
    if kind is SYSTEM:
        host = system_host()
        _DRIVEN[host] = _describe(host, kind)
        yield Engine(kind, host, None)
        return
    if not Path(kind.dockerd).exists():
        pytest.fail(f"{kind.dockerd} is missing; run scripts/ensure-docker-current")
    with running_private_dockerd(
        system_docker_client,
        dockerd=kind.dockerd,
        min_api_version=kind.min_api_version,
        cgroup_parent="/shipper-test-engine",
    ) as daemon:
        _DRIVEN["session"] = _describe(daemon.host, kind)
        yield Engine(kind, daemon.host, daemon)


@pytest.fixture
def private_dockerd(system_docker_client: docker.DockerClient) -> Iterator[PrivateDockerd]:
    """A private daemon of the selected kind, for tests that stop and start it."""
    kind = selected_kind()
    with running_private_dockerd(
        system_docker_client, dockerd=kind.dockerd, min_api_version=kind.min_api_version
    ) as daemon:
        _DRIVEN.setdefault(f"private {kind.name}", _describe(daemon.host, kind) + " (private)")
        yield daemon


@pytest.fixture
def private_current_dockerd(
    system_docker_client: docker.DockerClient,
) -> Iterator[PrivateDockerd]:
    """A private current engine whatever the selection: for the version negotiation tests."""
    with running_private_dockerd(
        system_docker_client,
        dockerd=CURRENT.dockerd,
        min_api_version=CURRENT.min_api_version,
    ) as daemon:
        _DRIVEN.setdefault("private current", _describe(daemon.host, CURRENT) + " (private)")
        yield daemon
