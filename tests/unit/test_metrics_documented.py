"""Every metric the shipper exports is in the README's table, and only those."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

from shipper import telemetry
from shipper.accounting import ContainerCounts

README = Path(__file__).parents[2] / "README.md"


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


def test_readme_documents_every_metric() -> None:
    table = set(re.findall(r"^\| `(shipper_[a-z_]+)` \|", README.read_text(), re.MULTILINE))
    assert _exported() - table == set(), "metrics missing from the README table"
    assert table - _exported() == set(), "README documents metrics that do not exist"


def test_names_follow_prometheus_conventions() -> None:
    for value in vars(telemetry).values():
        if isinstance(value, Counter | Gauge | Histogram):
            assert value._name.startswith("shipper_")
            assert not value._name.endswith("_total")  # the client adds it to counters
        if isinstance(value, Gauge | Histogram):
            assert not value._name.endswith("_count")
