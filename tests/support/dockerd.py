"""A second, private Docker daemon that a test may stop and start at will.

The machine's main dockerd is shared with other test runs and must never be restarted, so
tests of "dockerd went away and came back" run their own daemon: own data root, exec root,
pid file, config file, cgroup parent and unix socket under a temporary directory, no bridge,
no iptables, no TCP, and its own containerd (dockerd starts one under the exec root when
`--containerd` is not given). Containers run with `network_mode="none"`.

It runs in a network namespace of its own (`unshare --net`). That is not optional: started
with `--bridge=none`, dockerd deletes the host's `docker0` link at start
(`removeDefaultBridgeInterface`), which breaks every container start of the main daemon.
The fixture checks that `docker0` is still there afterwards.
The test image is copied from the main daemon (`docker save | docker load`), so no registry
is needed.

It runs the system's dockerd (Debian's 20.10) or another build of it: `dockerd=` names the
binary (scripts/ensure-docker-current puts Debian sid's current Engine in
/opt/shipper-test/docker-current), and `min_api_version=` starts it with
DOCKER_MIN_API_VERSION, with which dockerd 28 refuses older clients exactly as Docker 29
does by default (`400 client version 1.41 is too old`). `stop()` sends SIGTERM (dockerd stops its containers and its containerd, as on a
host shutdown), `start()` brings it back on the same socket and data root: containers, their
logs and their restart policies survive, exactly as across a real daemon restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.conftest import TEST_IMAGE


class PrivateDockerd:
    def __init__(
        self,
        root: Path,
        *,
        dockerd: str = "dockerd",
        min_api_version: str | None = None,
        cgroup_parent: str = "/shipper-test-dockerd",
    ) -> None:
        self.root = root
        self.dockerd = dockerd
        # DOCKER_MIN_API_VERSION for the next start; change it and restart to change it.
        self.min_api_version = min_api_version
        self.cgroup_parent = cgroup_parent
        self.socket = root / "docker.sock"
        self.data_root = root / "data"
        self.exec_root = root / "exec"
        self.pidfile = root / "docker.pid"
        self.log_path = root / "dockerd.log"
        self.config_file = root / "daemon.json"
        self.process: subprocess.Popen[bytes] | None = None
        self.client: docker.DockerClient | None = None
        self._client_for = ""  # the dockerd binary `client` negotiated with

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout_s: float = 60) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.config_file.write_text("{}")  # not the host's /etc/docker/daemon.json
        command = [
            # Own network namespace: see the module docstring (docker0).
            "unshare",
            "--net",
            "--",
            self.dockerd,
            f"--config-file={self.config_file}",
            f"--data-root={self.data_root}",
            f"--exec-root={self.exec_root}",
            f"--pidfile={self.pidfile}",
            f"--host={self.host}",
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            "--ip-forward=false",
            f"--cgroup-parent={self.cgroup_parent}",
            # Containers that ignore SIGTERM must not hold a stop for the default 15 s.
            "--shutdown-timeout=2",
        ]
        env = {k: v for k, v in os.environ.items() if k != "DOCKER_MIN_API_VERSION"}
        if self.min_api_version is not None:
            env["DOCKER_MIN_API_VERSION"] = self.min_api_version
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"private dockerd exited at start:\n{self.log_tail()}")
            if self._ping():
                break
            time.sleep(0.2)
        else:
            raise TimeoutError(
                f"private dockerd did not answer in {timeout_s} s:\n{self.log_tail()}"
            )
        if self.client is not None and self._client_for != self.dockerd:
            # Another engine on the same socket (an upgrade): its client negotiates anew.
            self.client.close()
            self.client = None
        if self.client is None:
            self.client = docker.DockerClient(base_url=self.host)
            self._client_for = self.dockerd

    def stop(self, timeout_s: float = 60) -> None:
        """SIGTERM, as `systemctl stop docker` does, to the pid in its pid file (`unshare`
        execs dockerd, so that is the process started); waits until the daemon is gone."""
        if self.process is None or self.process.poll() is not None:
            return
        pid = self._pid_from_file()
        if pid is not None and pid != self.process.pid:
            raise RuntimeError(f"{self.pidfile} names {pid}, not the dockerd started here")
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def restart(self, *, min_api_version: str | None = None) -> None:
        """Stops and starts again on the same socket and data root, with a new minimum."""
        self.stop()
        self.min_api_version = min_api_version
        self.start()

    def version(self) -> dict[str, str]:
        """The engine's `GET /version` (unversioned): Version, ApiVersion, MinAPIVersion."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(self.socket))
            sock.sendall(b"GET /version HTTP/1.0\r\nHost: docker\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        body = data.split(b"\r\n\r\n", 1)[1]
        return {k: v for k, v in json.loads(body).items() if isinstance(v, str)}

    def _pid_from_file(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def import_test_image(self, main: docker.DockerClient) -> None:
        """Copies the test image from the main daemon: `docker save | docker load`."""
        assert self.client is not None
        data = b"".join(main.images.get(TEST_IMAGE).save(named=True))
        self.client.images.load(data)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                sock.connect(str(self.socket))
                sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                status_line = sock.recv(64).split(b"\r\n", 1)[0]
                return status_line.split(b" ")[1:2] == [b"200"]
        except OSError:
            return False

    def teardown(self) -> None:
        """Removes every container, stops the daemon, unmounts leftovers, deletes the root."""
        if self.client is not None and self.process is not None and self.process.poll() is None:
            with contextlib.suppress(Exception):
                for container in self.client.containers.list(all=True):
                    with contextlib.suppress(Exception):
                        container.remove(force=True)
        if self.client is not None:
            self.client.close()
            self.client = None
        self.stop()
        # dockerd unmounts what it mounted on a clean stop; after a crash it may not have.
        for mount in _mounts_under(self.root):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) + os.sep
    found = []
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            target = line.split()[1].replace("\\040", " ")
            if target.startswith(prefix):
                found.append(target)
    return sorted(found, key=len, reverse=True)  # deepest first


@contextlib.contextmanager
def running_private_dockerd(
    image_source: docker.DockerClient,
    *,
    dockerd: str = "dockerd",
    min_api_version: str | None = None,
    cgroup_parent: str = "/shipper-test-dockerd",
) -> Iterator[PrivateDockerd]:
    """A private dockerd with the test image, torn down (containers and all) afterwards."""
    if shutil.which(dockerd) is None or shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip(f"a private dockerd needs {dockerd}, unshare and root")
    bridge_before = _has_link("docker0")
    # A short root: unix socket paths are limited to 107 bytes, pytest's tmp_path is long.
    root = Path(_short_tmpdir())
    daemon = PrivateDockerd(
        root, dockerd=dockerd, min_api_version=min_api_version, cgroup_parent=cgroup_parent
    )
    try:
        daemon.start()
        daemon.import_test_image(image_source)
        yield daemon
    finally:
        daemon.teardown()
        if bridge_before:
            assert _has_link("docker0"), "the private dockerd removed the host's docker0"


def _has_link(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _short_tmpdir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="shipper-dockerd-", dir="/tmp")
