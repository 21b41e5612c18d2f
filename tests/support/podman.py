"""A private Podman service for the Podman tests, and an independent reading of its logs.

`podman system service --time=0 unix://<root>/podman.sock` serves the Docker-compatible API
(and Podman's own), rootful, with everything of its own under a short temporary root:
storage (`--root`), run state (`--runroot`), `--tmpdir`, the events log, the network
config directory and its containers.conf (`CONTAINERS_CONF`). A Podman of the host's, if
any, is never touched; the service stops by its pid. The test image is the root filesystem
scripts/build-test-image makes, `podman import`ed into the private store.

Containers are created through the Docker-compatible API with the `docker` SDK pointed at
the socket, as a user moving from Docker (`DOCKER_HOST=unix:///run/podman/podman.sock`)
would, and as the shipper reads it; the `podman` CLI with the same flags is used only to
import the image and to clean up.

What this machine needs (measured with Podman 4.3.1): runc, since crun refuses the hybrid
cgroup v1 layout here ("cgroups in hybrid mode not supported"); cgroupfs, as no systemd
runs; `default_ulimits` of 1024, since Podman's rootful default (nofile 1048576) needs
CAP_SYS_RESOURCE, which this sandbox lacks; the `file` events backend, as no journald runs.
Containers run with `network_mode="none"`.

The reference reading (`reference_lines`) parses the container's k8s-file log itself
(`LogPath`, CRI format: `<RFC 3339 with offset> <stream> <P|F> <text>`), sharing no code
with the shipper: a `P` part continues into the next line of its stream, the line has its
first part's time. That is conmon's own record, to the nanosecond; the logs API, which the
shipper reads, truncates it to the second up to Podman 5.7, so that is what a document's
`@timestamp` must be (`precision_ns`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.models.containers import Container

from tests.conftest import RUN_ID, TEST_IMAGE, TEST_LABEL
from tests.support.docker_logs import Line

REPO = Path(__file__).resolve().parents[2]
_CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
log_driver = "{log_driver}"

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "{events_logger}"
events_logfile_path = "{root}/events.log"

[network]
network_config_dir = "{root}/networks"
"""
# The journald variant: the service runs in a mount namespace of its own, with a private
# /run (and /var/log/journal) on tmpfs and a systemd-journald of its own there, volatile and
# without rate limits, since this machine runs none. Podman reads journald logs only with
# journald events (`--follow` refuses otherwise), so both go there.
_JOURNALD_SETUP = """\
set -e
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs tmpfs /var/log/journal
mkdir -p /run/systemd/journal /run/systemd/journald.conf.d /run/log/journal
printf '[Journal]\\nStorage=volatile\\nRateLimitIntervalSec=0\\n' \
    >/run/systemd/journald.conf.d/shipper-test.conf
/lib/systemd/systemd-journald >"$ROOT/journald.log" 2>&1 &
echo $! >"$ROOT/journald.pid"
while [ ! -S /run/systemd/journal/socket ]; do sleep 0.05; done
exec "$@"
"""
JOURNALD = Path("/lib/systemd/systemd-journald")


class PrivatePodman:
    def __init__(self, root: Path, *, journald: bool = False) -> None:
        self.root = root
        self.journald = journald
        self.socket = root / "podman.sock"
        self.conf = root / "containers.conf"
        self.log_path = root / "service.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.client: docker.DockerClient | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def global_args(self) -> list[str]:
        return [
            "--root",
            str(self.root / "storage"),
            "--runroot",
            str(self.root / "run"),
            "--tmpdir",
            str(self.root / "tmp"),
            "--storage-driver",
            "overlay",
        ]

    def in_namespace(self) -> list[str]:
        """The prefix that runs a command where the service runs (its own journald)."""
        if not self.journald or self.process is None:
            return []
        return ["nsenter", f"--mount=/proc/{self.process.pid}/ns/mnt", "--"]

    def podman(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*self.in_namespace(), "podman", *self.global_args(), *args],
            input=stdin,
            capture_output=True,
            env={**os.environ, "CONTAINERS_CONF": str(self.conf)},
            check=True,
            timeout=120,
        )

    def start(self, timeout_s: float = 30) -> None:
        driver = "journald" if self.journald else "k8s-file"
        self.conf.write_text(
            _CONTAINERS_CONF.format(
                root=self.root,
                log_driver=driver,
                events_logger="journald" if self.journald else "file",
            )
        )
        command = ["podman", *self.global_args(), "system", "service", "--time=0", self.host]
        if self.journald:
            # The shell execs the service: the pid held is the service's, in the namespace.
            setup = ["sh", "-c", _JOURNALD_SETUP, "journald-setup"]
            command = ["unshare", "--mount", "--propagation", "private", "--", *setup, *command]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "CONTAINERS_CONF": str(self.conf), "ROOT": str(self.root)},
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while not self._ping():
            if self.process.poll() is not None:
                raise RuntimeError(f"podman system service exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"podman system service did not answer:\n{self.log_tail()}")
            time.sleep(0.1)
        self.client = docker.DockerClient(base_url=self.host, version="auto")

    def import_test_image(self) -> None:
        """The root filesystem of scripts/build-test-image, `podman import`ed."""
        rootfs = subprocess.run(
            [str(REPO / "scripts" / "build-test-image"), "--rootfs-tar"],
            capture_output=True,
            check=True,
            timeout=120,
        ).stdout
        self.podman(
            "import",
            "--change",
            "ENV PATH=/bin",
            "--change",
            'CMD ["/bin/sh"]',
            "--change",
            "LABEL org.opencontainers.image.title=shipper-test-busybox",
            "-",
            TEST_IMAGE,
            stdin=rootfs,
        )

    @property
    def version(self) -> tuple[int, ...]:
        assert self.client is not None
        text = str(self.client.version()["Version"])
        return tuple(int(part) for part in re.findall(r"\d+", text)[:3])

    @property
    def precision_ns(self) -> int:
        """How precise the logs API's timestamps are: seconds up to Podman 5.7."""
        return 1 if self.version >= (5, 8) else 1_000_000_000

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                sock.connect(str(self.socket))
                sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
                status_line = sock.recv(64).split(b"\r\n", 1)[0]
                return status_line.split(b" ")[1:2] == [b"200"]
        except OSError:
            return False

    def teardown(self) -> None:
        """Removes every container, stops the service by its pid, deletes the root."""
        if self.client is not None:
            self.client.close()
            self.client = None
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.podman("rm", "--all", "--force", "--time", "0")
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            # Unmounts the image layers and deletes the store (only ours: --root is ours).
            subprocess.run(
                ["podman", *self.global_args(), "system", "reset", "--force"],
                capture_output=True,
                env={**os.environ, "CONTAINERS_CONF": str(self.conf)},
                timeout=120,
            )
        journald_pid = self.root / "journald.pid"
        if journald_pid.exists():
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(journald_pid.read_text()), signal.SIGTERM)
        for mount in _mounts_under(self.root):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) + os.sep
    with open("/proc/self/mounts") as mounts:
        found = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    return sorted(found, key=len, reverse=True)  # deepest first


@pytest.fixture(scope="session")
def podman_service() -> Iterator[PrivatePodman]:
    """A private rootful Podman service with the test image, for the whole session."""
    if shutil.which("podman") is None or os.geteuid() != 0:
        pytest.skip("the Podman tests need podman (scripts/ensure-podman) and root")
    # A short root: unix socket paths are limited to 107 bytes, pytest's tmp_path is long.
    service = PrivatePodman(Path(tempfile.mkdtemp(prefix="shipper-podman-", dir="/tmp")))
    try:
        service.start()
        service.import_test_image()
        yield service
    finally:
        service.teardown()


@pytest.fixture(scope="session")
def podman_journald_service() -> Iterator[PrivatePodman]:
    """Like `podman_service`, with the journald log driver (and its own journald)."""
    if shutil.which("podman") is None or os.geteuid() != 0 or not JOURNALD.exists():
        pytest.skip("the journald tests need podman, systemd-journald, unshare and root")
    root = Path(tempfile.mkdtemp(prefix="shipper-podman-j-", dir="/tmp"))
    service = PrivatePodman(root, journald=True)
    try:
        service.start()
        service.import_test_image()
        yield service
    finally:
        service.teardown()


def _containers_of(service: PrivatePodman) -> Iterator[Callable[..., Container]]:
    client = service.client
    assert client is not None
    created: list[Container] = []

    def run(command: str | list[str], **kwargs: Any) -> Container:
        kwargs.setdefault("network_mode", "none")
        labels = {TEST_LABEL: RUN_ID, **kwargs.pop("labels", {})}
        container = client.containers.run(
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
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            container.remove(force=True)


@pytest.fixture
def podman_journald_containers(
    podman_journald_service: PrivatePodman,
) -> Iterator[Callable[..., Container]]:
    yield from _containers_of(podman_journald_service)


@pytest.fixture
def podman_containers(podman_service: PrivatePodman) -> Iterator[Callable[..., Container]]:
    """Starts test containers in the private Podman; every one is removed at teardown."""
    yield from _containers_of(podman_service)


# ------------------------------------------------------------------ the reference reading


def cri_time_ns(raw: str) -> int:
    """conmon's `2026-12-06T15:42:59.492639542+00:00` → nanoseconds since the epoch."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", raw)
    assert match is not None, f"not a CRI timestamp: {raw!r}"
    seconds, fraction, zone = match.groups()
    offset = "+00:00" if zone == "Z" else zone
    base = int(datetime.fromisoformat(seconds + offset).timestamp())
    return base * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))


def rfc3339_ns(ns: int) -> str:
    seconds, nanos = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


def k8s_file_lines(log: bytes, *, tty: bool, precision_ns: int) -> list[Line]:
    """The lines of a k8s-file log, stamped as the logs API reports their first part."""
    lines: list[tuple[int, str, bytes]] = []  # (first part ns, stream, text), by first part
    open_lines: dict[str, int] = {}  # stream -> index in `lines` of its unfinished line
    for raw in log.split(b"\n"):
        if not raw:
            continue
        stamp, stream, flag, text = raw.split(b" ", 3)
        name = stream.decode()
        index = open_lines.pop(name, None)
        if index is None:
            lines.append((cri_time_ns(stamp.decode()), name, text))
            index = len(lines) - 1
        else:
            first, _, sofar = lines[index]
            lines[index] = (first, name, sofar + text)
        if flag == b"P":
            open_lines[name] = index
    out = []
    for first, name, text in lines:
        if tty and text.endswith(b"\r"):
            text = text[:-1]  # the terminal's, as `\n` became `\r\n`
        shown = first - first % precision_ns
        out.append(Line(rfc3339_ns(shown), name, text.decode("utf-8", "replace")))
    return out


def reference_lines_for(precision_ns: int) -> Callable[[docker.DockerClient, str], list[Line]]:
    """`reference_lines` of a Podman container: its k8s-file log, read here."""

    def read(client: docker.DockerClient, container_id: str) -> list[Line]:
        inspect = client.api.inspect_container(container_id)
        log = Path(inspect["LogPath"]).read_bytes()
        return k8s_file_lines(log, tty=bool(inspect["Config"]["Tty"]), precision_ns=precision_ns)

    return read


def journal_lines(service: PrivatePodman, container_id: str, precision_ns: int) -> list[Line]:
    """The lines conmon sent to the private journald for the container, read there with
    journalctl: one entry per part (`CONTAINER_PARTIAL_MESSAGE` on all but a line's last),
    stdout at priority 6 and stderr at 3, stamped when journald received them (µs)."""
    assert service.client is not None
    tty = bool(service.client.api.inspect_container(container_id)["Config"]["Tty"])
    output = subprocess.run(
        [
            *service.in_namespace(),
            "journalctl",
            "--directory=/run/log/journal",
            "--output=json",
            "--all",
            f"CONTAINER_ID_FULL={container_id}",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    log = []
    for raw in output.splitlines():
        entry = json.loads(raw)
        message = entry["MESSAGE"]
        text = bytes(message) if isinstance(message, list) else message.encode()
        partial = "CONTAINER_PARTIAL_MESSAGE" in entry
        if not partial and text.endswith(b"\n"):
            text = text[:-1]
        stream = {"6": b"stdout", "3": b"stderr"}[entry["PRIORITY"]]
        stamp = rfc3339_ns(int(entry["__REALTIME_TIMESTAMP"]) * 1000).encode()
        log.append(b" ".join([stamp, stream, b"P" if partial else b"F", text]))
    return k8s_file_lines(b"\n".join(log), tty=tty, precision_ns=precision_ns)


def journal_reference_for(
    service: PrivatePodman,
) -> Callable[[docker.DockerClient, str], list[Line]]:
    return lambda _client, container_id: journal_lines(service, container_id, service.precision_ns)
