"""A private containerd with its CRI plugin, and kubelet's part played from Python.

Kubelet cannot run on the test machine, but containerd's CRI plugin can, and it is containerd
(not kubelet) that writes the CRI log files under `/var/log/pods`. So the tests start their
own containerd (Debian's 1.6, installed by scripts/ensure-containerd) and drive it through the
CRI API the way kubelet does: run a pod sandbox, create and start containers whose `log_path`
is `<container>/<attempt>.log` under the pod's `log_directory`, rotate a log as kubelet does
(delete the oldest, gzip older rotations, rename, `ReopenContainerLog`), start attempt N+1
after an exit, stop and remove.

Isolation from the machine's own daemons (the Docker daemon and *its* containerd under
/var/run/docker/containerd are shared with other test runs and must never be disturbed):
- own root, state, gRPC and ttrpc sockets, runc root, v1 runtime root and CNI directories, all
  under a short directory in /tmp (unix socket paths are limited to 107 bytes);
- no debug or metrics listener; the CRI streaming server binds 127.0.0.1 on a random port;
- pods run on the host network (`NamespaceMode NODE`), so no CNI plugin runs and nothing in
  the host's network changes. That is why this containerd needs no network namespace of its
  own (unlike a dockerd with `--bridge=none`, which deletes docker0): the fixture checks
  that the host's links are the same afterwards;
- every pod's cgroups live under one parent per instance, which teardown removes.

`restrict_oom_score_adj = true`: the test machine lacks CAP_SYS_RESOURCE, so containerd must
not try to lower a container's OOM score below its own. `SystemdCgroup = false`: no systemd.

The image (tests/support/cri_image.py) is built without any registry from Debian's static
busybox and imported with `ctr images import` into the `k8s.io` namespace. Its default
command sleeps, so the same image is the sandbox ("pause") image and the workload image.

Teardown removes every pod before stopping containerd: the runc shims outlive containerd,
and so would their containers.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from shipper.cri import runtime_v1_pb2 as api
from tests.support import cri_testbed_pb2 as testbed
from tests.support.cri_image import BUSYBOX, build_image_archive

CRI_IMAGE = "docker.io/library/shipper-cri-busybox:latest"
CRI_IMAGE_SHORT = "shipper-cri-busybox:latest"
CALL_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Pod:
    """A pod sandbox the test bed ran, with what kubelet would know about it."""

    id: str
    name: str
    namespace: str
    uid: str
    log_directory: Path
    config: testbed.PodSandboxConfig = field(repr=False)


@dataclass(frozen=True)
class Container:
    """A container the test bed created in a pod; `log_path` is the host path of its log."""

    id: str
    pod: Pod
    name: str
    attempt: int
    command: tuple[str, ...]
    log_path: Path
    labels: Mapping[str, str]
    annotations: Mapping[str, str]


class PrivateContainerd:
    """`cri=False` starts it without its CRI plugin (as Docker's bundled containerd runs);
    `env` adds to its environment. Its zone is UTC unless `env` sets TZ: containerd writes
    log timestamps in local time, and a developer's /etc/localtime must not change them."""

    def __init__(
        self, root: Path, *, cri: bool = True, env: Mapping[str, str] | None = None
    ) -> None:
        self.root = root
        self.cri = cri
        self.env = {"TZ": "UTC", **(env or {})}
        self.socket = root / "containerd.sock"
        self.ttrpc_socket = root / "containerd.sock.ttrpc"
        self.config_file = root / "config.toml"
        self.log_file = root / "containerd.log"
        self.data_root = root / "root"
        self.state = root / "state"
        self.runc_root = root / "runc"
        self.cni_conf_dir = root / "cni" / "net.d"
        self.cni_bin_dir = root / "cni" / "bin"
        self.log_root = root / "pods"  # stands in for /var/log/pods
        # Pods' cgroups go under this parent; unique, so teardown may remove all of it.
        self.cgroup_parent = f"/shipper-test-cri-{root.name}"
        self.image_id = ""  # sha256:... of CRI_IMAGE, known once imported
        self.process: subprocess.Popen[bytes] | None = None
        self._channel: grpc.Channel | None = None

    # --- the daemon ---------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The gRPC target of the CRI API, as a client passes it to grpc."""
        return f"unix://{self.socket}"

    def write_config(self) -> None:
        # Paths are quoted for TOML by json.dumps (a TOML basic string is JSON-compatible).
        def q(path: Path) -> str:
            return json.dumps(str(path))

        # Fail at start, not at the first pod, when the CRI plugin cannot load.
        cri_plugin = '"io.containerd.grpc.v1.cri"'
        required, disabled = (cri_plugin, "") if self.cri else ("", cri_plugin + ",")
        self.config_file.write_text(
            f"""version = 2
root = {q(self.data_root)}
state = {q(self.state)}
required_plugins = [{required}]
# Plugins that would otherwise write outside our root (/opt/containerd) or probe devices.
disabled_plugins = [{disabled}
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = {q(self.socket)}

[ttrpc]
  address = {q(self.ttrpc_socket)}

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.runtime.v1.linux"]
  # Not used (pods run on the v2 runc shim), but it must not share the host's default root.
  runtime_root = {q(self.state / "runtime-v1")}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{CRI_IMAGE}"
  restrict_oom_score_adj = true
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # containerd's default, spelled out: the log files' P/F split is made at this size.
  max_container_log_line_size = 16384

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = {q(self.cni_bin_dir)}
    conf_dir = {q(self.cni_conf_dir)}

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = {q(self.runc_root)}
"""
        )

    def start(self, timeout_s: float = 60) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        for directory in (self.cni_conf_dir, self.cni_bin_dir, self.log_root):
            directory.mkdir(parents=True, exist_ok=True)
        self.write_config()
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                ["containerd", "--config", str(self.config_file)],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **self.env},
            )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"private containerd exited at start:\n{self.log_tail()}")
            if self.socket.exists() and self._answers():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"private containerd did not answer in {timeout_s} s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            grpc.channel_ready_future(self.channel).result(timeout=1)
            if self.cri:
                self.version()
            return True
        except (grpc.RpcError, grpc.FutureTimeoutError):
            return False

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM, as `systemctl stop containerd` does; waits until it is gone."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def import_image(self) -> None:
        """Builds the busybox image archive and imports it into the CRI's namespace."""
        archive = self.root / "image.tar"
        archive.write_bytes(build_image_archive(CRI_IMAGE_SHORT))
        ctr = ["ctr", "--address", str(self.socket), "--namespace", "k8s.io"]
        result = subprocess.run(
            [*ctr, "images", "import", str(archive)],
            capture_output=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"ctr images import failed: {result.stderr.decode(errors='replace')}"
            )
        archive.unlink()
        # The CRI plugin learns of the image from containerd's events, a moment later.
        deadline = time.monotonic() + 30
        while not (image_id := self.image_status(CRI_IMAGE).image.id):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the CRI plugin did not see {CRI_IMAGE} after the import")
            time.sleep(0.02)
        self.image_id = image_id

    # --- CRI calls (kubelet's part) -------------------------------------------------------

    @property
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.address)
        return self._channel

    def call(self, method: str, request: Any, response_type: Any) -> Any:
        """One unary CRI call; `method` is "RuntimeService/RunPodSandbox" and the like."""
        stub = self.channel.unary_unary(
            f"/runtime.v1.{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        return stub(request, timeout=CALL_TIMEOUT_S)

    def version(self) -> api.VersionResponse:
        response: api.VersionResponse = self.call(
            "RuntimeService/Version", api.VersionRequest(version="v1"), api.VersionResponse
        )
        return response

    def image_status(self, image: str) -> testbed.ImageStatusResponse:
        response: testbed.ImageStatusResponse = self.call(
            "ImageService/ImageStatus",
            testbed.ImageStatusRequest(image=api.ImageSpec(image=image)),
            testbed.ImageStatusResponse,
        )
        return response

    def run_pod(
        self,
        name: str | None = None,
        *,
        namespace: str = "default",
        uid: str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        log_root: Path | None = None,
    ) -> Pod:
        """Runs a pod sandbox as kubelet does for a host-network pod.

        Its log directory is `<log_root>/<namespace>_<name>_<uid>`, shaped like kubelet's
        `/var/log/pods/...`; kubelet creates it before RunPodSandbox, and so does this.
        As kubelet does (pkg/kubelet/kuberuntime/labels.go), the sandbox's labels are the
        pod's plus io.kubernetes.pod.{name,namespace,uid}; its annotations are the pod's.
        """
        name = name or f"pod-{uuid.uuid4().hex[:8]}"
        uid = uid or str(uuid.uuid4())
        log_directory = (log_root or self.log_root) / f"{namespace}_{name}_{uid}"
        log_directory.mkdir(parents=True, exist_ok=True)
        config = testbed.PodSandboxConfig(
            metadata=api.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=0),
            hostname="",  # allowed, and required by nothing, with the host network
            log_directory=str(log_directory),
            labels={**(labels or {}), **kubelet_pod_labels(name, namespace, uid)},
            annotations=dict(annotations or {}),
            linux=testbed.LinuxPodSandboxConfig(
                cgroup_parent=self.cgroup_parent,
                security_context=testbed.LinuxSandboxSecurityContext(
                    namespace_options=testbed.NamespaceOption(
                        network=testbed.NODE, pid=testbed.POD, ipc=testbed.POD
                    )
                ),
            ),
        )
        response = self.call(
            "RuntimeService/RunPodSandbox",
            testbed.RunPodSandboxRequest(config=config),
            testbed.RunPodSandboxResponse,
        )
        return Pod(response.pod_sandbox_id, name, namespace, uid, log_directory, config)

    def create_container(
        self,
        pod: Pod,
        name: str,
        command: Sequence[str],
        *,
        attempt: int = 0,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        mounts: Mapping[str, Path] | None = None,
        start: bool = True,
    ) -> Container:
        """Creates (and by default starts) a container logging to `<name>/<attempt>.log`.

        As kubelet does, the image is given by its id, with the pod spec's name beside it
        (user_specified_image, which containerd 1.6 ignores). `mounts` maps a path in the
        container to a host directory (a test can hand the container a signal through it).
        Kubelet's labels (io.kubernetes.container.name and the pod's three) and its
        restartCount annotation are added to those given (kubelet gives no others).
        """
        log_path = f"{name}/{attempt}.log"
        config = testbed.ContainerConfig(
            metadata=api.ContainerMetadata(name=name, attempt=attempt),
            image=api.ImageSpec(image=self.image_id, user_specified_image=CRI_IMAGE),
            command=list(command),
            mounts=[
                testbed.Mount(container_path=inside, host_path=str(outside))
                for inside, outside in (mounts or {}).items()
            ],
            labels={
                **(labels or {}),
                **kubelet_pod_labels(pod.name, pod.namespace, pod.uid),
                "io.kubernetes.container.name": name,
            },
            annotations={
                **(annotations or {}),
                "io.kubernetes.container.restartCount": str(attempt),
            },
            log_path=log_path,
            linux=testbed.LinuxContainerConfig(
                security_context=testbed.LinuxContainerSecurityContext(
                    # What kubelet sets for an ordinary pod's container.
                    namespace_options=testbed.NamespaceOption(
                        network=testbed.NODE, pid=testbed.CONTAINER, ipc=testbed.POD
                    )
                )
            ),
        )
        response = self.call(
            "RuntimeService/CreateContainer",
            testbed.CreateContainerRequest(
                pod_sandbox_id=pod.id, config=config, sandbox_config=pod.config
            ),
            testbed.CreateContainerResponse,
        )
        container = Container(
            id=response.container_id,
            pod=pod,
            name=name,
            attempt=attempt,
            command=tuple(command),
            log_path=pod.log_directory / log_path,
            labels=dict(config.labels),
            annotations=dict(config.annotations),
        )
        if start:
            self.start_container(container)
        return container

    def start_container(self, container: Container) -> None:
        self.call(
            "RuntimeService/StartContainer",
            testbed.StartContainerRequest(container_id=container.id),
            testbed.StartContainerResponse,
        )

    def restart(self, container: Container) -> Container:
        """What kubelet does when a container exited: the next attempt, logging to N+1.log.

        The exited attempt stays (kubelet keeps it for `kubectl logs --previous`).
        """
        return self.create_container(
            container.pod,
            container.name,
            container.command,
            attempt=container.attempt + 1,
            labels=container.labels,
            annotations=container.annotations,
        )

    def status(self, container: Container) -> api.ContainerStatus:
        response: api.ContainerStatusResponse = self.call(
            "RuntimeService/ContainerStatus",
            api.ContainerStatusRequest(container_id=container.id),
            api.ContainerStatusResponse,
        )
        return response.status

    def wait_exited(self, container: Container, timeout_s: float = 30) -> api.ContainerStatus:
        """Waits for the container to exit; containerd has then written its whole log."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.status(container)
            if status.state == api.CONTAINER_EXITED:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"container {container.name} still running after {timeout_s} s")
            time.sleep(0.02)

    def rotate(self, container: Container) -> Path:
        """The last step of kubelet's rotation (rotateLatestLog): rename `N.log` to
        `N.log.<YYYYMMDD-HHMMSS>`, then ReopenContainerLog, on which the runtime creates a
        new `N.log`. Returns the renamed path.

        Kubelet stamps the name with its clock to the second; two rotations of a container
        within a second would collide, so here the stamp moves on past any existing name.
        """
        moment = datetime.now()  # kubelet's local time
        while True:
            rotated = container.log_path.with_name(
                f"{container.log_path.name}.{moment.strftime('%Y%m%d-%H%M%S')}"
            )
            taken = {rotated, rotated.with_name(rotated.name + ".gz")}
            if not any(path.exists() for path in taken):
                break
            moment += timedelta(seconds=1)
        os.rename(container.log_path, rotated)
        try:
            self.call(
                "RuntimeService/ReopenContainerLog",
                testbed.ReopenContainerLogRequest(container_id=container.id),
                testbed.ReopenContainerLogResponse,
            )
        except grpc.RpcError:
            os.rename(rotated, container.log_path)  # as kubelet does, to retry later
            raise
        return rotated

    def rotate_like_kubelet(self, container: Container, max_files: int = 5) -> Path:
        """Kubelet's whole rotation (pkg/kubelet/logs, rotateLog): drop leftover `.tmp`
        files, delete the oldest rotations beyond `max_files - 2`, gzip every rotation not
        yet compressed (`X` → `X.tmp` → `X.gz`, then `X` is deleted), then `rotate`."""
        rotations = sorted(container.log_path.parent.glob(container.log_path.name + ".*"))
        for path in rotations:
            if path.suffix == ".tmp" or Path(f"{path}.gz") in rotations:
                path.unlink()
        rotations = sorted(container.log_path.parent.glob(container.log_path.name + ".*"))
        excess = len(rotations) - max(max_files - 2, 0)
        for path in rotations[: max(excess, 0)]:
            path.unlink()
        for path in rotations[max(excess, 0) :]:
            if path.suffix != ".gz":
                compress_like_kubelet(path)
        return self.rotate(container)

    def holds_open(self, path: Path) -> bool:
        """Whether containerd has `path` open: its CRI plugin writes the log files itself
        (the shim hands it the container's output through FIFOs)."""
        assert self.process is not None
        fd_dir = Path(f"/proc/{self.process.pid}/fd")
        target = str(path)
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) in (target, f"{target} (deleted)"):
                    return True
        return False

    def stop_container(self, container: Container, timeout_s: int = 0) -> None:
        self.call(
            "RuntimeService/StopContainer",
            testbed.StopContainerRequest(container_id=container.id, timeout=timeout_s),
            testbed.StopContainerResponse,
        )

    def remove_container(self, container: Container) -> None:
        self.call(
            "RuntimeService/RemoveContainer",
            testbed.RemoveContainerRequest(container_id=container.id),
            testbed.RemoveContainerResponse,
        )

    def remove_pod(self, pod_id: str) -> None:
        """Stops and removes a pod with its containers, as kubelet does when it is deleted.

        The log directory stays: on a node, kubelet deletes it later, which a test may do.
        """
        self.call(
            "RuntimeService/StopPodSandbox",
            testbed.StopPodSandboxRequest(pod_sandbox_id=pod_id),
            testbed.StopPodSandboxResponse,
        )
        self.call(
            "RuntimeService/RemovePodSandbox",
            testbed.RemovePodSandboxRequest(pod_sandbox_id=pod_id),
            testbed.RemovePodSandboxResponse,
        )

    def pod_ids(self) -> list[str]:
        response: api.ListPodSandboxResponse = self.call(
            "RuntimeService/ListPodSandbox", api.ListPodSandboxRequest(), api.ListPodSandboxResponse
        )
        return [item.id for item in response.items]

    # --- teardown -------------------------------------------------------------------------

    def teardown(self) -> None:
        """Removes every pod, stops containerd, then cleans what a crash may have left."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(grpc.RpcError):
                for pod_id in self.pod_ids():
                    with contextlib.suppress(grpc.RpcError):
                        self.remove_pod(pod_id)
        self.stop()
        # Normally empty by now. If pod removal failed, the shims (ours: they name our
        # socket) and their containers (ours: in our cgroup parent) are still running.
        for pid in self._leftover_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for mount in _mounts_under(self.root):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
        _remove_cgroup_tree(self.cgroup_parent)
        shutil.rmtree(self.root, ignore_errors=True)

    def _leftover_pids(self) -> set[int]:
        pids: set[int] = set()
        for controller in _cgroup_hierarchies():
            top = controller / self.cgroup_parent.lstrip("/")
            for procs in top.rglob("cgroup.procs") if top.exists() else []:
                with contextlib.suppress(OSError):
                    pids.update(int(line) for line in procs.read_text().split())
        marker = str(self.socket).encode()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if marker in (entry / "cmdline").read_bytes():
                        pids.add(int(entry.name))
        pids.discard(os.getpid())
        return pids


def kubelet_pod_labels(name: str, namespace: str, uid: str) -> dict[str, str]:
    return {
        "io.kubernetes.pod.name": name,
        "io.kubernetes.pod.namespace": namespace,
        "io.kubernetes.pod.uid": uid,
    }


def compress_like_kubelet(path: Path) -> Path:
    """gzip `path` to `path.tmp`, rename that to `path.gz`, delete `path` (keeps its mode)."""
    temporary = Path(f"{path}.tmp")
    with open(path, "rb") as source, open(temporary, "wb") as target:
        os.fchmod(target.fileno(), os.stat(path).st_mode & 0o777)
        with gzip.GzipFile(fileobj=target, mode="wb") as compressed:
            shutil.copyfileobj(source, compressed)
    compressed_path = Path(f"{path}.gz")
    os.rename(temporary, compressed_path)
    path.unlink()
    return compressed_path


def _cgroup_hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy (v1 controllers, and the v2 tree when mounted)."""
    found = []
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if fields[2] in ("cgroup", "cgroup2"):
                found.append(Path(fields[1]))
    return found


def _remove_cgroup_tree(parent: str) -> None:
    """`rmdir` the cgroup parent (and any empty child left) in every hierarchy."""
    for hierarchy in _cgroup_hierarchies():
        top = hierarchy / parent.lstrip("/")
        if not top.exists():
            continue
        for directory in sorted(
            (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) + os.sep
    found = []
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            target = line.split()[1].replace("\\040", " ")
            if target.startswith(prefix):
                found.append(target)
    return sorted(found, key=len, reverse=True)  # deepest first


def _host_links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def containerd_missing() -> str | None:
    """Why a private containerd cannot run here, or None."""
    if os.geteuid() != 0:
        return "a private containerd needs root"
    for tool in ("containerd", "ctr", "runc", "containerd-shim-runc-v2"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (scripts/ensure-containerd installs it)"
    if not BUSYBOX.exists():
        return f"{BUSYBOX} is missing (scripts/ensure-containerd installs busybox-static)"
    return None


@pytest.fixture(scope="session")
def private_containerd() -> Iterator[PrivateContainerd]:
    """One private containerd for the whole session, with the busybox image imported.

    Tests share it (a start is cheap, but a session needs only one): each test runs its own
    pods through `cri`, which removes them afterwards.
    """
    reason = containerd_missing()
    if reason is not None:
        pytest.skip(reason)
    links_before = _host_links()
    daemon = PrivateContainerd(Path(tempfile.mkdtemp(prefix="shipper-ctrd-", dir="/tmp")))
    try:
        daemon.start()
        daemon.import_image()
        yield daemon
    finally:
        daemon.teardown()
    assert _host_links() == links_before, "the private containerd changed the host's links"


@pytest.fixture
def cri(private_containerd: PrivateContainerd) -> Iterator[PrivateContainerd]:
    """The session's private containerd; every pod a test ran is removed after it."""
    before = set(private_containerd.pod_ids())
    yield private_containerd
    for pod_id in set(private_containerd.pod_ids()) - before:
        private_containerd.remove_pod(pod_id)
