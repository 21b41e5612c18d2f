"""The benchmark harness still runs: its quickest mode, small sizes (bounded, not timed)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from tests.conftest import TEST_IMAGE

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]


def test_the_bench_runs_in_quick_mode(tmp_path: Path, docker_client: docker.DockerClient) -> None:
    # What an interrupted run leaves: its shipper would follow it (it has the bench label)
    # and count its lines as the scenario's, so the bench removes it first.
    leftover = docker_client.containers.run(
        TEST_IMAGE, ["seq", "1", "777"], detach=True, labels={"shipper.test": "bench"}
    )
    leftover.wait(timeout=60)
    try:
        out = tmp_path / "bench.json"
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench",
                "--quick",
                "--scenarios",
                "ceiling,noisy,many",
                "--modes",
                "api,files",
                "--noisy-lines",
                "5000",
                "--out",
                str(out),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=280,
        )
        left = [c.id for c in docker_client.containers.list(all=True) if c.id == leftover.id]
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            leftover.remove(force=True)  # the bench did not get to it: a later run must not see it
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "removed 1 containers an interrupted run left behind" in completed.stderr
    assert left == []
    results = json.loads(out.read_text())["results"]
    assert [(r["scenario"].split(" ")[0], r["mode"]) for r in results] == [
        ("ceiling", "api"),
        ("single", "api"),
        ("single", "files"),
        ("8", "api"),
        ("8", "files"),
    ]
    assert all(r["lines_per_s"] and r["lines_per_s"] > 0 for r in results)
    assert "lines/s" in completed.stdout
