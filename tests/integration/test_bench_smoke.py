"""The benchmark harness still runs: its quickest mode, small sizes (bounded, not timed)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from bench import pagecache
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
        ("ceiling", "api"),  # the same container followed while it writes
        ("single", "api"),
        ("single", "files"),
        ("8", "api"),
        ("8", "files"),
    ]
    assert all(r["lines_per_s"] and r["lines_per_s"] > 0 for r in results)
    assert "followed while written" in results[1]["scenario"]
    # Every line, each with its 8-byte frame header and a timestamp of 20 bytes or more.
    assert results[1]["bytes_read"] >= 5000 * (100 + 8 + 20)
    assert results[2]["ratio_to_follow_ceiling"] > 0
    assert "lines/s" in completed.stdout
    page_cache = json.loads(out.read_text())["machine"]["page_cache_cpu_s_per_gib"]
    assert set(page_cache) == {"append_new_file", "rewrite_cached"}
    assert all(isinstance(v, float) and v > 0 for v in page_cache.values()), page_cache


def test_the_page_cache_probe_writes_its_bytes_and_leaves_no_file(tmp_path: Path) -> None:
    written: list[int] = []
    real_pwrite = os.pwrite

    def counting_pwrite(fd: int, data: bytes, offset: int) -> int:
        written.append(offset)
        return real_pwrite(fd, data, offset)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pagecache.os, "pwrite", counting_pwrite)
        costs = pagecache.cpu_s_per_gib(tmp_path)
    per_pass = pagecache.PROBE_BYTES // (256 * 1024)
    assert written == [i * 256 * 1024 for i in range(per_pass)] * 2  # appended, then rewritten
    assert list(tmp_path.iterdir()) == []
    assert costs["append_new_file"] > 0 and costs["rewrite_cached"] > 0


def count_only_servers() -> set[int]:
    """Pids of running count-only test servers, the kind the bench starts."""
    found = set()
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if b"tests.es_server" in argv and b"--count-only" in argv:
                found.add(int(entry.name))
    return found


def test_a_shipper_that_does_not_start_stops_the_bench_and_leaves_nothing_running(
    docker_client: docker.DockerClient,
) -> None:
    before = count_only_servers()
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--scenarios", "noisy", "--modes", "files"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SHIPPER_ELASTICSEARCH_FLUSH_INTERVAL_S": "-1"},
    )
    assert completed.returncode != 0
    assert "elasticsearch.flush_interval_s" in completed.stderr, completed.stderr[-3000:]
    assert count_only_servers() - before == set()
