"""Which engine serves the Docker Engine API, and how its logs API differs (pure, no I/O).

Docker and Podman both serve the Docker Engine API; the shipper reads the same endpoints
from both, except where Podman's answers differ in a way that matters to it (checked against
Podman 4.3's service and its source, `pkg/api/handlers/compat/`; docs/podman.md has the list
with the evidence):

* **Logs endpoint.** For a TTY container the compatible endpoint sends Podman's messages
  unframed, and a message that does not end a line is followed by the next message's
  timestamp with nothing in between, which no parser can tell from text the program wrote.
  Podman's own endpoint (`/v4.0.0/libpod/containers/{id}/logs`, the same handler and the
  same body otherwise) frames every message, TTY or not: the shipper reads that one.
* **`since` is exclusive** (a line is sent if its time is *after* `since`; Docker: at or
  after), and given as a Unix time it is parsed as a float, to ~0.2 µs. So Podman gets
  `since` as RFC 3339 with nine digits, one nanosecond before the position: exactly the lines
  stamped at or after it, as Docker's `since` gives them.
* **Split lines.** conmon reads a container's output in chunks (8 KiB, 4 KiB on a TTY) and
  stamps each chunk when it reads it, so the parts of a long line, or of a line written in
  pieces, carry different timestamps; Docker stamps every part with the first part's time.
  See `shipper.docker.frames.PODMAN_STREAM`.
* **A driver that keeps no logs** (`none`, `passthrough`) is answered `500` with the cause
  "this container is not logging output" (Docker: `501`).
* **Timestamps** in the logs API have one-second precision up to Podman 5.7 (Go's RFC 3339;
  the k8s-file log itself has nanoseconds), nine digits from Podman 5.8 on. Identity and
  resume are exact either way (see docs/podman.md); `@timestamp` is what the API sends.

Detected from `GET /version`, which the client asks at every (re)connection to negotiate
the API version (`shipper.docker.versions`): Podman lists a component named "Podman Engine";
Docker lists "Engine".
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from shipper.docker.frames import DOCKER_STREAM, PODMAN_STREAM, StreamDialect
from shipper.lines.timestamps import format_timestamp

DOCKER: Final = "docker"
PODMAN: Final = "podman"

# Podman's own API is versioned by Podman's release; 4.0.0 is the oldest its v4 and v5
# services serve, and every logs parameter used here exists there.
_PODMAN_LOGS_PATH = "/v4.0.0/libpod/containers/{}/logs"


def runtime_of(version: Mapping[str, Any]) -> str:
    """DOCKER or PODMAN, from the body of `GET /version` (ECS `container.runtime`)."""
    for component in version.get("Components") or ():
        name = str((component or {}).get("Name") or "")
        if "podman" in name.lower():
            return PODMAN
    return DOCKER


def stream_dialect(runtime: str) -> StreamDialect:
    """How the body of `logs_request`'s answer is laid out."""
    return PODMAN_STREAM if runtime == PODMAN else DOCKER_STREAM


@dataclass(frozen=True, slots=True)
class LogsRequest:
    path: str
    params: dict[str, str]
    versioned: bool  # whether the client puts its Engine API version before `path`


def logs_request(runtime: str, container_id: str, *, since_ns: int, follow: bool) -> LogsRequest:
    """The logs request of this engine for lines stamped at or after `since_ns` (0: all)."""
    params = {
        "follow": "1" if follow else "0",
        "stdout": "1",
        "stderr": "1",
        "timestamps": "1",
    }
    if runtime == PODMAN:
        if since_ns > 0:
            # Exclusive, and parsed exactly only as RFC 3339 (see the module docstring).
            params["since"] = format_timestamp(since_ns - 1)
        return LogsRequest(_PODMAN_LOGS_PATH.format(quote(container_id)), params, False)
    if since_ns > 0:
        seconds, nanos = divmod(since_ns, 1_000_000_000)
        params["since"] = f"{seconds}.{nanos:09d}"
    return LogsRequest(f"/containers/{quote(container_id)}/logs", params, True)


# Podman's define.ErrNoLogs, the cause of its 500 for a container whose driver keeps no logs.
_PODMAN_NO_LOGS = "this container is not logging output"


def keeps_no_logs(status: int, body: str) -> bool:
    """Whether a logs request's error says the container's driver keeps no readable logs:
    Docker answers 501 (`none`, or a driver without dual logging), Podman 500 with its cause."""
    return status == 501 or (status == 500 and _PODMAN_NO_LOGS in body)


def containers_path_of(info: Mapping[str, Any]) -> str | None:
    """Where the engine keeps its containers' directories (`/info`'s DockerRootDir +
    /containers), as the host sees it; None when it does not say."""
    root = str(info.get("DockerRootDir") or "")
    return os.path.join(root, "containers") if root else None
