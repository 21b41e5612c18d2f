"""A pod's container, as the runtime's CRI API and its log path tell it → `ContainerMeta`.

The log path gives namespace, pod name, pod uid and container name (the facts every document
carries); the CRI API gives the container's id, labels (but the four kubelet adds, which
repeat those facts) and image, and its pod's labels and annotations. Of the annotations,
those matching `cri.annotations` are shipped (`kubernetes.annotations.*`), and the
`shipper.*` ones are the container's hints (a pod spec cannot label its containers; see
`ContainerMeta.hints`).

The same metadata is kept with the container's position in the checkpoint file
(`meta_state` / `meta_from_state`), so that lines read after the pod is gone still carry it:
of the annotations only those it uses (the shipped ones and the hints), since some are
large (kubectl's last-applied-configuration) and the file is rewritten every second.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

from shipper.cri.paths import LogPath
from shipper.cri.runtime import Container, Pod
from shipper.model import ContainerMeta, PodMeta

HINT_PREFIX = "shipper."
LOG_DRIVER = "cri"  # ContainerMeta.log_driver of a CRI log file (no Docker rotation limits)


def container_meta(
    container: Container,
    pod: Pod | None,
    log: LogPath,
    *,
    runtime: str,
    annotations: Sequence[str],
    node_name: str,
) -> ContainerMeta:
    """`pod` None: the runtime no longer knows the pod (its labels are then unknown)."""
    pod_annotations = pod.annotations if pod is not None else {}
    return ContainerMeta(
        id=container.id,
        name=log.container_name,
        image=container.image_name,
        image_id=container.image_ref,
        labels=container.own_labels,
        log_driver=LOG_DRIVER,
        log_path=str(log.path),
        created=_rfc3339(container.created_at_ns),
        running=container.state == "running",
        started_at=_rfc3339(container.started_at_ns),
        runtime=runtime,
        annotations=dict(pod_annotations),
        pod=PodMeta(
            namespace=log.namespace,
            name=log.pod_name,
            uid=log.pod_uid,
            container_name=log.container_name,
            labels=pod.pod_labels if pod is not None else {},
            annotations=selected(pod_annotations, annotations),
            node_name=node_name,
        ),
    )


def selected(annotations: Mapping[str, str], globs: Sequence[str]) -> dict[str, str]:
    """The annotations whose key matches one of `globs` (case-sensitive fnmatch)."""
    if not globs:
        return {}
    return {
        key: value
        for key, value in annotations.items()
        if any(fnmatchcase(key, glob) for glob in globs)
    }


def hints(annotations: Mapping[str, str]) -> dict[str, str]:
    """The `shipper.*` ones."""
    return {key: value for key, value in annotations.items() if key.startswith(HINT_PREFIX)}


def meta_state(meta: ContainerMeta) -> dict[str, Any]:
    """What the checkpoint keeps of a container's metadata (JSON)."""
    state: dict[str, Any] = {
        "name": meta.name,
        "image": meta.image,
        "image_id": meta.image_id,
        "labels": dict(meta.labels),
        "runtime": meta.runtime,
        "created": meta.created,
        "started_at": meta.started_at,
        "annotations": hints(meta.annotations),
    }
    pod = meta.pod
    if pod is not None:
        state["pod"] = {
            "namespace": pod.namespace,
            "name": pod.name,
            "uid": pod.uid,
            "container_name": pod.container_name,
            "labels": dict(pod.labels),
            "annotations": dict(pod.annotations),
            "node_name": pod.node_name,
        }
    return state


def meta_from_state(container_id: str, log_path: str, state: Mapping[str, Any]) -> ContainerMeta:
    """The metadata `meta_state` kept; raises (KeyError, TypeError) if it is not that."""
    pod_state = state.get("pod")
    pod = None
    if isinstance(pod_state, Mapping):
        pod = PodMeta(
            namespace=str(pod_state["namespace"]),
            name=str(pod_state["name"]),
            uid=str(pod_state["uid"]),
            container_name=str(pod_state["container_name"]),
            labels=_strings(pod_state.get("labels")),
            annotations=_strings(pod_state.get("annotations")),
            node_name=str(pod_state.get("node_name") or ""),
        )
    return ContainerMeta(
        id=container_id,
        name=str(state["name"]),
        image=str(state.get("image") or ""),
        image_id=str(state.get("image_id") or ""),
        labels=_strings(state.get("labels")),
        log_driver=LOG_DRIVER,
        log_path=log_path,
        created=str(state.get("created") or ""),
        running=False,
        started_at=str(state.get("started_at") or ""),
        runtime=str(state.get("runtime") or ""),
        annotations=_strings(state.get("annotations")),
        pod=pod,
    )


def _strings(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _rfc3339(time_ns: int) -> str:
    if time_ns <= 0:
        return ""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"
