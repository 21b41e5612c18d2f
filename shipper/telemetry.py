"""Prometheus metrics, and the logging primitives that the notable events use.

Naming follows Prometheus conventions: `shipper_<noun>_<unit>_total` for counters, base
units (seconds, bytes). Labels are low-cardinality on purpose (stream, status, error type,
reason); nothing is labelled by container unless an operator asks for it.

The events themselves (each logs a sentence with structured fields and moves its counters in
one place) are in `shipper/events/`: no other module calls `error`, `warning`, `info`,
`debug` or `rate_limited` here (tests/unit/test_events.py checks it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

log = logging.getLogger("shipper")

lines_read = Counter(
    "shipper_lines_read_total", "Log lines read from Docker.", ["stream"], registry=REGISTRY
)
bytes_read = Counter(
    "shipper_read_bytes_total",
    "Bytes of log lines read from Docker.",
    ["stream"],
    registry=REGISTRY,
)
records_buffered = Counter(
    "shipper_records_buffered_total", "Records written to the disk buffer.", registry=REGISTRY
)
records_shipped = Counter(
    "shipper_records_shipped_total",
    "Records acknowledged by the output (stored, or already stored: 409 on create).",
    registry=REGISTRY,
)
bulk_requests = Counter(
    "shipper_bulk_requests_total",
    "Bulk requests sent, by outcome (answered, failed) and HTTP status (none: no answer).",
    ["outcome", "status"],
    registry=REGISTRY,
)
bulk_duration = Histogram(
    "shipper_bulk_request_duration_seconds",
    "Latency of bulk requests.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
bulk_items = Counter(
    "shipper_bulk_items_total",
    "Bulk item results, by HTTP status, error type and the item's failure_store: none, used "
    "(stored in the data stream's failure store, not as a log record), not_enabled, failed.",
    ["status", "error_type", "failure_store"],
    registry=REGISTRY,
)
retries = Counter(
    "shipper_retries_total",
    "Retries of requests or items, by reason.",
    ["reason"],
    registry=REGISTRY,
)
dead_lettered = Counter(
    "shipper_dead_lettered_total",
    "Records that can never be indexed, sent to the dead letter destination.",
    ["error_type"],
    registry=REGISTRY,
)
buffer_bytes = Gauge(
    "shipper_buffer_bytes", "Bytes held in the disk buffer, unacknowledged.", registry=REGISTRY
)
buffer_records = Gauge(
    "shipper_buffer_records", "Records held in the disk buffer, unacknowledged.", registry=REGISTRY
)
oldest_unshipped_age = Gauge(
    "shipper_oldest_unshipped_age_seconds",
    "Age of the oldest record not yet acknowledged by the output (end-to-end lag).",
    registry=REGISTRY,
)
containers_followed = Gauge(
    "shipper_containers_followed", "Containers whose logs are being read.", registry=REGISTRY
)
docker_reconnects = Counter(
    "shipper_docker_reconnects_total", "Reconnections to the Docker API.", registry=REGISTRY
)
docker_engine = Gauge(
    "shipper_docker_engine_info",
    "1 for the Docker Engine connected to: its version and the API version spoken.",
    ["engine_version", "api_version"],
    registry=REGISTRY,
)
docker_events = Counter(
    "shipper_docker_events_total", "Container events received.", ["action"], registry=REGISTRY
)
checkpoint_writes = Counter(
    "shipper_checkpoint_writes_total", "Checkpoint files written.", registry=REGISTRY
)
records_flagged = Counter(
    "shipper_records_flagged_total",
    "Records marked by a flag (truncated, invalid_utf8, multiline, redacted).",
    ["flag"],
    registry=REGISTRY,
)
records_dropped = Counter(
    "shipper_records_dropped_total",
    "Records dropped on purpose by a drop rule.",
    ["reason"],
    registry=REGISTRY,
)
rate_limit_pause_seconds = Counter(
    "shipper_rate_limit_pause_seconds",
    "Seconds containers spent held back by their rate limit (action pause), summed.",
    registry=REGISTRY,
)
buffer_records_recovered = Gauge(
    "shipper_buffer_records_recovered",
    "Records the disk buffer held when the shipper started (appended by an earlier run).",
    registry=REGISTRY,
)
records_redacted = Counter(
    "shipper_records_redacted_total",
    "Records in which a redaction rule masked something, by rule or preset.",
    ["rule"],
    registry=REGISTRY,
)
json_parsed = Counter(
    "shipper_json_parsed_total",
    "Lines decoded as JSON objects into structured fields.",
    registry=REGISTRY,
)
json_errors = Counter(
    "shipper_json_errors_total",
    "Lines that looked like JSON but were kept as plain text, by reason.",
    ["reason"],
    registry=REGISTRY,
)
multiline_events = Counter(
    "shipper_multiline_events_total",
    "Events joined from two or more lines.",
    registry=REGISTRY,
)
buffer_corrupt_segments = Counter(
    "shipper_buffer_corrupt_segments_total",
    "Buffer segments found corrupt and moved aside.",
    registry=REGISTRY,
)
disk_full = Counter(
    "shipper_disk_full_total", "Writes refused for lack of disk space.", ["what"], registry=REGISTRY
)
rotation_risks = Counter(
    "shipper_rotation_risk_total",
    "Times a followed container's unread backlog came close to what Docker's log rotation "
    "keeps (max-size x max-file): lines may be lost before they are read.",
    registry=REGISTRY,
)
containers_at_rotation_risk = Gauge(
    "shipper_containers_at_rotation_risk",
    "Followed containers whose unread backlog is close to Docker's rotation limit now.",
    registry=REGISTRY,
)
log_files_lost = Counter(
    "shipper_log_files_lost_total",
    "Log files the runtime's rotation deleted before the shipper read them to their end "
    "(CRI source): the lines in them it had not read are lost.",
    registry=REGISTRY,
)
errors = Counter(
    "shipper_errors_total", "Errors by kind (each is also logged).", ["kind"], registry=REGISTRY
)
config_reloads = Counter(
    "shipper_config_reloads_total",
    "Config reloads on SIGHUP, by result (applied, unchanged, rejected).",
    ["result"],
    registry=REGISTRY,
)
build_info = Gauge(
    "shipper_build_info",
    "Always 1; the shipper's version in a label.",
    ["version"],
    registry=REGISTRY,
)


class ContainerSample(NamedTuple):
    """One followed container as the per-container metrics see it."""

    name: str
    checkpoint_lag_s: float  # now - the time of the container's checkpoint
    last_read_age_s: float | None  # seconds since lines were last read; None: none yet


class PerContainerCollector(Collector):
    """Per-container series, only with `metrics.per_container: true`.

    Produced at scrape time from the containers being followed right now, so the number of
    series is bounded by the containers on the host and a container's series go with it.
    """

    def __init__(self, source: Callable[[], list[ContainerSample]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "shipper_container_checkpoint_lag_seconds",
            "Seconds between now and the container's saved read position (per_container).",
            labels=["container_name"],
        )
        idle = GaugeMetricFamily(
            "shipper_container_last_read_age_seconds",
            "Seconds since lines of the container were last read (per_container).",
            labels=["container_name"],
        )
        for sample in self._source():
            lag.add_metric([sample.name], sample.checkpoint_lag_s)
            if sample.last_read_age_s is not None:
                idle.add_metric([sample.name], sample.last_read_age_s)
        yield lag
        yield idle

    def describe(self) -> Iterator[Metric]:
        return iter(())


# Per-container accounting (`shipper.accounting`): which counts are lines, which records.
_LINE_OUTCOMES = ("lines_read", "joined", "dropped_by_rule", "dropped_by_quota")
_RECORD_OUTCOMES = (
    "buffered",
    "summaries",
    "recovered",
    "stored",
    "already_stored",
    "failure_stored",
    "dead_lettered",
)


class ContainerAccountingCollector(Collector):
    """Where each container's lines went, only with `metrics.per_container: true`: one
    series per container and outcome, made at scrape time from the accounting."""

    def __init__(self, source: Callable[[], Sequence[tuple[str, Mapping[str, int]]]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        lines = CounterMetricFamily(
            "shipper_container_lines",
            "Lines of a container by what became of them, since start (per_container): "
            "lines_read, joined, dropped_by_rule, dropped_by_quota.",
            labels=["container_name", "outcome"],
        )
        records = CounterMetricFamily(
            "shipper_container_records",
            "Records of a container by what became of them, since start (per_container): "
            "buffered, summaries, recovered, stored, already_stored, failure_stored, dead_lettered.",
            labels=["container_name", "outcome"],
        )
        waiting = GaugeMetricFamily(
            "shipper_container_records_waiting",
            "Records of a container in the disk buffer, not acknowledged yet (per_container).",
            labels=["container_name"],
        )
        held = GaugeMetricFamily(
            "shipper_container_lines_held",
            "Lines of a container read and not handed on yet: an open multiline event, "
            "records on their way into the buffer (per_container).",
            labels=["container_name"],
        )
        for name, counts in self._source():
            for outcome in _LINE_OUTCOMES:
                lines.add_metric([name, outcome], counts[outcome])
            for outcome in _RECORD_OUTCOMES:
                records.add_metric([name, outcome], counts[outcome])
            waiting.add_metric([name], counts["waiting"])
            held.add_metric([name], counts["held"])
        yield lines
        yield records
        yield waiting
        yield held

    def describe(self) -> Iterator[Metric]:
        return iter(())


def enable_container_accounting(
    source: Callable[[], Sequence[tuple[str, Mapping[str, int]]]],
) -> Collector:
    collector = ContainerAccountingCollector(source)
    REGISTRY.register(collector)
    return collector


class BufferReadsCollector(Collector):
    """Where the disk buffer's reads found their blocks: its cache of what was just written,
    or the segment files (after a restart, or while the output lags far behind)."""

    def __init__(self, source: Callable[[], tuple[int, int]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        from_cache, from_file = self._source()
        reads = CounterMetricFamily(
            "shipper_buffer_blocks_read",
            "Blocks the output read from the disk buffer, by where they were found.",
            labels=["source"],
        )
        reads.add_metric(["cache"], from_cache)
        reads.add_metric(["file"], from_file)
        yield reads

    def describe(self) -> Iterator[Metric]:
        return iter(())


def enable_buffer_reads(source: Callable[[], tuple[int, int]]) -> Collector:
    collector = BufferReadsCollector(source)
    REGISTRY.register(collector)
    return collector


def counter_total_where(counter: Counter, **labels: str) -> float:
    """The sum of a counter over the label values that match `labels` (for reports)."""
    return sum(
        sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
        and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def counter_total(counter: Counter) -> float:
    """The sum of a counter over all its label values (for reports, not for hot paths)."""
    return sum(
        sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


def enable_per_container(source: Callable[[], list[ContainerSample]]) -> Collector:
    collector = PerContainerCollector(source)
    REGISTRY.register(collector)
    return collector


class RateLimitedLog:
    """Logs the first occurrence of each key, then at most once per interval with a count."""

    def __init__(self, interval_s: float = 30.0) -> None:
        self._interval_s = interval_s
        self._last: dict[str, tuple[float, int]] = {}

    def __call__(self, level: int, key: str, message: str, /, **fields: Any) -> None:
        now = time.monotonic()
        last, suppressed = self._last.get(key, (0.0, 0))
        if last and now - last < self._interval_s:
            self._last[key] = (last, suppressed + 1)
            return
        if suppressed:
            fields["suppressed_since_last"] = suppressed
        self._last[key] = (now, 0)
        log.log(level, message, extra={"fields": fields})


rate_limited = RateLimitedLog()


def error(kind: str, message: str, /, **fields: Any) -> None:
    """An error the operator should know about: counted, and logged at most every 30 s."""
    errors.labels(kind).inc()
    rate_limited(logging.ERROR, kind, message, **fields)


def warning(kind: str, message: str, /, **fields: Any) -> None:
    """A warning: counted, and logged at most every 30 s."""
    errors.labels(kind).inc()
    rate_limited(logging.WARNING, kind, message, **fields)


def warning_per(kind: str, subject: str, message: str, /, **fields: Any) -> None:
    """A warning counted under `kind`, its log rate-limited per `subject` (a container, a
    data stream): one subject's line must not hide another's."""
    errors.labels(kind).inc()
    rate_limited(logging.WARNING, f"{kind}:{subject}", message, **fields)


def every_time(
    logger: str,
    level: int,
    kind: str,
    message: str,
    /,
    *args: object,
    exc: BaseException | None = None,
) -> None:
    """A warning or error counted under `kind` and logged every time on `logger`, the
    message %-formatted with `args`: for lines that name a different file or problem each
    time and are few by nature, where a rate limit would hide which."""
    errors.labels(kind).inc()
    logging.getLogger(logger).log(level, message, *args, exc_info=exc)


def info(message: str, /, **fields: Any) -> None:
    """A fact worth a line (starts, stops, choices); not counted as an error."""
    log.info(message, extra={"fields": fields})


def info_per(key: str, subject: str, message: str, /, **fields: Any) -> None:
    """An info line that can repeat quickly, rate-limited per `key` and `subject`."""
    rate_limited(logging.INFO, f"{key}:{subject}", message, **fields)


def debug(message: str, /, **fields: Any) -> None:
    """A line for debugging only (`log.level: debug`)."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug(message, extra={"fields": fields})
