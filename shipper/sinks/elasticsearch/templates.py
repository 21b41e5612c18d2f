"""Index template for the shipper's data streams, installed idempotently at start.

Elasticsearch ships a built-in `logs` index template (`logs-*-*`, priority 100) that would
map `@timestamp` as `date` (millisecond precision). Ours matches the shipper's data streams
with a higher priority so that `@timestamp` is `date_nanos` and Docker's nanoseconds survive,
while every other `logs-*-*` stream keeps the built-in template.

A template carrying `_meta.managed_by: shipper` and a higher `_meta.version` than ours (a newer
shipper installed it), or one without our marker (a user's), is left alone.
"""

from __future__ import annotations

from typing import Any

from shipper import telemetry
from shipper.sinks.elasticsearch.client import ElasticsearchConnection, RequestFailed

TEMPLATE_VERSION = 1
TEMPLATE_PRIORITY = 200
COMPONENT_NAME = "shipper-logs-mappings"

_KEYWORD = {"type": "keyword", "ignore_above": 1024}


def mappings() -> dict[str, Any]:
    """Every field the shipper itself writes; anything else is mapped dynamically."""
    return {
        "properties": {
            "@timestamp": {"type": "date_nanos"},
            "message": {"type": "text"},
            "log": {"properties": {"iostream": _KEYWORD, "flags": _KEYWORD}},
            "container": {
                "properties": {
                    "id": _KEYWORD,
                    "name": _KEYWORD,
                    "runtime": _KEYWORD,
                    "image": {"properties": {"name": _KEYWORD}},
                    # flattened: any number of label keys without a mapping explosion.
                    "labels": {"type": "flattened", "ignore_above": 8191},
                }
            },
            "host": {"properties": {"name": _KEYWORD}},
            "docker": {
                "properties": {
                    "compose": {"properties": {"project": _KEYWORD, "service": _KEYWORD}}
                }
            },
            "ecs": {"properties": {"version": _KEYWORD}},
            "data_stream": {
                "properties": {
                    "type": {"type": "constant_keyword"},
                    "dataset": {"type": "constant_keyword"},
                    "namespace": {"type": "constant_keyword"},
                }
            },
        }
    }


def component_template() -> dict[str, Any]:
    return {
        "template": {"mappings": mappings()},
        "_meta": {"managed_by": "shipper", "version": TEMPLATE_VERSION},
    }


def index_template(patterns: list[str]) -> dict[str, Any]:
    return {
        "index_patterns": patterns,
        "data_stream": {},
        "priority": TEMPLATE_PRIORITY,
        "composed_of": [COMPONENT_NAME],
        "_meta": {"managed_by": "shipper", "version": TEMPLATE_VERSION},
    }


def template_name(data_stream: str) -> str:
    return f"shipper-{data_stream}"


async def install(connection: ElasticsearchConnection, data_stream: str) -> None:
    """Creates or upgrades our component and index templates; leaves newer or foreign ones."""
    name = template_name(data_stream)
    existing = await _existing_index_template(connection, name)
    if existing is not None:
        meta = existing.get("_meta") or {}
        if meta.get("managed_by") != "shipper" or int(meta.get("version", 0)) >= TEMPLATE_VERSION:
            telemetry.info(
                "Index template already present; left as it is.",
                template=name,
                managed_by=meta.get("managed_by"),
                version=meta.get("version"),
            )
            return
    await connection.request(
        "PUT", f"/_component_template/{COMPONENT_NAME}", body=component_template()
    )
    await connection.request("PUT", f"/_index_template/{name}", body=index_template([data_stream]))
    telemetry.info("Installed the index template.", template=name, data_stream=data_stream)


async def _existing_index_template(
    connection: ElasticsearchConnection, name: str
) -> dict[str, Any] | None:
    try:
        body = await connection.request("GET", f"/_index_template/{name}")
    except RequestFailed as exc:
        if exc.status == 404:
            return None
        raise
    for entry in (body or {}).get("index_templates") or ():
        if entry.get("name") == name:
            return dict(entry.get("index_template") or {})
    return None
