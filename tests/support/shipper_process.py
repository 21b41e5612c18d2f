"""Runs the real `shipper` program as a child process, as users run it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class ShipperProcess:
    def __init__(self, workdir: Path, es_url: str | None, config: dict[str, Any] | None = None):
        self.workdir = workdir
        self.storage = workdir / "storage"
        self.metrics_port = free_port()
        base: dict[str, Any] = {
            "storage": {"path": str(self.storage), "checkpoint_interval_s": 0.2},
            "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"},
            "log": {"level": "debug", "format": "json"},
            "shutdown_timeout_s": 5,
        }
        if es_url is not None:
            base["elasticsearch"] = {"hosts": [es_url], "flush_interval_s": 0.1}
        else:
            base["output"] = "console"
        self.config = deep_merge(base, config or {})
        self.config_path = workdir / "shipper.yml"
        self.config_path.write_text(yaml.safe_dump(self.config))
        self.stdout_path = workdir / "shipper.stdout"
        self.stderr_path = workdir / "shipper.stderr"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(
        self,
        *extra_args: str,
        env: dict[str, str] | None = None,
        launcher: list[str] | None = None,
    ) -> None:
        """`launcher` replaces `-m shipper` (a module that injects a fault, then runs it)."""
        assert self.process is None or self.process.poll() is not None
        self.starts += 1
        entry = launcher or ["-m", "shipper"]
        command = [sys.executable, *entry, "run", "--config", str(self.config_path)]
        with open(self.stdout_path, "ab") as stdout, open(self.stderr_path, "ab") as stderr:
            # The child inherits its own copies of the descriptors; ours close right away.
            self.process = subprocess.Popen(
                [*command, *extra_args],
                stdout=stdout,
                stderr=stderr,
                env={**os.environ, **(env or {})},
            )

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def wait_ready_http(self, timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.assert_alive()
            try:
                with urllib.request.urlopen(self.metrics_url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"shipper did not answer /healthz; stderr:\n{self.stderr()}")

    def wait_ready(self, timeout_s: float = 30) -> None:
        """Until /readyz says ready: the runtime answers and the output accepts writes (for
        Elasticsearch: connected, and the shipper's templates installed)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.assert_alive()
            with contextlib.suppress(urllib.error.URLError, OSError):
                if self.http_get("/readyz")[0] == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"shipper did not become ready; stderr:\n{self.stderr()}")

    def http_get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.metrics_url + path, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def assert_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"shipper exited with {self.process.returncode}; stderr:\n{self.stderr()[-5000:]}"
            )

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM, as docker stop does; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def kill(self) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def stdout(self) -> bytes:
        return self.stdout_path.read_bytes() if self.stdout_path.exists() else b""

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Sum of the samples of `name` (matching `labels`) in /metrics."""
        _, body = self.http_get("/metrics")
        total = 0.0
        for line in body.splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            metric_name, _, label_text = key.partition("{")
            if metric_name != name:
                continue
            if labels and not all(f'{k}="{v}"' in label_text for k, v in labels.items()):
                continue
            total += float(value)
        return total

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
