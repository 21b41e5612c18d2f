from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipper.config import RoutingRule, parse_config
from shipper.errors import ConfigError
from shipper.model import ContainerMeta, Destination
from shipper.sinks.elasticsearch.routing import Router, sanitize_part

VALID_PART = r"[a-z0-9_.]{1,100}"


def meta(name: str = "web-1", image: str = "shop/web:1.4", **labels: str) -> ContainerMeta:
    return ContainerMeta(id="c" * 64, name=name, image=image, labels=labels)


RULES = [
    RoutingRule(name="payments-*", dataset="payments"),
    RoutingRule(image="nginx*", dataset="nginx", namespace="edge"),
    RoutingRule(image="*", name="batch-*", namespace="batch"),
]


@pytest.mark.parametrize(
    ("container", "expected"),
    [
        (meta(), "logs-docker-default"),
        (meta(name="payments-api"), "logs-payments-default"),
        (meta(image="nginx:1.25"), "logs-nginx-edge"),
        (meta(name="batch-7"), "logs-docker-batch"),
        # the first matching rule wins
        (meta(name="payments-x", image="nginx"), "logs-payments-default"),
        # labels override rules, part by part
        (meta(name="payments-api", **{"shipper.namespace": "prod"}), "logs-payments-prod"),
        (meta(**{"shipper.dataset": "shop.web"}), "logs-shop.web-default"),
        (
            meta(image="nginx", **{"shipper.dataset": "Web-Front End!"}),
            "logs-web_front_end-edge",
        ),
        # a label that sanitises to nothing is ignored
        (meta(**{"shipper.dataset": "---"}), "logs-docker-default"),
        (meta(**{"shipper.namespace": ".."}), "logs-docker-default"),
    ],
)
def test_route(container: ContainerMeta, expected: str) -> None:
    assert Router("logs-docker-default", RULES).route(container) == Destination(expected)


PIPELINE_RULES = [
    RoutingRule(name="payments-*", dataset="payments", pipeline="payments-parse"),
    RoutingRule(image="nginx*", pipeline="nginx-access"),  # the default stream, a pipeline
    RoutingRule(name="plain-*", namespace="plain"),  # no pipeline: the default one
]


@pytest.mark.parametrize(
    ("container", "expected"),
    [
        (meta(), Destination("logs-docker-default", "everything")),
        (meta(name="payments-1"), Destination("logs-payments-default", "payments-parse")),
        (meta(image="nginx:1"), Destination("logs-docker-default", "nginx-access")),
        (meta(name="plain-1"), Destination("logs-docker-plain", "everything")),
        # the label wins over the rule and the default, and is trimmed
        (
            meta(name="payments-1", **{"shipper.pipeline": " mine "}),
            Destination("logs-payments-default", "mine"),
        ),
        # an empty label is no label
        (meta(**{"shipper.pipeline": "  "}), Destination("logs-docker-default", "everything")),
    ],
)
def test_pipeline_by_label_rule_and_default(
    container: ContainerMeta, expected: Destination
) -> None:
    assert Router("logs-docker-default", PIPELINE_RULES, "everything").route(container) == expected


def test_a_pod_annotation_names_the_pipeline_after_the_label() -> None:
    router = Router("logs-docker-default", PIPELINE_RULES, "everything")
    annotated = ContainerMeta(
        id="c" * 64, name="payments-1", image="i", annotations={"shipper.pipeline": "from-pod"}
    )
    assert router.route(annotated) == Destination("logs-payments-default", "from-pod")
    both = ContainerMeta(
        id="c" * 64,
        name="w",
        image="i",
        labels={"shipper.pipeline": "from-label"},
        annotations={"shipper.pipeline": "from-pod"},
    )
    assert router.route(both).pipeline == "from-label"


def test_no_pipeline_anywhere_is_none() -> None:
    assert Router("logs-docker-default", RULES).route(meta()).pipeline is None
    labelled = meta(**{"shipper.pipeline": "p"})
    assert Router("logs-docker-default", RULES).route(labelled) == Destination(
        "logs-docker-default", "p"
    )


def test_static_targets_are_the_default_and_every_rule() -> None:
    assert Router("logs-docker-default", RULES).static_targets() == [
        "logs-docker-default",
        "logs-payments-default",
        "logs-nginx-edge",
        "logs-docker-batch",
    ]


@given(st.text(max_size=300))
def test_sanitised_parts_are_always_valid(value: str) -> None:
    import re

    part = sanitize_part(value)
    assert part is None or (re.fullmatch(VALID_PART, part) and part not in (".", ".."))


def test_sanitise_keeps_valid_names_and_cuts_at_100() -> None:
    assert sanitize_part("nginx.access") == "nginx.access"
    assert sanitize_part("A" * 150) == "a" * 100


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"dataset": "x"}, "needs name, image"),
        ({"name": "a*"}, "needs dataset, namespace, pipeline"),
        ({"name": "a*", "pipeline": " p"}, "without surrounding spaces"),
        ({"name": "a*", "dataset": "Bad-Name"}, "a-z, 0-9"),
    ],
)
def test_bad_routing_rules_are_config_errors(rule: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"elasticsearch": {"routing": [rule]}})
    assert caught.value.key.startswith("elasticsearch.routing.0")
    assert problem in str(caught.value)
