"""The CRI client: only read calls exist in shipper/, and each failure is classified once.

The behaviour against a real runtime is in tests/integration/test_cri_runtime.py; here the
peers are small servers on unix sockets standing in for what a real one cannot easily be
made to do (never answer, speak only the old v1alpha2 API, answer HTTP/1).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import grpc.aio
import pytest

from shipper.cri import runtime as runtime_module
from shipper.cri import runtime_v1_pb2 as api
from shipper.cri.runtime import (
    READ_METHODS,
    Container,
    CriRuntimeClient,
    NotCriV1,
    Pod,
    RuntimeUnavailable,
    _image_name,
    _log_directory_of,
)

SHIPPER = Path(runtime_module.__file__).resolve().parents[1]
READ_ONLY_CRI_CALLS = {"Version", "ListPodSandbox", "PodSandboxStatus", "ListContainers"} | {
    "ContainerStatus"
}


def test_only_read_only_calls_are_named_anywhere_in_the_shipper() -> None:
    named: set[tuple[str, str, str]] = set()
    for path in SHIPPER.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".pyi", ".proto", ".c"):
            text = path.read_text(errors="replace")
            for match in re.finditer(r"runtime\.(v1\w*)\.(\w+Service)/(\w+)", text):
                named.add((match[1], match[2], match[3]))
    assert named, "the scan found no CRI method path at all"
    assert {(service, call) for _, service, call in named} <= {
        ("RuntimeService", call) for call in READ_ONLY_CRI_CALLS
    }
    expected = {f"/runtime.v1.RuntimeService/{call}" for call in READ_ONLY_CRI_CALLS}
    expected.add("/runtime.v1alpha2.RuntimeService/Version")
    assert set(READ_METHODS) == expected
    # The proto's service (documentation of what we call) declares the same and no more.
    service = api.DESCRIPTOR.services_by_name["RuntimeService"]
    assert {method.name for method in service.methods} == READ_ONLY_CRI_CALLS


def test_no_generic_door_to_the_runtime_exists() -> None:
    """No generated service stub (it would offer every call) and one place that calls."""
    callers = []
    for path in SHIPPER.rglob("*.py"):
        text = path.read_text()
        assert "_pb2_grpc" not in text, path
        assert not re.search(r"\b(unary_stream|stream_unary|stream_stream)\(", text), path
        if re.search(r"\bunary_unary\(", text):
            callers.append(path.relative_to(SHIPPER).as_posix())
    assert callers == ["cri/runtime.py"]


async def test_a_write_call_is_refused_before_reaching_the_socket(tmp_path: Path) -> None:
    async with CriRuntimeClient(str(tmp_path / "absent.sock")) as client:
        with pytest.raises(ValueError, match="RemoveContainer is not a read-only CRI call"):
            await client._call(
                "/runtime.v1.RuntimeService/RemoveContainer",
                api.ContainerStatusRequest(container_id="x"),
                api.ContainerStatusResponse,
            )


async def test_a_runtime_that_never_answers_times_out(tmp_path: Path) -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # takes the client's bytes until it hangs up

    async with (
        unix_server(tmp_path / "silent.sock", never_answer) as socket_path,
        CriRuntimeClient(socket_path, timeout_s=0.3) as client,
    ):
        started = asyncio.get_running_loop().time()
        with pytest.raises(RuntimeUnavailable, match=r"did not answer .*Version in 0\.3 s"):
            await client.version()
        assert asyncio.get_running_loop().time() - started < 2


async def test_an_http1_server_is_not_a_cri_runtime(tmp_path: Path) -> None:
    """Docker's API socket, for instance (tests/integration/test_cri_runtime.py asks it)."""

    async def answer_http1(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()

    async with (
        unix_server(tmp_path / "http.sock", answer_http1) as socket_path,
        CriRuntimeClient(socket_path, timeout_s=5) as client,
    ):
        with pytest.raises(NotCriV1, match=f"{socket_path} is not a gRPC server"):
            await client.version()


async def test_a_runtime_speaking_only_v1alpha2_is_named(fake_runtime: FakeRuntime) -> None:
    """containerd 1.5 and CRI-O 1.22 offer only runtime.v1alpha2: say which runtime it is."""
    socket_path = await fake_runtime({"runtime.v1alpha2.RuntimeService": ("1.5.18", "v1alpha2")})
    async with CriRuntimeClient(socket_path) as client:
        with pytest.raises(NotCriV1) as raised:
            await client.version()
    assert str(raised.value) == (
        f"the CRI socket {socket_path} does not implement /runtime.v1.RuntimeService/Version "
        "(it answered: Method not found!); it speaks only CRI v1alpha2: containerd 1.5.18 is "
        "too old (containerd 1.6 or CRI-O 1.23 needed)"
    )


async def test_a_v1_service_answering_another_api_version_is_refused(
    fake_runtime: FakeRuntime,
) -> None:
    socket_path = await fake_runtime({"runtime.v1.RuntimeService": ("9.9", "v2")})
    async with CriRuntimeClient(socket_path) as client:
        with pytest.raises(NotCriV1, match=r"\(containerd 9\.9\) answered .* version 'v2'"):
            await client.version()


def test_image_name_prefers_a_name_to_an_id() -> None:
    digest = "sha256:" + "ab" * 32
    name = "docker.io/library/nginx:1.25"
    spec = api.ImageSpec
    # containerd 1.6: ContainerStatus has the tag, ListContainers the id kubelet passed.
    assert _image_name(spec(image=name), spec(image=digest)) == name
    # The image was removed from the node: only the id is left, unless the runtime echoes
    # the pod spec's name (kubelet 1.30+ sends it).
    assert _image_name(spec(image=digest), spec(image=digest)) == digest
    assert _image_name(spec(image=digest, user_specified_image=name), spec(image=digest)) == name
    assert _image_name(spec(), spec(image=digest, user_specified_image=name)) == name
    assert _image_name(spec(), spec()) == ""


def test_kubelets_own_labels_are_left_to_the_kubernetes_fields() -> None:
    kubelet = {
        "io.kubernetes.pod.name": "web-7d9",
        "io.kubernetes.pod.namespace": "shop",
        "io.kubernetes.pod.uid": "0d1e2f30",
        "io.kubernetes.container.name": "main",
    }
    container = Container(
        id="c" * 64,
        pod_sandbox_id="p" * 64,
        name="main",
        attempt=0,
        state="running",
        created_at_ns=1,
        started_at_ns=2,
        finished_at_ns=0,
        exit_code=0,
        image_name="docker.io/library/nginx:1.25",
        image_ref="sha256:" + "ab" * 32,
        labels={**kubelet, "team": "shop", "io.kubernetes.other": "kept"},
        annotations={},
        log_path="/var/log/pods/shop_web-7d9_0d1e2f30/main/0.log",
    )
    assert container.own_labels == {"team": "shop", "io.kubernetes.other": "kept"}
    pod = Pod(
        id="p" * 64,
        name="web-7d9",
        namespace="shop",
        uid="0d1e2f30",
        attempt=0,
        state="ready",
        created_at_ns=1,
        labels={**kubelet, "app": "web"},
        annotations={},
        log_directory=None,
    )
    # A sandbox carries no container name label; a pod label of that name would stay.
    assert pod.pod_labels == {"app": "web", "io.kubernetes.container.name": "main"}


def test_log_directory_comes_from_containerd_verbose_info() -> None:
    containerd = '{"pid": 1, "config": {"log_directory": "/var/log/pods/ns_p_u", "labels": {}}}'
    assert _log_directory_of({"info": containerd}) == "/var/log/pods/ns_p_u"
    assert _log_directory_of({}) is None  # not verbose, or a runtime that keeps it to itself
    assert _log_directory_of({"info": '{"runtimeSpec": {}}'}) is None
    assert _log_directory_of({"info": '{"config": {"log_directory": ""}}'}) is None
    assert _log_directory_of({"info": "not json"}) is None
    assert _log_directory_of({"info": "[1]"}) is None


@contextlib.asynccontextmanager
async def unix_server(
    path: Path,
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A plain stream server on a unix socket; every connection is closed on exit."""
    writers: list[asyncio.StreamWriter] = []

    async def handle_and_keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await handle(reader, writer)

    server = await asyncio.start_unix_server(handle_and_keep, path=str(path))
    try:
        yield str(path)
    finally:
        server.close()
        for writer in writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await server.wait_closed()


FakeRuntime = Callable[[dict[str, tuple[str, str]]], Awaitable[str]]


@pytest.fixture
async def fake_runtime(tmp_path: Path) -> AsyncIterator[FakeRuntime]:
    """Starts a gRPC server whose given services answer Version(version, api_version) as
    "containerd"; returns its socket path."""
    servers: list[grpc.aio.Server] = []

    async def start(services: dict[str, tuple[str, str]]) -> str:
        server = grpc.aio.server()
        for service, (version, api_version) in services.items():
            response = api.VersionResponse(
                version="0.1.0",
                runtime_name="containerd",
                runtime_version=version,
                runtime_api_version=api_version,
            )
            handler = grpc.unary_unary_rpc_method_handler(
                _answer(response),
                request_deserializer=api.VersionRequest.FromString,
                response_serializer=api.VersionResponse.SerializeToString,
            )
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service, {"Version": handler}),)
            )
        socket_path = str(tmp_path / f"fake-{len(servers)}.sock")
        server.add_insecure_port(f"unix://{socket_path}")
        await server.start()
        servers.append(server)
        return socket_path

    yield start
    for server in servers:
        await server.stop(None)


def _answer(
    response: api.VersionResponse,
) -> Callable[[api.VersionRequest, object], Awaitable[api.VersionResponse]]:
    async def version(request: api.VersionRequest, context: object) -> api.VersionResponse:
        return response

    return version
