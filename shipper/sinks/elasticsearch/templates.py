"""Index templates, component templates and the optional ILM policy, installed idempotently.

Strategy: one index template **per data stream the shipper writes to**, named
`shipper-<stream>`, whose only pattern is the stream's exact name, at priority 200. Elasticsearch
ships a built-in `logs` template (`logs-*-*`, priority 100) that maps `@timestamp` as `date`
(milliseconds); ours wins for exactly our streams, so `@timestamp` is `date_nanos` there, while
every other `logs-*-*` stream keeps the built-in template. Routing makes the set of streams
open-ended (a label can name a new dataset), so templates are installed lazily: the sink calls
`ensure()` with a batch's target streams before sending it, and the first write to a stream
always finds its template (a data stream takes its mappings from the template when it is
created, so a late template would only apply after the next rollover). Exact-name patterns
never overlap, so many shippers (a DaemonSet) install the same templates without fighting over
a shared pattern list. The mappings and settings live in component templates shared by all.

Failure store (`elasticsearch.failure_store: on`, Elasticsearch 8.19 / 9.1 and later): each
index template of a log stream carries `template.data_stream_options.failure_store.enabled:
true` (the syntax of the 9.1 reference, "Set up a data stream failure store"), which a data
stream takes once, when it is created. The dead-letter stream keeps it off: what its own
mapping refuses goes to the dead-letter file, the last resort, not to a failure store. `off`
writes no data stream options, leaving the cluster's `data_streams.failure_store.enabled`
setting in charge. The index template's digest covers the option, so switching it updates
the templates at the next start.

Ownership: everything we write carries `_meta: {managed_by: shipper, version, digest}`.
Something without our marker (a user's), or with a higher version (a newer shipper), is left
alone unless `elasticsearch.template_overwrite` is true; ours with a different digest is
updated; ours with the same digest is not touched (so starting is cheap and idempotent).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from shipper import events
from shipper.config import ElasticsearchConfig, IlmConfig
from shipper.events.elasticsearch import Installable
from shipper.sinks.elasticsearch.client import ElasticsearchConnection, RequestFailed

TEMPLATE_VERSION = 2
TEMPLATE_PRIORITY = 200
MAPPINGS_COMPONENT = "shipper-logs-mappings"
SETTINGS_COMPONENT = "shipper-logs-settings"
DEAD_LETTER_COMPONENT = "shipper-deadletter-mappings"

_KEYWORD = {"type": "keyword", "ignore_above": 1024}
_CONSTANT = {"type": "constant_keyword"}


def _keywords(*names: str) -> dict[str, Any]:
    return {name: _KEYWORD for name in names}


def _data_stream_fields() -> dict[str, Any]:
    return {
        "properties": {"type": _CONSTANT, "dataset": _CONSTANT, "namespace": _CONSTANT},
    }


def mappings() -> dict[str, Any]:
    """Every field the shipper itself writes; anything else is mapped dynamically."""
    return {
        "properties": {
            "@timestamp": {"type": "date_nanos"},
            "message": {"type": "text"},
            "log": {
                "properties": {**_keywords("iostream", "flags", "level", "logger")},
            },
            "event": {
                "properties": {
                    "created": {"type": "date"},
                    # json_logs.keep_original: the line as written, in _source only (ECS).
                    "original": {"type": "keyword", "index": False, "doc_values": False},
                    # A rate-limit summary: the first and last line it dropped.
                    "start": {"type": "date_nanos"},
                    "end": {"type": "date_nanos"},
                }
            },
            "tags": _KEYWORD,
            # Decoded JSON logs: whatever the application writes, mapped dynamically.
            "json": {"type": "object", "dynamic": True},
            "container": {
                "properties": {
                    **_keywords("id", "name", "runtime"),
                    "image": {
                        "properties": {
                            **_keywords("name", "tag"),
                            "hash": {"properties": _keywords("all")},
                        }
                    },
                    # flattened: any number of keys without a mapping explosion.
                    "labels": {"type": "flattened", "ignore_above": 8191},
                    "env": {"type": "flattened", "ignore_above": 8191},
                }
            },
            "kubernetes": {
                "properties": {
                    "namespace": _KEYWORD,
                    "pod": {"properties": _keywords("name", "uid")},
                    "container": {"properties": _keywords("name")},
                    "node": {"properties": _keywords("name")},
                    # A pod's labels and annotations: flattened, as container.labels.
                    "labels": {"type": "flattened", "ignore_above": 8191},
                    "annotations": {"type": "flattened", "ignore_above": 8191},
                }
            },
            "host": {"properties": _keywords("name")},
            "docker": {"properties": {"compose": {"properties": _keywords("project", "service")}}},
            "ecs": {"properties": _keywords("version")},
            "data_stream": _data_stream_fields(),
            # Rate-limit summary records (sources/quota.py).
            "shipper": {
                "properties": {
                    "rate_limit": {
                        "properties": {
                            "rule": _KEYWORD,
                            "dropped_lines": {"type": "long"},
                            "dropped_bytes": {"type": "long"},
                        }
                    }
                }
            },
        }
    }


def dead_letter_mappings() -> dict[str, Any]:
    """The dead-letter documents: the original as an unindexed string, and why it failed."""
    return {
        "dynamic": False,
        "properties": {
            "@timestamp": {"type": "date_nanos"},
            "message": {"type": "text"},
            "event": {
                "properties": {
                    "original": {"type": "keyword", "index": False, "doc_values": False},
                    "kind": _KEYWORD,
                }
            },
            "error": {"properties": {"type": _KEYWORD, "message": {"type": "text"}}},
            "http": {
                "properties": {
                    "response": {"properties": {"status_code": {"type": "long"}}},
                }
            },
            "shipper": {"properties": _keywords("target_index", "document_id")},
            "host": {"properties": _keywords("name")},
            "data_stream": _data_stream_fields(),
        },
    }


def settings(ilm: IlmConfig) -> dict[str, Any]:
    return {"index": {"lifecycle": {"name": ilm.policy_name}}} if ilm.enabled else {}


def ilm_policy(ilm: IlmConfig) -> dict[str, Any]:
    phases: dict[str, Any] = {
        "hot": {
            "actions": {
                "rollover": {
                    "max_age": ilm.rollover_max_age,
                    "max_primary_shard_size": ilm.rollover_max_primary_shard_size,
                }
            }
        }
    }
    if ilm.delete_after is not None:
        phases["delete"] = {"min_age": ilm.delete_after, "actions": {"delete": {}}}
    return {"phases": phases}


def index_template(
    stream: str, composed_of: list[str], failure_store: bool = False
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "index_patterns": [stream],
        "data_stream": {},
        "priority": TEMPLATE_PRIORITY,
        "composed_of": composed_of,
    }
    if failure_store:
        body["template"] = {"data_stream_options": {"failure_store": {"enabled": True}}}
    return body


# The first release of each major whose data streams have a failure store (generally
# available in 8.19 and 9.1; 9.0 had it only behind a feature flag).
FAILURE_STORE_SINCE = {8: (8, 19), 9: (9, 1)}


def supports_failure_store(version: str) -> bool:
    """Whether a cluster of this version (`8.19.3`, `9.1.2`, `10.0.0-SNAPSHOT`...) has one."""
    try:
        major, minor = (int(part) for part in version.split("-")[0].split(".")[:2])
    except ValueError:
        return False
    since = FAILURE_STORE_SINCE.get(major)
    if since is None:
        return major > max(FAILURE_STORE_SINCE)
    return (major, minor) >= since


def template_name(data_stream: str) -> str:
    return f"shipper-{data_stream}"


def with_meta(body: Mapping[str, Any]) -> dict[str, Any]:
    """`body` with our ownership marker; the digest covers everything but the marker."""
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    return {
        **body,
        "_meta": {"managed_by": "shipper", "version": TEMPLATE_VERSION, "digest": digest},
    }


def should_write(
    existing: Mapping[str, Any] | None, desired: Mapping[str, Any], overwrite: bool
) -> tuple[bool, str]:
    """Whether to PUT `desired` (which carries our `_meta`) over `existing`, and why (pure)."""
    if existing is None:
        return True, "missing"
    meta = existing.get("_meta") or {}
    ours = desired["_meta"]
    if meta.get("managed_by") != "shipper":
        return overwrite, "not managed by the shipper"
    try:
        version = int(meta.get("version", 0))
    except (TypeError, ValueError):
        version = 0
    if version > ours["version"]:
        return overwrite, f"installed by a newer shipper (version {version})"
    if meta.get("digest") == ours["digest"] and version == ours["version"]:
        return False, "up to date"
    return True, "outdated"


class TemplateRefused(Exception):
    """Elasticsearch refused a template for good (no privilege, overlapping pattern...)."""


class TemplateManager:
    """Installs shared parts once and one index template per target stream, on demand."""

    def __init__(self, connection: ElasticsearchConnection, config: ElasticsearchConfig) -> None:
        self._connection = connection
        self._config = config
        self._shared_done = False
        self._ready: set[str] = set()
        self._dead_letter = config.dead_letter.data_stream

    @property
    def enabled(self) -> bool:
        return self._config.install_template

    async def ensure(self, streams: Iterable[str]) -> None:
        """Raises RequestFailed when the cluster cannot answer now (the caller retries)."""
        if not self.enabled:
            return
        for stream in streams:
            if stream in self._ready:
                continue
            try:
                if not self._shared_done:
                    await self._install_shared()
                    self._shared_done = True
                components = [
                    DEAD_LETTER_COMPONENT if stream == self._dead_letter else MAPPINGS_COMPONENT,
                    SETTINGS_COMPONENT,
                ]
                failure_store = self._config.failure_store == "on" and stream != self._dead_letter
                await self._put_if_needed(
                    "index template",
                    template_name(stream),
                    f"/_index_template/{template_name(stream)}",
                    with_meta(index_template(stream, components, failure_store)),
                    self._get_index_template,
                )
            except TemplateRefused as exc:
                # Shipping goes on: the stream then gets whatever template matches it.
                events.elasticsearch.template_refused(data_stream=stream, error=exc)
            self._ready.add(stream)

    async def _install_shared(self) -> None:
        ilm = self._config.ilm
        if ilm.enabled:
            await self._put_if_needed(
                "ILM policy",
                ilm.policy_name,
                f"/_ilm/policy/{ilm.policy_name}",
                {"policy": with_meta(ilm_policy(ilm))},
                self._get_policy,
                unwrap="policy",
            )
        for name, body in (
            (MAPPINGS_COMPONENT, {"template": {"mappings": mappings()}}),
            (DEAD_LETTER_COMPONENT, {"template": {"mappings": dead_letter_mappings()}}),
            (SETTINGS_COMPONENT, {"template": {"settings": settings(ilm)}}),
        ):
            await self._put_if_needed(
                "component template",
                name,
                f"/_component_template/{name}",
                with_meta(body),
                self._get_component,
            )

    async def _put_if_needed(
        self,
        kind: Installable,
        name: str,
        path: str,
        body: dict[str, Any],
        get: Any,
        unwrap: str | None = None,
    ) -> None:
        existing = await self._get(get, name)
        desired = body[unwrap] if unwrap else body
        write, why = should_write(existing, desired, self._config.template_overwrite)
        if not write:
            if why != "up to date":
                events.elasticsearch.template_left_alone(what=kind, name=name, why=why)
            return
        try:
            await self._connection.request("PUT", path, body=body)
        except RequestFailed as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status not in (408, 429):
                raise TemplateRefused(f"{kind} {name}: {exc}") from exc
            raise
        events.elasticsearch.template_installed(what=kind, name=name, why=why)

    async def _get(self, get: Any, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] | None = await get(name)
        except RequestFailed as exc:
            if exc.status == 404:
                return None
            if exc.status in (401, 403):
                raise TemplateRefused(f"cannot read {name}: {exc}") from exc
            raise
        return result

    async def _get_index_template(self, name: str) -> dict[str, Any] | None:
        body = await self._connection.request("GET", f"/_index_template/{name}")
        for entry in (body or {}).get("index_templates") or ():
            if entry.get("name") == name:
                return dict(entry.get("index_template") or {})
        return None

    async def _get_component(self, name: str) -> dict[str, Any] | None:
        body = await self._connection.request("GET", f"/_component_template/{name}")
        for entry in (body or {}).get("component_templates") or ():
            if entry.get("name") == name:
                return dict(entry.get("component_template") or {})
        return None

    async def _get_policy(self, name: str) -> dict[str, Any] | None:
        body = await self._connection.request("GET", f"/_ilm/policy/{name}")
        entry = (body or {}).get(name)
        return dict(entry.get("policy") or {}) if isinstance(entry, Mapping) else None
