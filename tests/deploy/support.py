"""Helpers for the deployment tests: the docker CLI, health polling, and reading what the
Elasticsearch test server stored."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

LABEL = "shipper.test=deploy"


def docker(
    *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def inspect(container_id: str, template: str) -> str:
    return docker("inspect", "--format", template, container_id).stdout.strip()


def wait_healthy(container_id: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    status = ""
    while time.monotonic() < deadline:
        status = inspect(container_id, "{{.State.Health.Status}} {{.State.Status}}")
        if status.startswith("healthy"):
            return
        if status.endswith(("exited", "dead")):
            break
        time.sleep(0.5)
    logs = docker("logs", "--tail", "40", container_id, check=False)
    raise AssertionError(
        f"container {container_id[:12]} is {status!r}, not healthy\n{logs.stdout}{logs.stderr}"
    )


def wait_ready(metrics_url: str, timeout_s: float) -> None:
    """Waits for /readyz: connected to Docker and Elasticsearch, so no start is missed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{metrics_url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{metrics_url}/readyz never answered 200")
        time.sleep(0.3)


def metrics(metrics_url: str) -> str:
    """The shipper's own counters, for failure messages."""
    try:
        with urllib.request.urlopen(f"{metrics_url}/metrics", timeout=2) as response:
            text: str = response.read().decode()
    except OSError as exc:
        return f"(no metrics: {exc})"
    return "\n".join(
        line for line in text.splitlines() if line.startswith("shipper_") and "_created" not in line
    )


def log_lines(container_id: str) -> list[str]:
    """What `docker logs` says the container wrote, stdout and stderr together."""
    result = docker("logs", container_id)
    return (result.stdout + result.stderr).splitlines()


def _request(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read() or b"{}")
        return result


def documents(es_url: str, index: str, container_id: str) -> list[dict[str, Any]]:
    """Every document the shipper stored for one container (after a refresh)."""
    try:
        _request(f"{es_url}/{index}/_refresh")
        result = _request(
            f"{es_url}/{index}/_search",
            {"size": 10000, "query": {"term": {"container.id": container_id}}},
        )
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # the data stream does not exist yet
            return []
        raise
    hits = result["hits"]["hits"]
    return [hit["_source"] for hit in hits if hit["_source"]["container"]["id"] == container_id]


def wait_for_documents(
    es_url: str, index: str, container_id: str, count: int, timeout_s: float
) -> list[dict[str, Any]]:
    """Waits until at least `count` documents arrived, then a little longer for extras."""
    deadline = time.monotonic() + timeout_s
    docs = documents(es_url, index, container_id)
    while len(docs) < count and time.monotonic() < deadline:
        time.sleep(0.5)
        docs = documents(es_url, index, container_id)
    time.sleep(2)  # a duplicate would arrive after the originals: give it the chance
    return documents(es_url, index, container_id)
