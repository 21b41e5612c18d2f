"""Which containers are shipped: a pure decision from the container's metadata and config.

Precedence, first that applies decides:
  1. the shipper's own container (or, on Kubernetes, any container of its own pod, by the
     pod uid the chart passes in POD_UID): not shipped unless `ship_own_container` (a
     feedback loop: each line shipped could log another line);
  2. hint `shipper.enable=false` (a container's label; on Kubernetes a pod's annotation): not
     shipped (the app team opted out);
  3. a config `exclude` rule matches: not shipped (exclude wins over every include);
  4. hint `shipper.enable=true`, or a config `include` rule matches: shipped;
  5. otherwise: shipped in mode `all` when there are no include rules; not shipped in mode
     `opt_in`, or when include rules exist (they then list what is wanted).
A rule matches when all its conditions hold: label selectors (`key`, `key=value`,
`key!=value` where a missing label counts as "not equal"), name glob, image glob, Compose
project glob, Kubernetes namespace glob. Globs are case-sensitive fnmatch patterns (`*`, `?`,
`[...]`). On Kubernetes a container's labels are its pod's labels together with the few
kubelet gives the container (`io.kubernetes.container.name`, ...), and its name is the
container's name in the pod spec; the namespace is its pod's (a Docker container run by
kubelet names it in its `io.kubernetes.pod.namespace` label).
Evaluated when a container starts, so renaming or relabelling takes effect at its next start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Protocol

from shipper.config import SelectionConfig
from shipper.model import ContainerMeta
from shipper.pipeline.labels import ENABLE, K8S_NAMESPACE, K8S_POD_UID, parse_bool

_MIN_ID_PREFIX = 12  # the short id Docker uses as the container's hostname


def is_own_container(container_id: str, own_container_id: str | None) -> bool:
    """Ids match when one is a prefix of the other (the shipper may only know its short id)."""
    if not own_container_id or len(own_container_id) < _MIN_ID_PREFIX:
        return False
    return container_id.startswith(own_container_id) or own_container_id.startswith(container_id)


def label_selector_matches(selector: str, container_labels: Mapping[str, str]) -> bool:
    if "!=" in selector:
        key, _, value = selector.partition("!=")
        return container_labels.get(key) != value
    key, eq, value = selector.partition("=")
    if not eq:
        return key in container_labels
    return container_labels.get(key) == value


class MatchRule(Protocol):
    """What a rule matches containers by: selection rules, and rate-limit rules the same way."""

    @property
    def labels(self) -> Sequence[str]: ...

    @property
    def name(self) -> str | None: ...

    @property
    def image(self) -> str | None: ...

    @property
    def compose_project(self) -> str | None: ...

    @property
    def namespace(self) -> str | None: ...


def rule_matches(rule: MatchRule, meta: ContainerMeta) -> bool:
    """Every condition the rule gives holds (a rule without conditions matches everything)."""
    if rule.name is not None and not fnmatchcase(meta.name, rule.name):
        return False
    if rule.image is not None and not fnmatchcase(meta.image, rule.image):
        return False
    if rule.compose_project is not None:
        project = meta.compose_project
        if project is None or not fnmatchcase(project, rule.compose_project):
            return False
    if rule.namespace is not None:
        namespace = kubernetes_namespace(meta)
        if namespace is None or not fnmatchcase(namespace, rule.namespace):
            return False
    if not rule.labels:
        return True
    container_labels = meta.labels
    if meta.pod is not None and meta.pod.labels:
        container_labels = {**meta.pod.labels, **meta.labels}
    return all(label_selector_matches(s, container_labels) for s in rule.labels)


def kubernetes_namespace(meta: ContainerMeta) -> str | None:
    if meta.pod is not None:
        return meta.pod.namespace
    return meta.labels.get(K8S_NAMESPACE)


def should_ship(
    meta: ContainerMeta,
    cfg: SelectionConfig,
    own_container_id: str | None,
    own_pod_uid: str | None = None,
) -> bool:
    """True if this container's logs are shipped; see the module docstring for precedence."""
    if not cfg.ship_own_container and (
        is_own_container(meta.id, own_container_id)
        # On Kubernetes every container of the shipper's own pod (a sidecar, a restart of
        # the shipper under another id) is its own: the pod uid says so where ids cannot.
        or (own_pod_uid is not None and meta.labels.get(K8S_POD_UID) == own_pod_uid)
    ):
        return False
    enabled = parse_bool(meta.hints.get(ENABLE))
    if enabled is False:
        return False
    if any(rule_matches(rule, meta) for rule in cfg.exclude):
        return False
    if enabled or any(rule_matches(rule, meta) for rule in cfg.include):
        return True
    return cfg.mode == "all" and not cfg.include
