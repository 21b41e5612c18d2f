"""The benchmark harness still runs: its quickest mode, small sizes (bounded, not timed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]


def test_the_bench_runs_in_quick_mode(tmp_path: Path) -> None:
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
    assert completed.returncode == 0, completed.stderr[-3000:]
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
