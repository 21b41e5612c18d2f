from __future__ import annotations

from typing import Any

import pytest

from shipper.config import SelectionConfig
from shipper.model import ContainerMeta
from shipper.sources.selection import should_ship

OWN = "f" * 64


def meta(
    name: str = "web", image: str = "nginx:1.25", labels: dict[str, str] | None = None,
    cid: str = "a" * 64,
) -> ContainerMeta:  # fmt: skip
    return ContainerMeta(id=cid, name=name, image=image, labels=labels or {})


def ship(container: ContainerMeta, own: str | None = OWN, **cfg: Any) -> bool:
    return should_ship(container, SelectionConfig.model_validate(cfg), own)


WEB = meta()
DB = meta("db", "postgres:16", {"com.docker.compose.project": "shop", "tier": "data"})
OPTED_OUT = meta(labels={"shipper.enable": "false"})
OPTED_IN = meta("batch", "myorg/batch:2", {"shipper.enable": "TRUE"})
DEBUG = meta("debug-shell", "busybox", {"tier": "tools"})
CONTAINERS = [WEB, DB, OPTED_OUT, OPTED_IN, DEBUG]


@pytest.mark.parametrize(
    ("cfg", "shipped"),
    [
        ({}, [WEB, DB, OPTED_IN, DEBUG]),
        ({"mode": "opt_in"}, [OPTED_IN]),
        ({"mode": "opt_in", "include": [{"compose_project": "shop"}]}, [DB, OPTED_IN]),
        ({"exclude": [{"name": "debug-*"}]}, [WEB, DB, OPTED_IN]),
        ({"exclude": [{"image": "postgres:*"}]}, [WEB, OPTED_IN, DEBUG]),
        ({"exclude": [{"compose_project": "sh?p"}]}, [WEB, OPTED_IN, DEBUG]),
        ({"exclude": [{"labels": ["tier"]}]}, [WEB, OPTED_IN]),
        ({"exclude": [{"labels": ["tier=tools"]}]}, [WEB, DB, OPTED_IN]),
        ({"exclude": [{"labels": ["tier!=data"]}]}, [DB]),  # missing label counts as !=
        ({"include": [{"image": "nginx:*"}]}, [WEB, OPTED_IN]),  # include lists what is wanted
        ({"include": [{"labels": ["tier=data"], "name": "db"}]}, [DB, OPTED_IN]),
        ({"include": [{"labels": ["tier=data"], "name": "web"}]}, [OPTED_IN]),  # rule is AND
        ({"include": [{"name": "db"}], "exclude": [{"labels": ["tier"]}]}, [OPTED_IN]),
        ({"exclude": [{"name": "batch"}]}, [WEB, DB, DEBUG]),  # exclude beats the opt-in label
        ({"include": [{"name": "web"}]}, [WEB, OPTED_IN]),  # opt-out label beats include...
    ],
)
def test_selection_matrix(cfg: dict[str, Any], shipped: list[ContainerMeta]) -> None:
    assert [c for c in CONTAINERS if ship(c, **cfg)] == shipped


def test_opt_out_label_beats_include_rule() -> None:
    assert not ship(OPTED_OUT, include=[{"name": "web"}])


def test_globs_are_case_sensitive_and_whole_name() -> None:
    assert ship(WEB, exclude=[{"name": "WEB"}])
    assert not ship(WEB, exclude=[{"name": "we*"}])
    assert ship(WEB, exclude=[{"name": "we"}])


def test_own_container_by_full_or_short_id() -> None:
    own = meta("shipper", "shipper:1", {"shipper.enable": "true"}, cid=OWN)
    assert not ship(own)
    assert not ship(own, own=OWN[:12])
    assert ship(own, own=OWN[:12], ship_own_container=True)
    assert ship(own, own=None)
    assert ship(own, own="f")  # too short to be sure it is us


def test_unrecognised_enable_value_is_ignored() -> None:
    assert ship(meta(labels={"shipper.enable": "maybe"}))
    assert not ship(meta(labels={"shipper.enable": "maybe"}), mode="opt_in")


def test_every_container_of_the_shippers_own_pod_is_its_own() -> None:
    pod = "3f1c2a9e-7b4d-4c1e-9a55-0d8e6f2b1c44"
    sidecar = meta("sidecar", labels={"io.kubernetes.pod.uid": pod})
    other_pod = meta("app", labels={"io.kubernetes.pod.uid": "0" * 8 + pod[8:]})
    config = SelectionConfig()
    assert not should_ship(sidecar, config, None, pod)
    assert should_ship(sidecar, SelectionConfig(ship_own_container=True), None, pod)
    assert should_ship(other_pod, config, None, pod)
    assert should_ship(sidecar, config, None, None)  # not on Kubernetes: no pod to be
