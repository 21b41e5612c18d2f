"""The shipper's read-only CRI client against a real containerd (tests/support/containerd.py):
what it reports of pods and containers is exactly what kubelet's part (the test) created."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from pathlib import Path

import pytest

from shipper.cri.runtime import (
    Container,
    ContainerSummary,
    CriRuntimeClient,
    NotCriV1,
    NotFound,
    Pod,
    RuntimeUnavailable,
    RuntimeVersion,
)
from tests.conftest import TEST_IMAGE
from tests.support import cri_testbed_pb2 as testbed
from tests.support.containerd import CRI_IMAGE, PrivateContainerd, containerd_missing

pytestmark = pytest.mark.containerd


def containerd_version() -> str:
    # "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3"
    return subprocess.run(
        ["containerd", "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[2]


async def test_version_names_the_runtime(private_containerd: PrivateContainerd) -> None:
    async with CriRuntimeClient(str(private_containerd.socket)) as client:
        assert await client.version() == RuntimeVersion("containerd", containerd_version(), "v1")


async def test_pods_and_containers_are_reported_exactly(cri: PrivateContainerd) -> None:
    web_labels = {"app": "web", "pod-template-hash": "7d4b9", "app.kubernetes.io/part-of": "shop"}
    web_annotations = {"shipper.multiline.pattern": "^\\S", "kubernetes.io/config.source": "api"}
    web = cri.run_pod("web-7d4b9", namespace="shop", labels=web_labels, annotations=web_annotations)
    worker = cri.run_pod("worker-0", namespace="jobs", labels={"app": "worker"})
    main = cri.create_container(web, "main", ["sleep", "60"], annotations={"note": "a=b c"})
    sidecar = cri.create_container(web, "sidecar", ["sh", "-c", "echo done"], attempt=2)
    job = cri.create_container(worker, "job", ["sleep", "60"])
    cri.wait_exited(sidecar)

    async with CriRuntimeClient(str(cri.socket)) as client:
        pods = {pod.id: pod for pod in await client.list_pods()}
        summaries = {c.id: c for c in await client.list_containers()}
        web_status = await client.pod(web.id)
        main_full = await client.container(main.id)
        sidecar_full = await client.container(sidecar.id)
        of_worker = await client.list_containers(pod_sandbox_id=worker.id)
        running = await client.list_containers(running_only=True)
        ready = await client.list_pods(ready_only=True)
        by_uid = await client.list_pods(label_selector={"io.kubernetes.pod.uid": web.uid})
        by_name = await client.list_containers(
            label_selector={"io.kubernetes.container.name": "main"}
        )

    assert set(pods) == {web.id, worker.id}
    listed_web = pods[web.id]
    # As kubelet makes them: the pod's labels plus its name, namespace and uid.
    kubelet_pod_labels = {
        "io.kubernetes.pod.name": "web-7d4b9",
        "io.kubernetes.pod.namespace": "shop",
        "io.kubernetes.pod.uid": web.uid,
    }
    assert listed_web == Pod(
        id=web.id,
        uid=web.uid,
        namespace="shop",
        name="web-7d4b9",
        attempt=0,
        state="ready",
        created_at_ns=listed_web.created_at_ns,
        labels={**web_labels, **kubelet_pod_labels},
        annotations=web_annotations,
        log_directory=None,  # ListPodSandbox does not tell
    )
    assert listed_web.pod_labels == web_labels
    assert listed_web.created_at_ns > 0
    # PodSandboxStatus: the same, and containerd tells the log directory.
    assert web_status == Pod(**{**_fields(listed_web), "log_directory": str(web.log_directory)})
    assert web.log_directory.name == f"shop_web-7d4b9_{web.uid}"
    assert pods[worker.id].pod_labels == {"app": "worker"}
    assert pods[worker.id].annotations == {}
    assert {pod.id for pod in ready} == {web.id, worker.id}
    assert by_uid == [listed_web]

    assert set(summaries) == {main.id, sidecar.id, job.id}
    main_labels = {**kubelet_pod_labels, "io.kubernetes.container.name": "main"}
    main_annotations = {"note": "a=b c", "io.kubernetes.container.restartCount": "0"}
    assert summaries[main.id] == ContainerSummary(
        id=main.id,
        pod_sandbox_id=web.id,
        name="main",
        attempt=0,
        state="running",
        created_at_ns=summaries[main.id].created_at_ns,
        image_ref=cri.image_id,
        labels=main_labels,
        annotations=main_annotations,
    )
    assert summaries[sidecar.id].state == "exited"
    assert summaries[sidecar.id].attempt == 2
    assert [c.id for c in of_worker] == [job.id]
    assert {c.id for c in running} == {main.id, job.id}
    assert [c.id for c in by_name] == [main.id]

    assert main_full == Container(
        id=main.id,
        pod_sandbox_id=web.id,
        name="main",
        attempt=0,
        state="running",
        created_at_ns=summaries[main.id].created_at_ns,
        started_at_ns=main_full.started_at_ns,
        finished_at_ns=0,
        exit_code=0,
        # Created with the image id, as kubelet does: the name comes from ContainerStatus.
        image_name=CRI_IMAGE,
        image_ref=cri.image_id,
        labels=main_labels,
        annotations=main_annotations,
        log_path=str(web.log_directory / "main" / "0.log"),
    )
    assert main_full.started_at_ns >= main_full.created_at_ns > 0
    assert sidecar_full.state == "exited"
    assert sidecar_full.exit_code == 0
    # Both set, but not necessarily in order: containerd stamps started_at once its start
    # call returns, finished_at from the exit event, and `echo` can be quicker than that.
    assert sidecar_full.started_at_ns > 0
    assert sidecar_full.finished_at_ns >= sidecar_full.created_at_ns
    assert sidecar_full.log_path == str(web.log_directory / "sidecar" / "2.log")
    assert Path(sidecar_full.log_path).read_bytes().endswith(b" stdout F done\n")


async def test_a_removed_pod_is_gone(cri: PrivateContainerd) -> None:
    kept = cri.run_pod("kept")
    removed = cri.run_pod("removed")
    container = cri.create_container(removed, "main", ["sleep", "60"])
    async with CriRuntimeClient(str(cri.socket)) as client:
        assert {pod.id for pod in await client.list_pods()} == {kept.id, removed.id}
        # Kubelet stops a deleted pod's sandbox first: it is listed, not ready.
        await asyncio.to_thread(
            cri.call,
            "RuntimeService/StopPodSandbox",
            testbed.StopPodSandboxRequest(pod_sandbox_id=removed.id),
            testbed.StopPodSandboxResponse,
        )
        assert (await client.pod(removed.id)).state == "notready"
        assert (await client.container(container.id)).state == "exited"
        assert [pod.id for pod in await client.list_pods(ready_only=True)] == [kept.id]
        cri.remove_pod(removed.id)
        assert [pod.id for pod in await client.list_pods()] == [kept.id]
        assert await client.list_containers() == []
        with pytest.raises(NotFound):
            await client.pod(removed.id)
        with pytest.raises(NotFound, match=container.id):
            await client.container(container.id)
    # What the runtime wrote stays: kubelet, not the runtime, deletes log directories.
    assert container.log_path.exists()


async def test_a_missing_socket_is_transient(tmp_path: Path) -> None:
    socket_path = tmp_path / "containerd.sock"
    async with CriRuntimeClient(str(socket_path), timeout_s=5) as client:
        with pytest.raises(RuntimeUnavailable, match=f"{socket_path} does not exist"):
            await client.version()
        with pytest.raises(RuntimeUnavailable):
            await client.list_pods()


async def test_containerd_without_its_cri_plugin_is_named() -> None:
    """Docker's own containerd runs without the CRI plugin: say so, not "unavailable"."""
    reason = containerd_missing()
    if reason is not None:
        pytest.skip(reason)
    daemon = PrivateContainerd(
        Path(tempfile.mkdtemp(prefix="shipper-ctrd-", dir="/tmp")), cri=False
    )
    try:
        await asyncio.to_thread(daemon.start)
        async with CriRuntimeClient(str(daemon.socket)) as client:
            with pytest.raises(NotCriV1) as raised:
                await client.version()
    finally:
        await asyncio.to_thread(daemon.teardown)
    assert str(raised.value) == (
        f"the CRI socket {daemon.socket} does not implement "
        "/runtime.v1.RuntimeService/Version "
        "(it answered: unknown service runtime.v1.RuntimeService)"
    )


@pytest.mark.docker
async def test_the_docker_socket_is_not_a_cri_runtime(docker_client: object) -> None:
    async with CriRuntimeClient("/var/run/docker.sock", timeout_s=5) as client:
        with pytest.raises(NotCriV1, match=r"/var/run/docker\.sock is not a gRPC server"):
            await client.version()


@pytest.mark.docker
async def test_the_test_bed_leaves_the_system_docker_alone(
    cri: PrivateContainerd, docker_client: object
) -> None:
    """The private containerd runs in the host's network namespace (host-network pods need
    no CNI); the shared Docker daemon and its own containerd must go on working meanwhile."""
    pod = cri.run_pod("beside-docker")
    cri.create_container(pod, "main", ["sleep", "60"])
    result = await asyncio.to_thread(
        subprocess.run,
        ["docker", "run", "--rm", "--network", "none", TEST_IMAGE, "echo", "ok"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, b"ok\n"), result.stderr


def _fields(pod: Pod) -> dict[str, object]:
    return {name: getattr(pod, name) for name in Pod.__dataclass_fields__}
