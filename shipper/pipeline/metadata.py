"""Static fields of one container, computed once per container start (pure).

Precedence, lowest first: `processing.fields` from config, then the hints
`shipper.field.<path>=value` (a Docker container's labels, a pod's annotations: the app team
knows its container best), then what is derived from the container itself (its Kubernetes
pod, image, allow-listed env), which is a fact and is never overridden. Paths that would land
on a field the shipper writes itself are ignored.

A pod's labels and annotations become `kubernetes.labels.<key>` and
`kubernetes.annotations.<key>` with the key's dots replaced as a container label's are in
`container.labels` (`sanitize_label_key`): `app.kubernetes.io/name` would otherwise nest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from shipper.config import SHIPPER_FIELD_ROOTS, ProcessingConfig
from shipper.model import ContainerMeta, PodMeta
from shipper.pipeline import labels
from shipper.pipeline.encoder import sanitize_label_key

# kubelet (dockershim / cri-dockerd) labels → ECS-style kubernetes.* as Filebeat writes them
_K8S_FIELDS = (
    (labels.K8S_POD_NAME, "kubernetes.pod.name"),
    (labels.K8S_NAMESPACE, "kubernetes.namespace"),
    (labels.K8S_POD_UID, "kubernetes.pod.uid"),
    (labels.K8S_CONTAINER_NAME, "kubernetes.container.name"),
)
_DOTTED_PATH = re.compile(r"[^.\s]+(?:\.[^.\s]+)*")
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,}")


class ImageRef(NamedTuple):
    name: str  # registry/repository as written, without tag and digest
    tag: str | None
    digest: str | None  # e.g. sha256:…


def parse_image_ref(reference: str) -> ImageRef:
    """Splits `[registry[:port]/]repo[:tag][@digest]`; a bare image ID is a digest only.

    The tag is the part after the last ':' of the last path segment, so a registry port
    (`localhost:5000/app`) is not mistaken for a tag. No tag and no digest means Docker
    pulled `latest`, which is what is reported.
    """
    name, at, digest = reference.partition("@")
    if not at:
        digest = ""
        if _DIGEST.fullmatch(reference) and "/" not in reference:
            return ImageRef("", None, reference)  # created from an image ID
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag: str | None = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    if tag is None and not digest:
        tag = "latest"
    return ImageRef(name, tag or None, digest or None)


def _path_allowed(path: str) -> bool:
    return _DOTTED_PATH.fullmatch(path) is not None and path.split(".")[0] not in (
        SHIPPER_FIELD_ROOTS
    )


def label_field_paths(meta: ContainerMeta) -> tuple[dict[str, str], list[str]]:
    """The `shipper.field.*` hints as {path: value}, and the hint names that were refused."""
    fields: dict[str, str] = {}
    refused: list[str] = []
    for key, value in meta.hints.items():
        if key.startswith(labels.FIELD_PREFIX):
            path = key[len(labels.FIELD_PREFIX) :]
            if _path_allowed(path):
                fields[path] = value
            else:
                refused.append(key)
    return fields, refused


def container_fields(meta: ContainerMeta, cfg: ProcessingConfig) -> dict[str, Any]:
    """Dotted-path fields to merge into every document of this container."""
    fields: dict[str, Any] = dict(cfg.fields)
    fields.update(label_field_paths(meta)[0])
    for label, path in _K8S_FIELDS:
        value = meta.labels.get(label)
        if value:
            fields[path] = value
    if meta.pod is not None:
        fields.update(pod_fields(meta.pod))
    image = parse_image_ref(meta.image)
    # container.image.name stays the reference exactly as the container was created with it
    # (set by the encoder); its parts are added alongside.
    if image.tag:
        fields["container.image.tag"] = [image.tag]  # ECS: keyword array
    if image.digest:
        fields["container.image.hash.all"] = [image.digest]
    for name in cfg.env_allowlist:
        if name in meta.env:
            # Dots would nest; env names rarely have them, but one must not split a field.
            fields["container.env." + name.replace(".", "_")] = meta.env[name]
    return fields


def pod_fields(pod: PodMeta) -> dict[str, Any]:
    """The ECS `kubernetes.*` fields of a pod's container (dotted paths; maps nest whole)."""
    fields: dict[str, Any] = {
        "kubernetes.namespace": pod.namespace,
        "kubernetes.pod.name": pod.name,
        "kubernetes.pod.uid": pod.uid,
        "kubernetes.container.name": pod.container_name,
    }
    if pod.node_name:
        fields["kubernetes.node.name"] = pod.node_name
    if pod.labels:
        fields["kubernetes.labels"] = _sanitized(pod.labels)
    if pod.annotations:
        fields["kubernetes.annotations"] = _sanitized(pod.annotations)
    return fields


def _sanitized(mapping: Mapping[str, str]) -> dict[str, str]:
    return {sanitize_label_key(key): value for key, value in sorted(mapping.items())}
