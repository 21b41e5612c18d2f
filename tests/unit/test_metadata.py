from __future__ import annotations

import pytest

from shipper.config import ProcessingConfig
from shipper.model import ContainerMeta
from shipper.pipeline.metadata import ImageRef, container_fields, parse_image_ref

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("busybox", ImageRef("busybox", "latest", None)),
        ("nginx:1.25-alpine", ImageRef("nginx", "1.25-alpine", None)),
        ("localhost:5000/team/app", ImageRef("localhost:5000/team/app", "latest", None)),
        (f"localhost:5000/team/app:1.2@{DIGEST}", ImageRef("localhost:5000/team/app", "1.2", DIGEST)),
        (f"repo@{DIGEST}", ImageRef("repo", None, DIGEST)),
        ("ghcr.io/org/img:v1", ImageRef("ghcr.io/org/img", "v1", None)),
        (DIGEST, ImageRef("", None, DIGEST)),  # created from an image ID
    ],
)  # fmt: skip
def test_parse_image_ref(reference: str, expected: ImageRef) -> None:
    assert parse_image_ref(reference) == expected


def test_container_fields() -> None:
    cfg = ProcessingConfig.model_validate(
        {
            "env_allowlist": ["APP_VERSION", "MISSING", "odd.name"],
            "fields": {"service.environment": "prod", "labels.team": "core", "cost": 3},
        }
    )
    meta = ContainerMeta(
        id="a" * 64,
        name="k8s_app_web-7d9_shop_uid_0",
        image=f"localhost:5000/team/app:1.2@{DIGEST}",
        labels={
            "io.kubernetes.pod.name": "web-7d9",
            "io.kubernetes.pod.namespace": "shop",
            "io.kubernetes.pod.uid": "0d1e-22",
            "io.kubernetes.container.name": "app",
            "shipper.field.labels.team": "payments",
            "shipper.field.message": "nope",
            "shipper.field.kubernetes.namespace": "spoofed",
        },
        env={"APP_VERSION": "1.2.0", "DB_PASSWORD": "secret", "odd.name": "x"},
    )
    assert container_fields(meta, cfg) == {
        "service.environment": "prod",
        "labels.team": "payments",  # label beats config
        "cost": 3,
        "kubernetes.pod.name": "web-7d9",
        "kubernetes.namespace": "shop",  # facts beat labels
        "kubernetes.pod.uid": "0d1e-22",
        "kubernetes.container.name": "app",
        "container.image.tag": ["1.2"],
        "container.image.hash.all": [DIGEST],
        "container.env.APP_VERSION": "1.2.0",
        "container.env.odd_name": "x",
    }


def test_plain_container_gets_only_image_fields() -> None:
    meta = ContainerMeta(id="a" * 64, name="x", image="busybox", env={"SECRET": "s"})
    assert container_fields(meta, ProcessingConfig()) == {
        "container.image.tag": ["latest"],
    }
