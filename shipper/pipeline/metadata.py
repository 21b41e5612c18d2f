"""Static fields of one container, computed once per container start (pure).

Precedence, lowest first: `processing.fields` from config, then labels
`shipper.field.<path>=value` (the app team knows its container best), then what is derived
from the container itself (Kubernetes labels, image, allow-listed env), which is a fact and
is never overridden. Paths that would land on a field the shipper writes itself are ignored.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from shipper.config import SHIPPER_FIELD_ROOTS, ProcessingConfig
from shipper.model import ContainerMeta
from shipper.pipeline import labels

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
    """The `shipper.field.*` labels as {path: value}, and the label names that were refused."""
    fields: dict[str, str] = {}
    refused: list[str] = []
    for key, value in meta.labels.items():
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
