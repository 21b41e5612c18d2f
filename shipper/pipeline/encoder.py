"""Records → the disk buffer's entries: Elasticsearch bulk NDJSON, one `create` action and
one document per record. The last stage before the buffer: every output reads these bytes.

Hot path: a container's metadata never changes between two lines, so its part of the
document is serialised once (`ContainerDocument`), together with everything else that is the
same for every line of a stream, into one %-format template per stream; per line only the
message is serialised (by orjson) and one `%` builds the whole entry in a single allocation.

Each encoded entry is the complete pair `{"create":{...}}\\n{document}\\n`, ready to be
concatenated into a `_bulk` body; the disk buffer stores exactly these bytes. A container
routed through an ingest pipeline has it in its action, `{"create":{"_index":..,
"pipeline":..,"_id":..}}`, so it is buffered with the record and survives a restart; without
one the action is exactly as before.

The `_id` is derived from (container id, timestamp, stream, seq), so a line read twice (after a
crash, a reconnect, or through another read mode) gets the same `_id` and Elasticsearch stores it
once: the second `create` answers 409, which the sink counts as success. It is written out, not
hashed: the timestamp first (16 hex digits), then the first 16 hex digits of the container id,
`o`/`e` for the stream and the seq in hex, e.g. `18a3c3b2f1e0d9c8dd7eab1c4e02a1b3o0`. Ids that
start with the time are what Lucene looks up fastest (each `create` checks whether its id
exists, and ids of one moment share their terms-index blocks, like Elasticsearch's own
time-based ids), and writing them costs a fraction of a hash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from shipper.buffer.format import JoinedEntries
from shipper.lines.timestamps import format_timestamp, second_prefix
from shipper.model import STDERR, STDOUT, ContainerMeta, LogRecord
from shipper.native import native

ECS_VERSION = "8.11.0"


def document_id(container_id: str, timestamp_ns: int, stream: str, seq: int) -> str:
    """The deterministic `_id` of a line (see the module docstring)."""
    return f"{timestamp_ns:016x}{_id_container(container_id)}{_STREAM_CODES[stream]}{seq:x}"


def _id_container(container_id: str) -> str:
    # Docker ids are 64 hex digits; 16 of them (64 bits) with the timestamp make a collision
    # between two containers of a cluster as good as impossible. Shorter ids (tests, other
    # runtimes) are padded so every part of the id keeps a fixed place.
    return container_id[:16].ljust(16, "_")


_STREAM_CODES = {"stdout": "o", "stderr": "e"}
# The stream code of a rate-limit summary record: no line has it, so no id of a line can
# ever be taken by a summary, nor the reverse.
_RATE_LIMIT_CODE = "r"


def container_key(container_id: str) -> str:
    """The part of every `_id` that names the container: what accounting keys by."""
    return _id_container(container_id)


_ID_MARK = b'"_id":"'
_ID_PREFIX_BYTES = 16  # the timestamp's hex digits before the container's part


def container_key_of(entry: bytes) -> str:
    """The container key in a buffered entry's `_id` ("" if it has none). Reads only the
    action line's start: index names are at most 255 bytes."""
    at = entry.find(_ID_MARK, 0, 320)
    if at < 0:
        return ""
    start = at + len(_ID_MARK) + _ID_PREFIX_BYTES
    return entry[start : start + 16].decode("ascii", "replace")


def summary_id(container_id: str, window_start_ns: int) -> str:
    """The `_id` of a container's rate-limit summary record of the interval starting then."""
    return f"{window_start_ns:016x}{_id_container(container_id)}{_RATE_LIMIT_CODE}0"


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
    # Per stream, the whole entry of a plain line: a %-format of (timestamp_ns, seq,
    # "YYYY-MM-DDTHH:MM:SS", nanoseconds, message as JSON, tail), and that tail.
    templates: Mapping[str, tuple[bytes, bytes]]
    # The same pieces for the C hot path: (action up to the id, id middle and tail per
    # stream, the stream names), see `encode_joined` in shipper/_native.c.
    native_parts: tuple[bytes | str, ...] = ()
    pipeline: str | None = None  # the bulk action's ingest pipeline


def container_document(
    meta: ContainerMeta,
    *,
    index: str,
    host_name: str,
    extra_fields: Mapping[str, Any] | None = None,
    pipeline: str | None = None,
) -> ContainerDocument:
    """Builds the static part of a container's documents (call again after a rename)."""
    container: dict[str, Any] = {
        "id": meta.id,
        "name": meta.name,
        "image": {"name": meta.image},
        "runtime": meta.runtime,
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
    # The action (with the index) and the id's container part are fixed; so is everything
    # after the message, which goes in as the last argument rather than as format text:
    # the formatter scans its format byte by byte, but copies an argument whole.
    action = b'{"create":{"_index":' + orjson.dumps(index) + _pipeline_part(pipeline) + b',"_id":"'
    id_container = _id_container(meta.id).encode()
    templates = {
        stream: (
            action.replace(b"%", b"%%")
            + b"%016x"
            + id_container.replace(b"%", b"%%")
            + code.encode()
            + b'%x"}}\n{"@timestamp":"%s.%09dZ","message":%s,%s',
            b'"log":{"iostream":"' + stream.encode() + b'"},' + fragment + b"}\n",
        )
        for stream, code in _STREAM_CODES.items()
    }
    tails = {stream: template[1] for stream, template in templates.items()}
    native_parts = (
        action,
        id_container + b"o",
        id_container + b"e",
        tails[STDOUT],
        tails[STDERR],
        STDOUT,
        STDERR,
    )
    return ContainerDocument(meta.id, index, fragment, fields, templates, native_parts, pipeline)


def _pipeline_part(pipeline: str | None) -> bytes:
    """`,"pipeline":"<id>"` for the action, between `_index` and `_id` (the index stays
    first, where `index_of` finds it); nothing without a pipeline."""
    return b"" if pipeline is None else b',"pipeline":' + orjson.dumps(pipeline)


def python_encode_records(records: Sequence[LogRecord], doc: ContainerDocument) -> list[bytes]:
    """Bulk entries (action + document) for records of one container."""
    out: list[bytes] = []
    append = out.append
    dumps = orjson.dumps
    templates = doc.templates
    second_start = second_end = -1  # the epoch second of `prefix`, in ns: [start, end)
    prefix = b""
    for record in records:
        _, ts, stream, seq, message, flags, fields, _ = record
        template = templates.get(stream)
        if fields is None and not flags and template is not None:
            if not second_start <= ts < second_end:
                second = ts // 1_000_000_000
                second_start = second * 1_000_000_000
                second_end = second_start + 1_000_000_000
                prefix = second_prefix(second)
            head, tail = template
            append(head % (ts, seq, prefix, ts - second_start, dumps(message), tail))
        else:
            append(_full_entry(record, doc))
    return out


def python_encode_joined(records: Sequence[LogRecord], doc: ContainerDocument) -> JoinedEntries:
    """`encode_records`, concatenated: what the disk buffer stores as a block."""
    return JoinedEntries.of(python_encode_records(records, doc))


def _c_encode_records(records: Sequence[LogRecord], doc: ContainerDocument) -> list[bytes]:
    return _c_encode_joined(records, doc).entries()


def _c_encode_joined(records: Sequence[LogRecord], doc: ContainerDocument) -> JoinedEntries:
    """`python_encode_joined` with the C hot path: it writes a run of plain records straight
    into one bytes object (no object per entry, no join after); each record it stops at is
    encoded by `_full_entry`, as in `python_encode_records`."""
    assert native is not None  # bound below only when it is loaded
    batch = records if isinstance(records, list) else list(records)
    pieces: list[bytes] = []
    lengths: list[int] = []
    pos = 0
    count = len(batch)
    while pos < count:
        pos = native.encode_joined(batch, pos, pieces, lengths, doc.native_parts)
        if pos < count:
            entry = _full_entry(batch[pos], doc)
            pieces.append(entry)
            lengths.append(len(entry))
            pos += 1
    return JoinedEntries(pieces[0] if len(pieces) == 1 else b"".join(pieces), lengths)


# Chosen once, at import (shipper/native.py decides whether the C hot path is usable).
encode_records, encode_joined = (
    (_c_encode_records, _c_encode_joined)
    if native is not None
    else (python_encode_records, python_encode_joined)
)


def _full_entry(record: LogRecord, doc: ContainerDocument) -> bytes:
    """The general path: flags, fields from processing stages, any stream."""
    target: dict[str, str] = {"_index": doc.index}
    if doc.pipeline is not None:
        target["pipeline"] = doc.pipeline
    target["_id"] = _full_id(record)
    action = {"create": target}
    if record.fields is None:
        document: dict[str, Any] = {
            "@timestamp": format_timestamp(record.timestamp_ns),
            "message": record.message,
            "log": {"iostream": record.stream, "flags": list(record.flags)},
        }
        if not record.flags:
            del document["log"]["flags"]
        body = orjson.dumps(document)[:-1] + b"," + doc.fragment + b"}"
    else:
        body = orjson.dumps(_full_document(record, doc))
    return orjson.dumps(action) + b"\n" + body + b"\n"


def encode_event(
    doc: ContainerDocument,
    doc_id: str,
    timestamp_ns: int,
    message: str,
    flags: Sequence[str],
    fields: Mapping[str, Any],
) -> bytes:
    """The entry of a document about a container that is not one of its lines (a rate-limit
    summary): the container's static fields, no stream, the `_id` given."""
    document: dict[str, Any] = {"@timestamp": format_timestamp(timestamp_ns), "message": message}
    if flags:
        document["log"] = {"flags": list(flags)}
    merge_dotted(document, _copy_nested(doc.static_fields))
    merge_dotted(document, fields)
    action = {"create": {"_index": doc.index, "_id": doc_id}}
    return orjson.dumps(action) + b"\n" + orjson.dumps(document) + b"\n"


def _full_id(record: LogRecord) -> str:
    code = _STREAM_CODES.get(record.stream)
    if code is None:  # not a Docker stream name: keep the name itself in the id
        code = "_" + record.stream.replace('"', "") + "_"
    return f"{record.timestamp_ns:016x}{_id_container(record.container_id)}{code}{record.seq:x}"


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
