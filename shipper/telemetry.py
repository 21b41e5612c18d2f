"""Prometheus metrics and the notable events that both log and count.

Naming follows Prometheus conventions: `shipper_<noun>_<unit>_total` for counters, base
units (seconds, bytes). Labels are low-cardinality on purpose (stream, status, error type,
reason); nothing is labelled by container unless an operator asks for it.

Every notable event is one function here, so each one logs a sentence with structured
fields and moves its counter in the same place, and repeated errors are rate-limited.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

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
    "shipper_bulk_requests_total", "Bulk requests sent, by outcome.", ["outcome"], registry=REGISTRY
)
bulk_duration = Histogram(
    "shipper_bulk_request_duration_seconds",
    "Latency of bulk requests.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
bulk_items = Counter(
    "shipper_bulk_items_total",
    "Bulk item results, by HTTP status and error type.",
    ["status", "error_type"],
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
buffer_corrupt_segments = Counter(
    "shipper_buffer_corrupt_segments_total",
    "Buffer segments found corrupt and moved aside.",
    registry=REGISTRY,
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
)
disk_full = Counter(
    "shipper_disk_full_total", "Writes refused for lack of disk space.", ["what"], registry=REGISTRY
)
errors = Counter(
    "shipper_errors_total", "Errors by kind (each is also logged).", ["kind"], registry=REGISTRY
)


class RateLimitedLog:
    """Logs the first occurrence of each key, then at most once per interval with a count."""

    def __init__(self, interval_s: float = 30.0) -> None:
        self._interval_s = interval_s
        self._last: dict[str, tuple[float, int]] = {}

    def __call__(self, level: int, key: str, message: str, **fields: Any) -> None:
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


def error(kind: str, message: str, **fields: Any) -> None:
    """An error the operator should know about: counted, and logged at most every 30 s."""
    errors.labels(kind).inc()
    rate_limited(logging.ERROR, kind, message, **fields)


def warning(kind: str, message: str, **fields: Any) -> None:
    errors.labels(kind).inc()
    rate_limited(logging.WARNING, kind, message, **fields)


def info(message: str, **fields: Any) -> None:
    log.info(message, extra={"fields": fields})


def debug(message: str, **fields: Any) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug(message, extra={"fields": fields})
