"""Which source reads the containers' logs: Docker's API, or the CRI log files (`source`).

`source: docker` and `source: cri` are taken as they are. `auto` asks what is there, in this
order, and says why it chose what it chose (the start log prints it):

1. a CRI socket (`cri.socket`, or containerd's then CRI-O's default path) that answers the
   CRI `runtime.v1` API: a Kubernetes node on containerd or CRI-O → `cri`;
2. else the Docker API (`docker.host`) answers → `docker`;
3. else a CRI socket exists (its runtime may be starting) and kubelet's log directory too →
   `cri`;
4. else `docker`, which waits for its daemon as it always has.

Docker's own containerd (`/run/containerd/containerd.sock` on a Docker host) runs without its
CRI plugin and answers `UNIMPLEMENTED`: it is not taken for a Kubernetes runtime.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from shipper.config import Config
from shipper.cri.runtime import (
    DEFAULT_SOCKETS,
    CriRuntimeClient,
    NotCriV1,
    RuntimeUnavailable,
)
from shipper.docker.api import DockerClient

PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class SourceChoice:
    kind: str  # "docker" | "cri"
    why: str  # a sentence for the start log
    socket: str = ""  # the CRI socket, for cri


def source_fields(config: Config, choice: SourceChoice) -> dict[str, str]:
    """What the start log says of where the chosen source reads."""
    if choice.kind == "cri":
        return {"cri_socket": choice.socket, "log_directory": config.cri.log_directory}
    return {"docker_host": config.docker.host}


def cri_sockets(config: Config) -> list[str]:
    """The CRI sockets to try, in order."""
    return list(DEFAULT_SOCKETS) if config.cri.socket == "auto" else [config.cri.socket]


async def choose_source(config: Config, docker: DockerClient) -> SourceChoice:
    """The source `config.source` asks for (see the module docstring); `docker` is the client
    of `config.docker`, to probe with."""
    sockets = cri_sockets(config)
    if config.source == "docker":
        return SourceChoice("docker", "source is docker")
    if config.source == "cri":
        answering, _ = await _answering_cri(sockets)
        socket = answering or _first_existing(sockets) or sockets[0]
        return SourceChoice("cri", "source is cri", socket)
    answering, refusals = await _answering_cri(sockets)
    if answering is not None:
        return SourceChoice("cri", f"a CRI runtime answers on {answering}", answering)
    if await _docker_answers(config, docker):
        why = f"the Docker API answers at {config.docker.host}"
        if refusals:
            why += " (" + "; ".join(refusals) + ")"
        return SourceChoice("docker", why)
    existing = _first_existing(sockets)
    if existing is not None and _is_directory(config.cri.log_directory):
        return SourceChoice(
            "cri",
            f"nothing answers yet, but the CRI socket {existing} and the pod log directory "
            f"{config.cri.log_directory} exist",
            existing,
        )
    return SourceChoice(
        "docker",
        "nothing answers yet and no CRI socket is there: waiting for the Docker API at "
        + config.docker.host,
    )


async def _answering_cri(sockets: list[str]) -> tuple[str | None, list[str]]:
    """The first socket whose runtime answers runtime.v1, and why the others did not."""
    refusals: list[str] = []
    for socket in _existing(sockets):
        client = CriRuntimeClient(socket, timeout_s=PROBE_TIMEOUT_S)
        try:
            await client.version()
            return socket, refusals
        except (NotCriV1, RuntimeUnavailable) as exc:
            refusals.append(str(exc))
        finally:
            await client.close()
    return None, refusals


async def _docker_answers(config: Config, docker: DockerClient) -> bool:
    host = config.docker.host
    if host.startswith("unix://") and not _existing([host[len("unix://") :]]):
        return False
    return await docker.ping()


def _existing(paths: list[str]) -> list[str]:
    return [path for path in paths if os.path.exists(path)]


def _first_existing(sockets: list[str]) -> str | None:
    return next(iter(_existing(sockets)), None)


def _is_directory(path: str) -> bool:
    return Path(path).is_dir()
