"""Container labels an app team sets to steer processing, and matching rules to containers.

Labels override config rules for the container that carries them: the team that owns a
container knows its log format best. Values are read once, when the container's processor is
built, so a relabelled container changes behaviour at its next start.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Protocol

from shipper.model import ContainerMeta

ENABLE = "shipper.enable"  # "true" / "false"
MULTILINE_PRESET = "shipper.multiline.preset"  # java | python | go | none
MULTILINE_PATTERN = "shipper.multiline.pattern"
MULTILINE_NEGATE = "shipper.multiline.negate"  # "true" / "false"
MULTILINE_MATCH = "shipper.multiline.match"  # after | before
JSON = "shipper.json"  # true | false | auto
FIELD_PREFIX = "shipper.field."  # shipper.field.<dotted.path>=value
RATE_LIMIT = "shipper.rate_limit"  # lines_per_s=100,bytes_per_s=1m,burst_s=5,action=drop

K8S_POD_NAME = "io.kubernetes.pod.name"
K8S_NAMESPACE = "io.kubernetes.pod.namespace"
K8S_POD_UID = "io.kubernetes.pod.uid"
K8S_CONTAINER_NAME = "io.kubernetes.container.name"


def parse_bool(value: str | None) -> bool | None:
    """'true'/'false' in any case (also 1/0, yes/no); None when absent or unrecognised."""
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    return None


class _ScopedRule(Protocol):
    @property
    def image(self) -> str | None: ...

    @property
    def name(self) -> str | None: ...


def rule_applies(rule: _ScopedRule, meta: ContainerMeta) -> bool:
    """A rule without image and name globs applies to every container; given ones must match."""
    if rule.image is not None and not fnmatchcase(meta.image, rule.image):
        return False
    return rule.name is None or fnmatchcase(meta.name, rule.name)
