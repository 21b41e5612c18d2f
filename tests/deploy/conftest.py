"""Fixtures for the deployment tests: the shipper image, the Elasticsearch test server, and
Docker objects that are labelled shipper.test=deploy and removed by id after each test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy import support

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def docker_available() -> None:
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker daemon answers")


@pytest.fixture(scope="session")
def shipper_image(docker_available: None) -> str:
    """The image under test: $SHIPPER_TEST_IMAGE if it exists (CI builds it once before the
    tests), else built here with scripts/build-image on the cached local base image."""
    tag = os.environ.get("SHIPPER_TEST_IMAGE", "shipper:test-deploy")
    exists = support.docker("image", "inspect", tag, check=False).returncode == 0
    if not exists or os.environ.get("SHIPPER_TEST_IMAGE") is None:
        env = dict(os.environ, PYTHON=sys.executable)
        subprocess.run([str(REPO / "scripts" / "build-image"), tag], check=True, env=env)
    return tag


@pytest.fixture
def containers() -> Iterator[list[str]]:
    """Ids of containers a test created; each is removed with its anonymous volumes."""
    ids: list[str] = []
    yield ids
    for container_id in ids:
        support.docker("rm", "--force", "--volumes", container_id, check=False)


@pytest.fixture
def state_volume() -> Iterator[str]:
    """A named volume for the shipper's state, shared by the containers of one test. Removed
    after the containers using it (whichever fixture tears down first)."""
    name = f"shipper-deploy-test-{uuid.uuid4().hex[:12]}"
    support.docker("volume", "create", "--label", support.LABEL, name)
    yield name
    users = support.docker("ps", "--all", "--quiet", "--filter", f"volume={name}").stdout.split()
    for container_id in users:
        support.docker("rm", "--force", "--volumes", container_id, check=False)
    support.docker("volume", "rm", name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def es_server() -> Iterator[str]:
    """The Elasticsearch test server on 127.0.0.1, started as `python -m tests.es_server`."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.es_server", "--port", str(port), "--major", "9"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        url = ""
        while time.monotonic() < deadline and not url.startswith("http"):
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                pytest.fail(f"the Elasticsearch test server exited with {proc.returncode}")
            url = line.strip()
        assert url.startswith("http"), "the Elasticsearch test server printed no URL"
        yield url.rstrip("/")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
