"""A Kubernetes pod's container (CRI source): its kubernetes.* fields, hints from the pod's
annotations, and selection by namespace, pod labels and container name."""

from __future__ import annotations

from shipper.config import ProcessingConfig, SelectionConfig, SelectionRule
from shipper.model import ContainerMeta, Destination, PodMeta
from shipper.pipeline.encoder import container_document
from shipper.pipeline.metadata import container_fields
from shipper.pipeline.processor import build_processor
from shipper.sinks.elasticsearch.routing import Router
from shipper.sources.selection import should_ship

CID = "c" * 64
UID = "0d1e2f30-aaaa-bbbb-cccc-1234567890ab"


def pod_container(
    *,
    namespace: str = "shop",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    hints: dict[str, str] | None = None,
    name: str = "app",
) -> ContainerMeta:
    """`annotations`: the pod's that are shipped; `hints`: its shipper.* ones."""
    pod = PodMeta(
        namespace=namespace,
        name="web-7d9",
        uid=UID,
        container_name=name,
        labels=labels or {},
        annotations=annotations or {},
        node_name="node-1",
    )
    return ContainerMeta(
        id=CID,
        name=name,
        image="registry.example/shop/web:1.2",
        labels={
            "io.kubernetes.container.name": name,
            "io.kubernetes.pod.name": "web-7d9",
            "io.kubernetes.pod.namespace": namespace,
            "io.kubernetes.pod.uid": UID,
        },
        log_driver="cri",
        runtime="containerd",
        annotations={**(annotations or {}), **(hints or {})},
        pod=pod,
    )


def test_pod_fields_are_ecs_kubernetes_fields_with_dots_in_keys_replaced() -> None:
    meta = pod_container(
        labels={"app.kubernetes.io/name": "web", "tier": "front"},
        annotations={"example.com/owner": "team-a"},
    )
    fields = container_fields(meta, ProcessingConfig())
    assert fields["kubernetes.namespace"] == "shop"
    assert fields["kubernetes.pod.name"] == "web-7d9"
    assert fields["kubernetes.pod.uid"] == UID
    assert fields["kubernetes.container.name"] == "app"
    assert fields["kubernetes.node.name"] == "node-1"
    assert fields["kubernetes.labels"] == {"app_kubernetes_io/name": "web", "tier": "front"}
    assert fields["kubernetes.annotations"] == {"example_com/owner": "team-a"}
    document = container_document(meta, index="logs-a-b", host_name="h", extra_fields=fields)
    assert document.static_fields["container"]["runtime"] == "containerd"
    assert document.static_fields["container"]["name"] == "app"
    assert document.static_fields["kubernetes"]["labels"] == {
        "app_kubernetes_io/name": "web",
        "tier": "front",
    }
    assert document.static_fields["kubernetes"]["node"] == {"name": "node-1"}


def test_a_pod_annotation_cannot_overwrite_the_facts() -> None:
    meta = pod_container(hints={"shipper.field.kubernetes.namespace": "spoofed"})
    fields = container_fields(meta, ProcessingConfig())
    assert fields["kubernetes.namespace"] == "shop"


def test_hints_come_from_the_pods_annotations_not_from_labels() -> None:
    meta = pod_container(
        labels={"shipper.multiline.preset": "python"},  # a pod label is no hint
        hints={"shipper.multiline.preset": "java", "shipper.json": "false"},
    )
    processor = build_processor(ProcessingConfig(), meta)
    assert processor.multiline is not None
    assert processor.multiline.spec.preset == "java"
    assert not processor.warnings
    router = Router("logs-docker-default")
    assert router.route(meta).index == "logs-docker-default"
    hinted = pod_container(
        hints={"shipper.dataset": "Shop.Web", "shipper.namespace": "prod", "shipper.pipeline": "p"}
    )
    assert router.route(hinted) == Destination("logs-shop.web-prod", "p")
    assert container_fields(pod_container(hints={"shipper.field.team": "a"}), ProcessingConfig())[
        "team"
    ] == ("a")


def test_a_docker_containers_hints_are_its_labels() -> None:
    meta = ContainerMeta(id=CID, name="x", image="i", labels={"shipper.json": "false"})
    assert meta.hints == {"shipper.json": "false"}
    assert meta.display_name == "x"
    assert pod_container().display_name == "shop/web-7d9/app"


def selection(**rule: object) -> SelectionConfig:
    return SelectionConfig(include=[SelectionRule.model_validate(rule)])


def test_selection_by_namespace_pod_labels_and_container_name() -> None:
    meta = pod_container(labels={"app": "web"})
    assert should_ship(meta, selection(namespace="sh*"), None)
    assert not should_ship(meta, selection(namespace="kube-*"), None)
    assert should_ship(meta, selection(labels=["app=web"]), None)
    assert should_ship(meta, selection(labels=["io.kubernetes.container.name=app"]), None)
    assert not should_ship(meta, selection(labels=["app=db"]), None)
    assert should_ship(meta, selection(name="app", namespace="shop"), None)
    assert not should_ship(meta, selection(name="sidecar"), None)
    # A Docker container run by kubelet names its namespace in a label.
    docker = ContainerMeta(
        id=CID, name="k8s_app_web", image="i", labels={"io.kubernetes.pod.namespace": "shop"}
    )
    assert should_ship(docker, selection(namespace="shop"), None)
    assert not should_ship(
        ContainerMeta(id=CID, name="x", image="i"), selection(namespace="*"), None
    )


def test_a_pod_annotation_opts_out_and_the_shippers_own_pod_is_never_shipped() -> None:
    assert not should_ship(
        pod_container(hints={"shipper.enable": "false"}), SelectionConfig(), None
    )
    opt_in = SelectionConfig(mode="opt_in")
    assert should_ship(pod_container(hints={"shipper.enable": "true"}), opt_in, None)
    assert not should_ship(pod_container(), opt_in, None)
    assert not should_ship(pod_container(), SelectionConfig(), None, own_pod_uid=UID)
