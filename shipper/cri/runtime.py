"""Async, read-only client of a container runtime's CRI API (`runtime.v1.RuntimeService`).

On a Kubernetes node the runtime (containerd, CRI-O) answers kubelet's gRPC calls on a unix
socket. The shipper asks it only what the log files' paths do not tell: a pod's labels and
annotations, a container's id and image. Only the read calls below exist here, on purpose,
as in shipper/docker/api.py: each method is named once in READ_METHODS, called through
`channel.unary_unary(path)` (no generated service stub, which would offer every call), and
tests/unit/test_cri_runtime.py checks that no other method path appears anywhere in shipper/.

Errors are classified once: a socket that is missing, refuses, or does not answer in time is
`RuntimeUnavailable` (transient: the runtime may be restarting); a peer that is not a CRI v1
runtime is `NotCriV1` (permanent, naming what it answered); an id the runtime does not know
is `NotFound` (permanent: the pod or container is gone). Every call has a timeout.

The messages are our subset of kubernetes/cri-api (shipper/cri/runtime_v1.proto, generated
into runtime_v1_pb2 by scripts/generate-cri-protos).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message

from shipper.cri import runtime_v1_pb2 as api
from shipper.errors import PermanentError, TransientError

CONTAINERD_SOCKET: Final = "/run/containerd/containerd.sock"
CRIO_SOCKET: Final = "/var/run/crio/crio.sock"
DEFAULT_SOCKETS: Final = (CONTAINERD_SOCKET, CRIO_SOCKET)
DEFAULT_TIMEOUT_S: Final = 10.0
# What kubelet allows (pkg/kubelet/cri/remote: maxMsgSize): a node's container list can be
# larger than gRPC's default 4 MiB.
MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024

VERSION: Final = "/runtime.v1.RuntimeService/Version"
LIST_POD_SANDBOX: Final = "/runtime.v1.RuntimeService/ListPodSandbox"
POD_SANDBOX_STATUS: Final = "/runtime.v1.RuntimeService/PodSandboxStatus"
LIST_CONTAINERS: Final = "/runtime.v1.RuntimeService/ListContainers"
CONTAINER_STATUS: Final = "/runtime.v1.RuntimeService/ContainerStatus"
# Asked only after runtime.v1 was refused, to say which older API the runtime speaks instead
# (containerd < 1.6 and CRI-O < 1.23 offer only v1alpha2; its Version messages are the same).
VERSION_V1ALPHA2: Final = "/runtime.v1alpha2.RuntimeService/Version"

READ_METHODS: Final = frozenset(
    {VERSION, LIST_POD_SANDBOX, POD_SANDBOX_STATUS, LIST_CONTAINERS, CONTAINER_STATUS}
    | {VERSION_V1ALPHA2}
)

# Kubelet labels every sandbox with the pod's own labels plus these three, and every
# container with these and io.kubernetes.container.name only (pkg/kubelet/kuberuntime/
# labels.go); a pod's annotations are passed as they are.
KUBELET_POD_LABELS: Final = frozenset(
    {"io.kubernetes.pod.name", "io.kubernetes.pod.namespace", "io.kubernetes.pod.uid"}
)
KUBELET_CONTAINER_LABELS: Final = KUBELET_POD_LABELS | {"io.kubernetes.container.name"}

_POD_STATES: Final = {api.SANDBOX_READY: "ready", api.SANDBOX_NOTREADY: "notready"}
_CONTAINER_STATES: Final = {
    api.CONTAINER_CREATED: "created",
    api.CONTAINER_RUNNING: "running",
    api.CONTAINER_EXITED: "exited",
    api.CONTAINER_UNKNOWN: "unknown",
}

_Response = TypeVar("_Response", bound=Message)


class RuntimeUnavailable(TransientError):
    """The runtime's socket is missing, refuses, or did not answer in time."""


class NotCriV1(PermanentError):
    """Something answers on the socket, but not the CRI `runtime.v1` API."""


class NotFound(PermanentError):
    """The runtime knows no pod or container with that id (any more)."""


@dataclass(frozen=True, slots=True)
class RuntimeVersion:
    name: str  # "containerd", "cri-o"
    version: str  # the runtime's own version, e.g. "1.6.20~ds1"
    api_version: str  # the CRI version it speaks, "v1"


@dataclass(frozen=True, slots=True)
class Pod:
    """A pod sandbox. `labels` and `annotations` are the pod's, as kubelet passed them."""

    id: str  # the sandbox id (not the pod's uid)
    uid: str
    namespace: str
    name: str
    attempt: int  # sandbox attempt: kubelet makes a new sandbox when one dies
    state: str  # "ready" | "notready"
    created_at_ns: int
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    # From PodSandboxStatus where the runtime reports it (containerd: its verbose info holds
    # the sandbox config); None from ListPodSandbox, or when the runtime does not say.
    # Kubelet's layout gives it anyway: <pods log root>/<namespace>_<name>_<uid>.
    log_directory: str | None

    @property
    def pod_labels(self) -> dict[str, str]:
        """The pod's own labels: the sandbox's without the three kubelet adds."""
        return {k: v for k, v in self.labels.items() if k not in KUBELET_POD_LABELS}


@dataclass(frozen=True, slots=True)
class ContainerSummary:
    """A container as ListContainers gives it (no log path, no image name)."""

    id: str
    pod_sandbox_id: str
    name: str
    attempt: int  # the restart count: the log file is <name>/<attempt>.log
    state: str  # "created" | "running" | "exited" | "unknown"
    created_at_ns: int
    image_ref: str  # the image in use, a digest reference or image id
    labels: Mapping[str, str]
    annotations: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Container:
    """A container with everything the shipper ships about it (ListContainers for its pod,
    ContainerStatus for its image name and log path)."""

    id: str
    pod_sandbox_id: str
    name: str
    attempt: int
    state: str  # "created" | "running" | "exited" | "unknown"
    created_at_ns: int
    started_at_ns: int  # 0 before it started
    finished_at_ns: int  # 0 while it runs
    exit_code: int
    image_name: str  # e.g. "docker.io/library/nginx:1.25" (an id if the runtime knows no name)
    image_ref: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    log_path: str  # the host path of its CRI log file

    @property
    def own_labels(self) -> dict[str, str]:
        """The container's labels without the four kubelet adds: the `kubernetes.*` fields
        carry those, and shipping them again as `container.labels` cost 170 of a document's
        944 bytes (measured), each encoded, buffered, compressed and indexed."""
        return {k: v for k, v in self.labels.items() if k not in KUBELET_CONTAINER_LABELS}


class CriRuntimeClient:
    """The few read-only CRI calls the shipper needs, over one gRPC channel.

    Create it inside the running event loop (grpc.aio binds the channel to it); `close()`
    when done, or use it as an async context manager.
    """

    def __init__(self, socket_path: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.socket_path = socket_path
        self._timeout_s = timeout_s
        self._channel = grpc.aio.insecure_channel(
            f"unix://{socket_path}",
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                # One runtime, one socket: a broken connection is retried by the next call,
                # whose timeout bounds it; no exponential reconnect delay beyond that.
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ],
        )

    async def __aenter__(self) -> CriRuntimeClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def version(self) -> RuntimeVersion:
        """Names the runtime; raises NotCriV1 if it does not speak runtime.v1."""
        request = api.VersionRequest(version="v1")
        try:
            response = await self._call(VERSION, request, api.VersionResponse)
        except NotCriV1 as exc:
            raise NotCriV1(f"{exc}{await self._older_api_hint()}") from None
        if response.runtime_api_version != "v1":
            raise NotCriV1(
                f"the runtime at {self.socket_path} ({response.runtime_name} "
                f"{response.runtime_version}) answered runtime.v1 Version with API version "
                f"{response.runtime_api_version!r}, not 'v1'"
            )
        return RuntimeVersion(
            response.runtime_name, response.runtime_version, response.runtime_api_version
        )

    async def list_pods(
        self, *, ready_only: bool = False, label_selector: Mapping[str, str] | None = None
    ) -> list[Pod]:
        """Every pod sandbox, or those matching all of `label_selector` (the runtime filters;
        {"io.kubernetes.pod.uid": uid} finds a pod by the uid in its log directory's name)."""
        request = api.ListPodSandboxRequest()
        if ready_only:
            request.filter.state.state = api.SANDBOX_READY
        if label_selector:
            request.filter.label_selector.update(label_selector)
        response = await self._call(LIST_POD_SANDBOX, request, api.ListPodSandboxResponse)
        return [
            _pod(item.id, item.metadata, item.state, item.created_at, item.labels, item.annotations)
            for item in response.items
        ]

    async def pod(self, pod_id: str) -> Pod:
        """PodSandboxStatus; verbose, because containerd reports the log directory only so."""
        request = api.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True)
        response = await self._call(POD_SANDBOX_STATUS, request, api.PodSandboxStatusResponse)
        status = response.status
        return _pod(
            status.id,
            status.metadata,
            status.state,
            status.created_at,
            status.labels,
            status.annotations,
            log_directory=_log_directory_of(response.info),
        )

    async def list_containers(
        self,
        *,
        pod_sandbox_id: str = "",
        running_only: bool = False,
        label_selector: Mapping[str, str] | None = None,
    ) -> list[ContainerSummary]:
        request = api.ListContainersRequest()
        if pod_sandbox_id:
            request.filter.pod_sandbox_id = pod_sandbox_id
        if running_only:
            request.filter.state.state = api.CONTAINER_RUNNING
        if label_selector:
            request.filter.label_selector.update(label_selector)
        response = await self._call(LIST_CONTAINERS, request, api.ListContainersResponse)
        return [_container_summary(item) for item in response.containers]

    async def container(self, container_id: str) -> Container:
        """ListContainers (for its pod) and ContainerStatus (image name, log path)."""
        request = api.ListContainersRequest(filter=api.ContainerFilter(id=container_id))
        listed = await self._call(LIST_CONTAINERS, request, api.ListContainersResponse)
        summaries = [item for item in listed.containers if item.id == container_id]
        if not summaries:
            raise NotFound(f"the runtime knows no container {container_id}")
        summary = summaries[0]
        status_request = api.ContainerStatusRequest(container_id=container_id)
        status = (
            await self._call(CONTAINER_STATUS, status_request, api.ContainerStatusResponse)
        ).status
        return Container(
            id=summary.id,
            pod_sandbox_id=summary.pod_sandbox_id,
            name=status.metadata.name,
            attempt=status.metadata.attempt,
            state=_CONTAINER_STATES.get(status.state, "unknown"),
            created_at_ns=status.created_at,
            started_at_ns=status.started_at,
            finished_at_ns=status.finished_at,
            exit_code=status.exit_code,
            image_name=_image_name(status.image, summary.image),
            image_ref=status.image_ref,
            labels=dict(status.labels),
            annotations=dict(status.annotations),
            log_path=status.log_path,
        )

    async def container_state(self, container_id: str) -> str:
        """ContainerStatus alone: "created" | "running" | "exited" | "unknown"."""
        request = api.ContainerStatusRequest(container_id=container_id)
        status = (await self._call(CONTAINER_STATUS, request, api.ContainerStatusResponse)).status
        return _CONTAINER_STATES.get(status.state, "unknown")

    # -- plumbing ------------------------------------------------------------------------------

    async def _call(
        self, method: str, request: Message, response_type: type[_Response]
    ) -> _Response:
        if method not in READ_METHODS:  # the one door to the runtime: reads only
            raise ValueError(f"{method} is not a read-only CRI call")
        call = self._channel.unary_unary(
            method,
            request_serializer=_serialize,
            response_deserializer=response_type.FromString,
        )
        try:
            return await call(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise self._classify(method, exc) from None

    def _classify(self, method: str, exc: grpc.aio.AioRpcError) -> Exception:
        code, details = exc.code(), exc.details() or ""
        where = f"the CRI socket {self.socket_path}"
        if code == grpc.StatusCode.NOT_FOUND:
            return NotFound(f"{method}: {details}")
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return NotCriV1(f"{where} does not implement {method} (it answered: {details})")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return RuntimeUnavailable(f"{where} did not answer {method} in {self._timeout_s} s")
        if code == grpc.StatusCode.UNAVAILABLE:
            if not os.path.exists(self.socket_path):
                return RuntimeUnavailable(f"{where} does not exist (is the runtime running?)")
            if "http1" in details.lower() or "http/1" in details.lower():
                # Docker's API socket, for instance, answers HTTP/1.1.
                return NotCriV1(f"{where} is not a gRPC server (it answered: {details})")
            return RuntimeUnavailable(f"{where} is unavailable: {details}")
        return RuntimeUnavailable(f"{method} on {where} failed: {code.name} {details}")

    async def _older_api_hint(self) -> str:
        """What the runtime answers to v1alpha2 Version, as a sentence, or nothing."""
        try:
            old = await self._call(VERSION_V1ALPHA2, api.VersionRequest(), api.VersionResponse)
        except (NotCriV1, NotFound, RuntimeUnavailable):
            return ""
        return (
            f"; it speaks only CRI {old.runtime_api_version}: {old.runtime_name} "
            f"{old.runtime_version} is too old (containerd 1.6 or CRI-O 1.23 needed)"
        )


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def _pod(
    pod_id: str,
    metadata: api.PodSandboxMetadata,
    state: api.PodSandboxState,
    created_at_ns: int,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    *,
    log_directory: str | None = None,
) -> Pod:
    return Pod(
        id=pod_id,
        uid=metadata.uid,
        namespace=metadata.namespace,
        name=metadata.name,
        attempt=metadata.attempt,
        state=_POD_STATES.get(state, "notready"),
        created_at_ns=created_at_ns,
        labels=dict(labels),
        annotations=dict(annotations),
        log_directory=log_directory,
    )


def _container_summary(item: api.Container) -> ContainerSummary:
    return ContainerSummary(
        id=item.id,
        pod_sandbox_id=item.pod_sandbox_id,
        name=item.metadata.name,
        attempt=item.metadata.attempt,
        state=_CONTAINER_STATES.get(item.state, "unknown"),
        created_at_ns=item.created_at,
        image_ref=item.image_ref,
        labels=dict(item.labels),
        annotations=dict(item.annotations),
    )


def _image_name(status_image: api.ImageSpec, listed_image: api.ImageSpec) -> str:
    """The image's name, not its id, where the runtime gives one.

    Kubelet creates containers with the image *id*, so ListContainers returns the id;
    ContainerStatus returns the image's first tag while the image exists (containerd), and
    newer runtimes echo the name from the pod spec (user_specified_image).
    """
    for candidate in (
        status_image.image,
        status_image.user_specified_image,
        listed_image.user_specified_image,
    ):
        if candidate and not candidate.startswith("sha256:"):
            return candidate
    return status_image.image or listed_image.image


def _log_directory_of(info: Mapping[str, str]) -> str | None:
    """containerd's verbose PodSandboxStatus: info["info"] is JSON holding the sandbox config."""
    raw = info.get("info")
    if not raw:
        return None
    try:
        config = json.loads(raw).get("config") or {}
    except (ValueError, AttributeError):
        return None
    directory = config.get("log_directory") if isinstance(config, dict) else None
    return directory if isinstance(directory, str) and directory else None
