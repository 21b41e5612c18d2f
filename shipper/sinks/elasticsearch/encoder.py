"""Records → Elasticsearch bulk NDJSON, one `create` action and one document per record.

Hot path: a container's metadata never changes between two lines, so its part of the
document is serialised once (`ContainerDocument`) and spliced into each line's JSON as bytes;
per line only the timestamp, the message and the stream are serialised (by orjson).

Each encoded entry is the complete pair `{"create":{...}}\\n{document}\\n`, ready to be
concatenated into a `_bulk` body; the disk buffer stores exactly these bytes.

The `_id` is derived from (container id, timestamp, stream, seq), so a line read twice (after a
crash, a reconnect, or through another read mode) gets the same `_id` and Elasticsearch stores it
once: the second `create` answers 409, which the sink counts as success.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from shipper.model import ContainerMeta, LogRecord

ECS_VERSION = "8.11.0"


def document_id(container_id: str, timestamp_ns: int, stream: str, seq: int) -> str:
    """20 URL-safe characters, like Elasticsearch's own generated ids."""
    return _document_id_bytes(container_id.encode(), timestamp_ns, stream, seq).decode()


def _document_id_bytes(container_id: bytes, timestamp_ns: int, stream: str, seq: int) -> bytes:
    # The same bytes as f"{container_id}|{timestamp_ns}|{stream}|{seq}", without a str round trip.
    key = b"%s|%d|%s|%d" % (container_id, timestamp_ns, stream.encode(), seq)
    return base64.urlsafe_b64encode(_blake2b(key, digest_size=15).digest())


_blake2b = hashlib.blake2b


def sanitize_label_key(key: str) -> str:
    """Label keys become field names: dots would nest and collide (`a` vs `a.b`), so `_`."""
    cleaned = key.replace(".", "_").strip()
    return cleaned or "_"


@dataclass(frozen=True, slots=True)
class ContainerDocument:
    """The pre-serialised, per-container part of every document and its target."""

    container_id: str
    index: str
    fragment: bytes  # `"container":{...},"host":{...},...` without surrounding braces
    static_fields: Mapping[str, Any]  # the same, as nested dicts, for records with extra fields


def container_document(
    meta: ContainerMeta,
    *,
    index: str,
    host_name: str,
    extra_fields: Mapping[str, Any] | None = None,
) -> ContainerDocument:
    """Builds the static part of a container's documents (call again after a rename)."""
    container: dict[str, Any] = {
        "id": meta.id,
        "name": meta.name,
        "image": {"name": meta.image},
        "runtime": "docker",
    }
    if meta.labels:
        container["labels"] = {sanitize_label_key(k): v for k, v in sorted(meta.labels.items())}
    fields: dict[str, Any] = {
        "container": container,
        "host": {"name": host_name},
        "ecs": {"version": ECS_VERSION},
    }
    dataset, namespace = _dataset_namespace(index)
    if dataset is not None:
        fields["data_stream"] = {"type": "logs", "dataset": dataset, "namespace": namespace}
    if meta.compose_project is not None or meta.compose_service is not None:
        compose: dict[str, str] = {}
        if meta.compose_project is not None:
            compose["project"] = meta.compose_project
        if meta.compose_service is not None:
            compose["service"] = meta.compose_service
        # ECS has no Compose fields; Filebeat's docker metadata uses this place for them.
        fields["docker"] = {"compose": compose}
    if extra_fields:
        merge_dotted(fields, extra_fields)
    fragment = orjson.dumps(fields)[1:-1]
    return ContainerDocument(meta.id, index, fragment, fields)


def encode_records(records: Sequence[LogRecord], doc: ContainerDocument) -> list[bytes]:
    """Bulk entries (action + document) for records of one container."""
    action_prefix = b'{"create":{"_index":' + orjson.dumps(doc.index) + b',"_id":"'
    out: list[bytes] = []
    append = out.append
    dumps = orjson.dumps
    container_id = doc.container_id.encode()
    tail = b"}," + doc.fragment + b"}\n"
    iostream = {"stdout": b'{"iostream":"stdout"', "stderr": b'{"iostream":"stderr"'}
    for record in records:
        ts, stream = record.timestamp_ns, record.stream
        _id = _document_id_bytes(container_id, ts, stream, record.seq)
        if record.fields is None:
            log_part = iostream.get(stream) or b'{"iostream":' + dumps(stream)
            if record.flags:
                log_part += b',"flags":' + dumps(record.flags)
            # One %-format builds the entry in a single allocation.
            append(
                b'%s%s"}}\n{"@timestamp":"%s","message":%s,"log":%s%s'
                % (
                    action_prefix,
                    _id,
                    _timestamp_bytes(ts),
                    dumps(record.message),
                    log_part,
                    tail,
                )
            )
        else:
            append(action_prefix + _id + b'"}}\n' + dumps(_full_document(record, doc)) + b"\n")
    return out


def _full_document(record: LogRecord, doc: ContainerDocument) -> dict[str, Any]:
    document: dict[str, Any] = {
        "@timestamp": format_timestamp(record.timestamp_ns),
        "message": record.message,
    }
    log: dict[str, Any] = {"iostream": record.stream}
    if record.flags:
        log["flags"] = list(record.flags)
    document["log"] = log
    merge_dotted(document, _copy_nested(doc.static_fields))
    if record.fields:
        merge_dotted(document, record.fields)
    return document


def merge_dotted(target: dict[str, Any], fields: Mapping[str, Any]) -> None:
    """Merges `{"a.b": 1, "c": {...}}` into nested dicts; later values win on leaves."""
    for dotted, value in fields.items():
        node = target
        *parents, leaf = dotted.split(".") if dotted != "@timestamp" else [dotted]
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        existing = node.get(leaf)
        if isinstance(existing, dict) and isinstance(value, Mapping):
            merge_dotted(existing, value)
        else:
            node[leaf] = value


def _copy_nested(value: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _copy_nested(v) if isinstance(v, Mapping) else v for k, v in value.items()}


def _dataset_namespace(index: str) -> tuple[str | None, str]:
    parts = index.split("-")
    if len(parts) >= 3 and parts[0] == "logs":
        return "-".join(parts[1:-1]), parts[-1]
    return None, ""


_second_cache: dict[int, bytes] = {}


def format_timestamp(ns: int) -> str:
    """RFC 3339 with nine fraction digits in UTC; the date part is cached per second."""
    return _timestamp_bytes(ns).decode()


def _timestamp_bytes(ns: int) -> bytes:
    seconds, nanos = divmod(ns, 1_000_000_000)
    prefix = _second_cache.get(seconds)
    if prefix is None:
        if len(_second_cache) > 1024:
            _second_cache.clear()
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode()
        _second_cache[seconds] = prefix
    return b"%s.%09dZ" % (prefix, nanos)


def decode_entry(entry: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """Splits a buffered entry back into (action, document), e.g. for dead-lettering."""
    action_line, _, document_line = entry.partition(b"\n")
    return orjson.loads(action_line), orjson.loads(document_line)


_CREATE_PREFIX = b'{"create":{"_index":"'


def index_of(entry: bytes) -> str:
    """The `_index` of a buffered entry, cheaply: our own entries start with a fixed prefix
    (index names cannot contain `"` or `\\`, so the name ends at the next quote)."""
    if entry.startswith(_CREATE_PREFIX):
        end = entry.find(b'"', len(_CREATE_PREFIX))
        if end > 0:
            return entry[len(_CREATE_PREFIX) : end].decode("utf-8", "replace")
    try:
        action = orjson.loads(entry.partition(b"\n")[0])
        return str(next(iter(action.values())).get("_index", ""))
    except (orjson.JSONDecodeError, StopIteration, AttributeError):
        return ""
