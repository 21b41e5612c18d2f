"""Small types shared by every stage: a container's metadata (and its Kubernetes pod's), and
one log record.

Imports nothing of ours. `LogRecord` is a NamedTuple rather than a dataclass because one is
created per log line on the hot path, and tuple construction is the cheapest typed option.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

STDOUT = "stdout"
STDERR = "stderr"

COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"
# podman-compose writes both these and Docker's (1.0.3 the project only, later ones both);
# read when Docker's are absent, so the project and service land in the same fields.
PODMAN_COMPOSE_PROJECT_LABEL = "io.podman.compose.project"
PODMAN_COMPOSE_SERVICE_LABEL = "io.podman.compose.service"


@dataclass(frozen=True, slots=True)
class PodMeta:
    """The Kubernetes pod of a container whose logs are read from the CRI log files."""

    namespace: str
    name: str
    uid: str
    container_name: str  # the container's name in the pod spec
    labels: Mapping[str, str] = field(default_factory=dict)  # the pod's own labels
    # The pod's annotations that are shipped (cri.annotations selects them); all of them
    # are the container's (`ContainerMeta.annotations`).
    annotations: Mapping[str, str] = field(default_factory=dict)
    node_name: str = ""  # the node it runs on (NODE_NAME), "" if not known


@dataclass(frozen=True, slots=True)
class ContainerMeta:
    """What the runtime tells about a container, reduced to what we use: Docker's
    `GET /containers/{id}/json`, or the CRI API's answers with the pod's metadata."""

    id: str
    name: str  # without Docker's leading slash
    image: str  # the image reference the container was created with (Config.Image)
    image_id: str = ""  # sha256:... of the image
    labels: Mapping[str, str] = field(default_factory=dict)
    tty: bool = False
    log_driver: str = "json-file"
    log_path: str = ""
    log_opts: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(
        default_factory=dict
    )  # never logged, only allow-listed keys shipped
    created: str = ""
    running: bool = False
    started_at: str = ""  # State.StartedAt of its current (or last) run, RFC 3339
    runtime: str = "docker"  # the engine that runs it, ECS container.runtime: docker | podman
    # The pod's annotations, for a container of a Kubernetes pod read through the CRI (the
    # runtime passes them as kubelet gave them); empty for Docker, which has none.
    annotations: Mapping[str, str] = field(default_factory=dict)
    pod: PodMeta | None = None  # a Kubernetes pod's container read from the CRI log files

    @property
    def hints(self) -> Mapping[str, str]:
        """Where the `shipper.*` hints are read: the container's labels, and on Kubernetes
        its pod's annotations (a pod spec cannot set a container's labels); a label wins."""
        if not self.annotations:
            return self.labels
        return {**self.annotations, **self.labels}

    @property
    def display_name(self) -> str:
        """How people name it: `<namespace>/<pod>/<container>` on Kubernetes, else its name."""
        pod = self.pod
        if pod is None:
            return self.name
        return f"{pod.namespace}/{pod.name}/{pod.container_name}"

    @property
    def compose_project(self) -> str | None:
        return _first_label(self.labels, COMPOSE_PROJECT_LABEL, PODMAN_COMPOSE_PROJECT_LABEL)

    @property
    def compose_service(self) -> str | None:
        return _first_label(self.labels, COMPOSE_SERVICE_LABEL, PODMAN_COMPOSE_SERVICE_LABEL)


def _first_label(labels: Mapping[str, str], *keys: str) -> str | None:
    for key in keys:
        value = labels.get(key)
        if value is not None:
            return value
    return None


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a container's records go: the data stream, and the ingest pipeline that
    Elasticsearch runs on them first (None: only the stream's own default pipeline)."""

    index: str
    pipeline: str | None = None


class LogRecord(NamedTuple):
    """One log event of one container, as it leaves the Docker stage.

    (container_id, timestamp_ns, stream, seq) identifies the line uniquely and is what the
    deterministic Elasticsearch `_id` is derived from. `seq` counts the lines of the same
    container and stream that came before this one with the very same timestamp, so the
    identity is the same whichever way (logs API or json-file) and however often it is read.

    The C hot path (shipper/_native.c) builds and reads these tuples by position, in this
    order of fields: a change here (a field added, removed or moved) must be made there too
    (its RECORD_FIELDS and LAYOUT_VERSION, and shipper/native.py's). Until then
    shipper/native.py refuses the C module at import, and the pure-Python path runs.
    """

    container_id: str
    timestamp_ns: int  # Docker's timestamp, nanoseconds since the Unix epoch, UTC
    stream: str  # STDOUT or STDERR
    seq: int
    message: str  # the line without its trailing newline, decoded as UTF-8
    flags: tuple[str, ...] = ()  # e.g. ("invalid_utf8",), ("truncated",), ("multiline",)
    fields: Mapping[str, Any] | None = None  # extra document fields set by processing stages
    size: int = 0  # bytes Docker delivered for this line (before decoding), for metrics


def record_field(name: str) -> Callable[[LogRecord], Any]:
    """A C-level getter of one `LogRecord` field, for passes over whole batches with `map`:
    several times cheaper per record than a comprehension reading the attribute."""
    return operator.itemgetter(LogRecord._fields.index(name))
