"""Adding document fields to a record without mutating what another stage may share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shipper.model import LogRecord


def with_fields(record: LogRecord, extra: Mapping[str, Any]) -> LogRecord:
    """`record` with `extra` merged into its fields; `tags` lists are concatenated."""
    if not record.fields:
        return record._replace(fields=dict(extra))
    merged = dict(record.fields)
    for key, value in extra.items():
        if key == "tags" and isinstance(merged.get("tags"), list):
            merged["tags"] = [*merged["tags"], *value]
        else:
            merged[key] = value
    return record._replace(fields=merged)
