"""Every metric the shipper exports is in the metrics table of docs/operations.md, and only
those."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

from shipper import telemetry
from shipper.accounting import ContainerCounts

METRICS_TABLE = Path(__file__).parents[2] / "docs" / "operations.md"


def _exported() -> set[str]:
    names = set()
    for value in vars(telemetry).values():
        if isinstance(value, Counter):
            names.add(value._name + "_total")
        elif isinstance(value, Gauge | Histogram):
            names.add(value._name)
    # The scrape-time collectors, given one sample each.
    sample = telemetry.ContainerSample("c", 1.0, 1.0)
    counts = ContainerCounts().as_dict()
    collectors = [
        telemetry.PerContainerCollector(lambda: [sample]),
        telemetry.BufferReadsCollector(lambda: (1, 1)),
        telemetry.ContainerAccountingCollector(lambda: [("c", counts)]),
    ]
    for collector in collectors:
        names.update(s.name for metric in collector.collect() for s in metric.samples)
    return names


def test_the_operations_guide_documents_every_metric() -> None:
    text = METRICS_TABLE.read_text()
    table = set(re.findall(r"^\| `(shipper_[a-z_]+)` \|", text, re.MULTILINE))
    assert _exported() - table == set(), "metrics missing from the table in docs/operations.md"
    assert table - _exported() == set(), "docs/operations.md documents metrics that do not exist"


def test_names_follow_prometheus_conventions() -> None:
    for value in vars(telemetry).values():
        if isinstance(value, Counter | Gauge | Histogram):
            assert value._name.startswith("shipper_")
            assert not value._name.endswith("_total")  # the client adds it to counters
        if isinstance(value, Gauge | Histogram):
            assert not value._name.endswith("_count")
