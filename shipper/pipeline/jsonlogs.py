"""Decodes JSON-object lines into structured fields and promotes common keys to ECS.

Promoted keys are moved, not copied, so the document does not hold them twice:
  message | msg                     → message (strings only)
  level | severity | log.level      → log.level (lower-cased; pino/bunyan numbers named)
  logger | log.logger               → log.logger
  @timestamp | timestamp | time | ts → event.created (ISO 8601; epoch s/ms/µs/ns numbers
                                       are converted). Docker's time stays `@timestamp`: it
                                       is what the `_id` and checkpoints are built on.
A timestamp that is not ISO 8601 or epoch stays in the object: Elasticsearch would reject the
whole document if `event.created` failed to parse as a date. Without a message key the raw
line stays the message, so the event is still found by full-text search.

The remaining keys go under `target` (default `json`). With target "" they go to the root;
then a key whose first dotted segment is one the shipper writes itself (`@timestamp`,
`message`, `log`, `event`, `container`, ..., and `json`) is moved under `json` instead, so an
application can neither overwrite the shipper's fields nor break their mapping.

A line that is not a JSON object, is invalid, nests objects deeper than `max_depth` or holds
more than `max_fields` keys (all levels) stays plain text with a tag saying why, counted.

With `keep_original`, a line that was decoded also keeps its text as written in
`event.original` (mapped `index: false, doc_values: false`: stored, costs disk only), since
decoding replaced `message`. Redaction, which runs later, masks secrets there too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from shipper.config import SHIPPER_FIELD_ROOTS
from shipper.model import LogRecord, record_field
from shipper.pipeline.fields import with_fields
from shipper.pipeline.stats import ProcessorStats

_MESSAGE_FIELD = record_field("message")

JSON_INVALID = "json_invalid"
JSON_NOT_OBJECT = "json_not_object"
JSON_TOO_DEEP = "json_too_deep"
JSON_TOO_MANY_FIELDS = "json_too_many_fields"
OVERFLOW_TARGET = "json"  # where root-target keys that clash with ours go

_MESSAGE_KEYS = ("message", "msg")
_LEVEL_KEYS = ("level", "severity", "log.level")
_LOGGER_KEYS = ("logger", "log.logger")
_TIME_KEYS = ("@timestamp", "timestamp", "time", "ts")
# pino and bunyan log numeric levels
_NUMERIC_LEVELS = {10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal"}
_RESERVED_ROOTS = SHIPPER_FIELD_ROOTS | {OVERFLOW_TARGET}


@dataclass(frozen=True, slots=True)
class JsonSpec:
    auto: bool  # only lines starting with "{" are tried, others pass silently
    target: str
    max_depth: int
    max_fields: int
    keep_original: bool = False  # the line as written, in event.original


class JsonDecoder:
    def __init__(self, spec: JsonSpec, stats: ProcessorStats) -> None:
        self.spec = spec
        self._stats = stats

    def apply(self, records: list[LogRecord]) -> list[LogRecord]:
        decode = self.decode
        if self.spec.auto:
            # Most batches of a plain-text container hold no "{" at all: one search of the
            # whole batch instead of a test per line.
            if len(records) > 1 and "{" not in "\n".join(map(_MESSAGE_FIELD, records)):
                return records
            return [decode(r) if r.message.startswith("{") else r for r in records]
        return [decode(r) for r in records]

    def decode(self, record: LogRecord) -> LogRecord:
        try:
            value = orjson.loads(record.message)
        except orjson.JSONDecodeError:
            return self._reject(record, JSON_INVALID)
        if not isinstance(value, dict):
            return self._reject(record, JSON_NOT_OBJECT)
        problem = _check_shape(value, self.spec.max_depth, self.spec.max_fields)
        if problem is not None:
            return self._reject(record, problem)
        self._stats.json_parsed += 1
        fields: dict[str, Any] = {}
        if self.spec.keep_original:
            fields["event.original"] = record.message
        message = _pop_first(value, _MESSAGE_KEYS, _as_message)
        level = _pop_first(value, _LEVEL_KEYS, _as_level)
        if level is not None:
            fields["log.level"] = level
        logger = _pop_first(value, _LOGGER_KEYS, _as_message)
        if logger is not None:
            fields["log.logger"] = logger
        created = _pop_first(value, _TIME_KEYS, _as_time)
        if created is not None:
            fields["event.created"] = created
        if self.spec.target:
            if value:
                fields[self.spec.target] = value
        else:
            overflow = {}
            for key, item in value.items():
                if key.partition(".")[0] in _RESERVED_ROOTS:
                    overflow[key] = item
                else:
                    fields[key] = item
            if overflow:
                fields[OVERFLOW_TARGET] = overflow
        if message is not None:
            record = record._replace(message=message)
        return with_fields(record, fields) if fields else record

    def _reject(self, record: LogRecord, reason: str) -> LogRecord:
        self._stats.json_errors[reason] += 1
        return with_fields(record, {"tags": [reason]})


def _check_shape(document: dict[str, Any], max_depth: int, max_fields: int) -> str | None:
    """Depth counts nested objects (arrays are transparent, as in Elasticsearch mappings)."""
    fields = 0
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if depth > max_depth:
                return JSON_TOO_DEEP
            fields += len(node)
            if fields > max_fields:
                return JSON_TOO_MANY_FIELDS
            children = node.values()
            depth += 1
        else:
            children = node
        stack.extend((child, depth) for child in children if isinstance(child, dict | list))
    return None


def _pop_first(document: dict[str, Any], keys: tuple[str, ...], convert: Any) -> Any:
    for key in keys:
        if key in document:
            converted = convert(document[key])
            if converted is not None:
                del document[key]
                return converted
    return None


def _as_message(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _as_level(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip().lower() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return _NUMERIC_LEVELS.get(value, str(value))
    return None


def _as_time(value: Any) -> str | None:
    try:
        if isinstance(value, str):
            return datetime.fromisoformat(value).isoformat()
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            # The magnitude tells the unit: seconds until the year 5138, then ms, µs, ns.
            seconds = float(value)
            for _ in range(3):
                if seconds < 1e11:
                    break
                seconds /= 1000
            return datetime.fromtimestamp(seconds, tz=UTC).isoformat()
    except (ValueError, OverflowError, OSError):
        return None
    return None
