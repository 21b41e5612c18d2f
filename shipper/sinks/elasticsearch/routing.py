"""Which data stream a container's records go to, and through which ingest pipeline,
decided once per container start (pure).

Precedence, highest first: the container's hints `shipper.dataset` / `shipper.namespace` /
`shipper.pipeline` (its labels, and its pod's annotations after them: the app team knows
its container best), then the first
`elasticsearch.routing` rule whose name/image globs match, then `elasticsearch.data_stream`
and `elasticsearch.pipeline`. A label or rule may set only some of the three; the others come
from the next source down.

Label values are whatever someone typed, so they are sanitised to Elasticsearch's data stream
naming rules instead of being refused: lower case, only `a-z 0-9 _ .` (anything else becomes
`_`, in particular `-`, which separates the parts), at most 100 bytes, and not `.`/`..`. A value
that sanitises to nothing is ignored (and counted by the caller if it wishes). A pipeline
label is an ingest pipeline id, taken as written (trimmed; empty is ignored): Elasticsearch
answers a document naming a pipeline that does not exist with a per-item error, which the
sink dead-letters like any other.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from shipper.config import RoutingRule
from shipper.model import ContainerMeta, Destination

DATASET_LABEL = "shipper.dataset"
NAMESPACE_LABEL = "shipper.namespace"
PIPELINE_LABEL = "shipper.pipeline"
MAX_PART_BYTES = 100

_INVALID = re.compile(r"[^a-z0-9_.]+")


def sanitize_part(value: str) -> str | None:
    """A label value as a dataset or namespace, or None if nothing usable is left."""
    cleaned = _INVALID.sub("_", value.strip().lower()).strip("_")
    cleaned = cleaned[:MAX_PART_BYTES].rstrip("_")  # ASCII only by now: chars are bytes
    if not cleaned or cleaned in (".", ".."):
        return None
    return cleaned


def split_data_stream(name: str) -> tuple[str, str]:
    """`logs-a.b-c` → ("a.b", "c"); the config validated the shape."""
    _, dataset, namespace = name.split("-", 2)
    return dataset, namespace


@dataclass(frozen=True, slots=True)
class Router:
    default: str  # logs-<dataset>-<namespace>
    rules: Sequence[RoutingRule] = ()
    pipeline: str | None = None  # elasticsearch.pipeline

    def route(self, meta: ContainerMeta) -> Destination:
        dataset, namespace = split_data_stream(self.default)
        pipeline = self.pipeline
        for rule in self.rules:
            if _matches(rule, meta):
                dataset = rule.dataset or dataset
                namespace = rule.namespace or namespace
                pipeline = rule.pipeline or pipeline
                break
        label_dataset = sanitize_part(meta.hints.get(DATASET_LABEL, ""))
        label_namespace = sanitize_part(meta.hints.get(NAMESPACE_LABEL, ""))
        return Destination(
            f"logs-{label_dataset or dataset}-{label_namespace or namespace}",
            _given_pipeline(meta) or pipeline,
        )

    def static_targets(self) -> list[str]:
        """Streams known from the config alone (templates for them are installed at start)."""
        dataset, namespace = split_data_stream(self.default)
        targets = [self.default]
        for rule in self.rules:
            name = f"logs-{rule.dataset or dataset}-{rule.namespace or namespace}"
            if name not in targets:
                targets.append(name)
        return targets


def _given_pipeline(meta: ContainerMeta) -> str:
    """The container's own choice: its label, else its pod's annotation ("" for none)."""
    return meta.hints.get(PIPELINE_LABEL, "").strip()


def _matches(rule: RoutingRule, meta: ContainerMeta) -> bool:
    if rule.image is not None and not fnmatchcase(meta.image, rule.image):
        return False
    return rule.name is None or fnmatchcase(meta.name, rule.name)
