"""The _bulk API: NDJSON parsing, per-item execution and ES-shaped item results.

Item shapes follow BulkItemResponse.toXContent: a success renders the write response plus
``status``; a failure renders ``_index``, ``_id`` (null when no id was given or generated yet),
``status`` and ``error``. ``count_bulk`` is the benchmark path: it never parses sources.

The response starts ``errors``, ``took``, then ``ingest_took`` when an ingest pipeline ran (the
built-in ``logs`` template sets ``index.default_pipeline: logs@default-pipeline``), then ``items``
(BulkResponse.toXContentChunked).
"""

from __future__ import annotations

import itertools
import operator
import os
import time
from collections import Counter
from typing import Any

import orjson

from . import ingest as ingest_
from . import mapping
from .errors import EsError, cause, illegal_argument
from .failure_store import failure_document
from .faults import Faults, Stats, rejected_item_reason
from .store import Doc, Index, Store, new_doc_id

ACTIONS = ("create", "delete", "index", "update")
_META_KEYS = {
    "_index",
    "_id",
    "routing",
    "_routing",
    "op_type",
    "version",
    "version_type",
    "if_seq_no",
    "if_primary_term",
    "pipeline",
    "require_alias",
    "require_data_stream",
    "retry_on_conflict",
    "dynamic_templates",
    "list_executed_pipelines",
    "_source",
}


# The filter Beats (libbeat's esclientleg) sends with every _bulk: every item keeps its status,
# so the filtered items stay aligned with the request's actions.
STATUS_FILTER = frozenset({"errors", "items.*.error", "items.*.status"})
# The same and each item's failure_store (what the shipper sends since 8.19/9.1 have one).
FAILURE_STORE_FILTER = STATUS_FILTER | {"items.*.failure_store"}
SHORT_FILTERS = (STATUS_FILTER, FAILURE_STORE_FILTER)


class Raw(bytes):
    """A response body already rendered with the request's ``filter_path`` applied."""


def filter_set(expression: str | None) -> frozenset[str] | None:
    if expression is None:
        return None
    # Strings.tokenizeByCommaToSet: comma separated, trimmed, empty parts dropped.
    return frozenset(p.strip() for p in expression.split(",") if p.strip())


def _check_body(body: bytes) -> None:
    if not body:
        raise EsError(400, "parse_exception", "request body is required")
    if not body.endswith(b"\n"):
        raise illegal_argument("The bulk request must be terminated by a newline [\\n]")


def _split_lines(body: bytes) -> list[bytes]:
    _check_body(body)
    return body.split(b"\n")[:-1]


def _parse_action(line: bytes, line_no: int) -> tuple[str, dict[str, Any]]:
    try:
        parsed = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise EsError(
            400,
            "x_content_parse_exception",
            f"[{line_no}:1] Unexpected character: {exc}",
        ) from None
    if not isinstance(parsed, dict) or len(parsed) != 1:
        found = next(iter(parsed), "") if isinstance(parsed, dict) else ""
        raise illegal_argument(
            f"Malformed action/metadata line [{line_no}], expected one of [create, delete, "
            f"index, update] but found [{found}]"
        )
    ((op, meta),) = parsed.items()
    if op not in ACTIONS:
        raise illegal_argument(
            f"Malformed action/metadata line [{line_no}], expected one of [create, delete, "
            f"index, update] but found [{op}]"
        )
    if not isinstance(meta, dict):
        raise illegal_argument(
            f"Malformed action/metadata line [{line_no}], expected START_OBJECT but found "
            f"[{type(meta).__name__}]"
        )
    for key in meta:
        if key not in _META_KEYS:
            raise illegal_argument(
                f"Action/metadata line [{line_no}] contains an unknown parameter [{key}]"
            )
    return op, meta


def _failure(
    op: str,
    index: str,
    doc_id: str | None,
    status: int,
    error: dict[str, Any],
    failure_store: str | None = None,
) -> dict[str, Any]:
    # BulkItemResponse.toXContent: _index, _id, status, failure_store (when there is one to
    # tell), error.
    item: dict[str, Any] = {"_index": index, "_id": doc_id, "status": status}
    if failure_store is not None:
        item["failure_store"] = failure_store
    item["error"] = error
    return {op: item}


def execute_bulk(
    store: Store,
    body: bytes,
    default_index: str | None,
    faults: Faults,
    stats: Stats,
    refresh: bool,
    request_pipeline: str | None = None,
) -> dict[str, Any]:
    started = time.monotonic()
    lines = _split_lines(body)
    requests: list[tuple[str, dict[str, Any], bytes | None]] = []
    missing: list[int] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        op, meta = _parse_action(line, i + 1)
        source: bytes | None = None
        if op != "delete":
            if i + 1 >= len(lines):
                raise illegal_argument("The bulk request must be terminated by a newline [\\n]")
            source = lines[i + 1]
            i += 2
        else:
            i += 1
        if not (meta.get("_index") or default_index):
            missing.append(len(requests) + 1)
        requests.append((op, meta, source))
    if missing:
        raise EsError(
            400,
            "action_request_validation_exception",
            "Validation Failed: " + "".join(f"{n}: index is missing;" for n in missing),
        )
    if not requests:
        raise EsError(
            400, "action_request_validation_exception", "Validation Failed: 1: no requests added;"
        )

    items: list[dict[str, Any]] = []
    touched: set[str] = set()
    ingest = [False]
    for op, meta, source in requests:
        name = meta.get("_index") or default_index
        assert name is not None
        pipeline = meta.get("pipeline", request_pipeline)
        item = _execute_one(store, op, meta, source, name, faults, ingest, pipeline)
        items.append(item)
        result = item[op]
        stats.items_by_status[result["status"]] += 1
        stats.items_by_index[result["_index"]] += 1
        if pipeline is not None and op in ("create", "index"):
            stats.items_by_pipeline[str(pipeline)] += 1
        if result.get("failure_store") == "used":
            stats.items_in_failure_store += 1
        touched.add(result["_index"])
    if refresh:
        for index_name in touched:
            if index_name in store.indices:
                store.indices[index_name].refresh()
    errors = any("error" in next(iter(it.values())) for it in items)
    response: dict[str, Any] = {
        "errors": errors,
        "took": int((time.monotonic() - started) * 1000),
    }
    if ingest[0]:
        response["ingest_took"] = 0
    response["items"] = items
    return response


def _execute_one(
    store: Store,
    op: str,
    meta: dict[str, Any],
    source: bytes | None,
    name: str,
    faults: Faults,
    ingest: list[bool],
    pipeline: str | None = None,
) -> dict[str, Any]:
    doc_id: str | None = meta.get("_id")
    if doc_id is not None:
        doc_id = str(doc_id)
    op_type = "create" if op == "create" or meta.get("op_type") == "create" else op
    writes = op in ("create", "index") and source is not None
    if writes and pipeline is not None and pipeline != ingest_.NO_PIPELINE:
        # The ingest phase comes first, on the coordinating node: a document that fails in
        # its pipeline never reaches the index (nor creates it).
        assert source is not None
        ingest[0] = True
        failure = ingest_.run(store, str(pipeline))
        if failure is not None:
            return _ingest_failed(store, op, name, doc_id, source, failure)
    try:
        index = store.get_write_index(name, op_type=op_type if op != "delete" else "index")
    except EsError as exc:
        return _failure(op, name, doc_id, exc.status, exc.inner())
    if faults.take_item_rejection():
        error = cause("es_rejected_execution_exception", rejected_item_reason(len(source or b"")))
        return _shard_failure(store, op, name, index, doc_id, source, 429, error)
    # A pipeline named in the request replaces the index's default pipeline.
    run = index.default_pipeline if pipeline is None else pipeline
    if op != "delete" and source is not None and run not in (None, ingest_.NO_PIPELINE):
        ingest[0] = True
        source = _run_default_pipeline(str(run), source)
    if op == "delete":
        return _delete(index, doc_id or "")
    if op == "update":
        return _update(store, index, doc_id, source or b"")
    if doc_id is None:
        doc_id = new_doc_id()
    existing = index.docs.get(doc_id)
    if op_type == "create" and existing is not None:
        conflict = _conflict(index, doc_id, existing.version)
        return _shard_failure(store, op, name, index, doc_id, source, 409, conflict)
    assert source is not None
    rejection = _check_source(index, source, doc_id, faults)
    if rejection is not None:
        return _shard_failure(store, op, name, index, doc_id, source, 400, rejection)
    named = None if pipeline in (None, ingest_.NO_PIPELINE) else str(pipeline)
    return {op: _store(index, doc_id, orjson.loads(source), existing, named)}


def _ingest_failed(
    store: Store,
    op: str,
    name: str,
    doc_id: str | None,
    source: bytes,
    failure: ingest_.IngestFailure,
) -> dict[str, Any]:
    """An ingest failure: into the target stream's failure store, or an item error; the item
    names the index the request named (BulkRequestModifier.markItemAsFailed)."""
    enabled = store.failure_store_resolution(name)
    if enabled:
        if name not in store.data_streams:
            # Created by this write, bound for its failure store: it starts with a failure
            # index of the first generation.
            store.create_data_stream(name, with_failure_index=True)
        return _redirect(
            store, op, name, doc_id, source, failure.type, failure.reason, failure.pipeline_fields
        )
    status = None if enabled is None else "not_enabled"
    return _failure(op, name, doc_id, failure.status, failure.error(), status)


def _shard_failure(
    store: Store,
    op: str,
    name: str,
    index: Index,
    doc_id: str | None,
    source: bytes | None,
    status: int,
    error: dict[str, Any],
) -> dict[str, Any]:
    """An item that failed on the shard (BulkOperation.processFailure in 9.1): a data stream
    with its failure store enabled keeps every such document but a version conflict; one
    without says `not_enabled`; any other target says nothing."""
    ds = store.data_streams.get(name) if store.major >= 9 else None
    if ds is None or op not in ("create", "index") or source is None:
        return _failure(op, index.name, doc_id, status, error)
    if not ds.failure_store:
        return _failure(op, index.name, doc_id, status, error, "not_enabled")
    if error.get("type") == "version_conflict_engine_exception":
        return _failure(op, index.name, doc_id, status, error)
    return _redirect(store, op, name, doc_id, source, error["type"], error["reason"])


def _redirect(
    store: Store,
    op: str,
    name: str,
    doc_id: str | None,
    source: bytes,
    error_type: str,
    message: str,
    pipeline_fields: dict[str, Any] | None = None,
) -> dict[str, Any]:
    try:
        parsed = orjson.loads(source)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        # The converter cannot read it back as a map: the original failure stands.
        error = cause(error_type, message)
        return _failure(op, name, doc_id, 400, error, "failed")
    ds = store.data_streams[name]
    failure_index = store.failure_write_index(ds)
    document = failure_document(
        index=name,
        doc_id=doc_id,
        source=parsed,
        error_type=error_type,
        message=message,
        pipeline_fields=pipeline_fields,
    )
    result = _store(failure_index, new_doc_id(), document, None)
    # IndexResponse with its failure store status: after _primary_term, before status.
    status = result.pop("status")
    result["failure_store"] = "used"
    result["status"] = status
    return {op: result}


def _run_default_pipeline(pipeline: str, raw: bytes) -> bytes:
    """The effect of the built-in ``logs@default-pipeline``; other pipelines are not modelled.

    Its first processor is ``set @timestamp copy_from _ingest.timestamp, override: false``, so a
    logs-*-* document without ``@timestamp`` gets the ingest time instead of being rejected.
    """
    if pipeline != "logs@default-pipeline":
        return raw
    try:
        source = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw  # the parse error is reported by _check_source
    if not isinstance(source, dict) or "@timestamp" in source:
        return raw
    source["@timestamp"] = _ingest_timestamp()
    return orjson.dumps(source)


def _ingest_timestamp() -> str:
    # A ZonedDateTime rendered by XContent's strict_date_optional_time_nanos printer: 3 to 9
    # fraction digits; the JVM's clock on Linux has microseconds.
    ns = time.time_ns()
    seconds, fraction = divmod(ns // 1000, 1_000_000)
    digits = f"{fraction:06d}".rstrip("0").ljust(3, "0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{digits}Z"


def _conflict(index: Index, doc_id: str, version: int) -> dict[str, Any]:
    return cause(
        "version_conflict_engine_exception",
        f"[{doc_id}]: version conflict, document already exists (current version [{version}])",
        index_uuid=index.uuid,
        shard="0",
        index=index.name,
    )


def _check_source(index: Index, raw: bytes, doc_id: str, faults: Faults) -> dict[str, Any] | None:
    try:
        source = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return cause(
            "document_parsing_exception",
            "[1:1] failed to parse",
            caused_by=cause("x_content_parse_exception", f"[1:1] {exc}"),
        )
    if not isinstance(source, dict):
        return cause(
            "document_parsing_exception",
            "[1:1] failed to parse",
            caused_by=cause(
                "not_x_content_exception",
                "Compressor detection can only be called on some xcontent bytes or compressed "
                "xcontent bytes",
            ),
        )
    if faults.mapping_error is not None and faults.mapping_error(source):
        return cause(
            "document_parsing_exception",
            f"[1:2] failed to parse field [fault_injected] of type [long] in document with id "
            f"'{doc_id}'. Preview of field's value: 'injected'",
            caused_by=cause("illegal_argument_exception", 'For input string: "injected"'),
        )
    parser = mapping.DocumentParser(index.mappings, doc_id, index.ignore_malformed)
    try:
        parser.parse(source)
        if index.data_stream is not None:
            values = mapping.source_values(source, "@timestamp")
            if not values:
                raise mapping.DocError(
                    "document_parsing_exception",
                    "failed to parse: data stream timestamp field [@timestamp] is missing",
                    None,
                    cause(
                        "illegal_argument_exception",
                        "data stream timestamp field [@timestamp] is missing",
                    ),
                    at_end=True,
                )
            if len(values) > 1:
                raise mapping.DocError(
                    "document_parsing_exception",
                    "failed to parse: data stream timestamp field [@timestamp] encountered "
                    "multiple values",
                    None,
                    cause(
                        "illegal_argument_exception",
                        "data stream timestamp field [@timestamp] encountered multiple values",
                    ),
                    at_end=True,
                )
    except mapping.DocError as exc:
        return exc.render(raw)
    # Only a document that parsed cleanly extends the mappings (ES applies no partial updates).
    for path, definition in parser.new.items():
        index.mappings.fields.setdefault(path, definition)
    for path, value in parser.constant_values.items():
        index.mappings.fields[path].setdefault("value", value)
    return None


def _store(
    index: Index,
    doc_id: str,
    source: dict[str, Any],
    existing: Doc | None,
    pipeline: str | None = None,
) -> dict[str, Any]:
    version = existing.version + 1 if existing is not None else 1
    seq_no = index.seq_no
    index.seq_no += 1
    index.put(doc_id, Doc(source=source, seq_no=seq_no, version=version, pipeline=pipeline))
    return {
        "_index": index.name,
        "_id": doc_id,
        "_version": version,
        "result": "updated" if existing is not None else "created",
        "_shards": index.shards_info,
        "_seq_no": seq_no,
        "_primary_term": 1,
        "status": 200 if existing is not None else 201,
    }


def _delete(index: Index, doc_id: str) -> dict[str, Any]:
    existing = index.remove(doc_id)
    seq_no = index.seq_no
    index.seq_no += 1
    return {
        "delete": {
            "_index": index.name,
            "_id": doc_id,
            "_version": existing.version + 1 if existing else 1,
            "result": "deleted" if existing else "not_found",
            "_shards": index.shards_info,
            "_seq_no": seq_no,
            "_primary_term": 1,
            "status": 200 if existing else 404,
        }
    }


def _update(store: Store, index: Index, doc_id: str | None, raw: bytes) -> dict[str, Any]:
    """Partial ``doc`` updates and ``doc_as_upsert``; scripts are not supported."""
    body = orjson.loads(raw)
    existing = index.docs.get(doc_id or "")
    if existing is None and not body.get("doc_as_upsert") and "upsert" not in body:
        error = cause(
            "document_missing_exception",
            f"[{doc_id}]: document missing",
            index_uuid=index.uuid,
            shard="0",
            index=index.name,
        )
        return _failure("update", index.name, doc_id, 404, error)
    merged = dict(existing.source) if existing else dict(body.get("upsert", {}))
    merged.update(body.get("doc", {}))
    result = _store(index, doc_id or new_doc_id(), merged, existing)
    result.pop("status")
    result["status"] = 200 if existing else 201
    return {"update": result}


_CONTAINER_ID_KEY = b'"container":{"id":"'


def _container_id(body: bytes, start: int, end: int) -> bytes | None:
    """``container.id`` of the shipper document in body[start:end], found without parsing it
    (orjson writes it as ``"container":{"id":"..."``, first key first); None for any other."""
    at = body.find(_CONTAINER_ID_KEY, start, end)
    if at < 0:
        return None
    at += len(_CONTAINER_ID_KEY)
    close = body.find(b'"', at, end)
    return body[at : close if close >= 0 else end]


def _count_containers(ids: list[bytes | None], stats: Stats) -> None:
    # One Counter over the raw ids, then one decode per container, not one per document.
    for container_id, count in Counter(ids).items():
        if container_id is not None:
            stats.items_by_container[container_id.decode()] += count


# `_CONTAINER_ID_KEY` without its closing quote: this one cannot overlap itself, so a count of
# it in a body is the number of places it occurs.
_CONTAINER_KEY_HEAD = _CONTAINER_ID_KEY[:-1]


def _shared_container_id(body: bytes, documents: list[bytes]) -> bytes | None:
    """The ``_container_id`` of every document, when they all have the same one as the first
    for a reason whole-body passes can see; None: look document by document.

    The shipper's bulk is one container's block, every document ending in the same container,
    host and ECS fields: when each document ends with what follows the key in the first one and
    the body holds the key once per document, each document's first key is in that common end.
    The per-document search (``_container_ids``) was over a third of the server's time.
    The body's action lines hold no key: their ids and index name have no quotes (checked).
    """
    first = documents[0]
    at = first.find(_CONTAINER_ID_KEY)
    if at < 0 or body.count(_CONTAINER_KEY_HEAD) != len(documents):
        return None
    common_end = first[at:]
    if not all(map(bytes.endswith, documents, itertools.repeat(common_end))):
        return None
    return _container_id(first, at, len(first))


# -- count-only mode ---------------------------------------------------------------------------
_counter = itertools.count()
_id_prefix = os.urandom(6).hex()
# An _id that needs no JSON unescaping and is valid in a JSON string as it is: no quote,
# backslash or control character (the rest is checked by decoding it as UTF-8).
_NEEDS_PARSING = bytes(range(0x20)) + b'"\\'


def _container_ids(documents: list[bytes]) -> list[bytes | None]:
    """``_container_id`` of each document, in C-level passes (a third of the server's time
    went to finding them one by one)."""
    key_at = list(map(bytes.find, documents, itertools.repeat(_CONTAINER_ID_KEY)))
    if -1 in key_at:
        return [_container_id(document, 0, len(document)) for document in documents]
    starts = list(map(operator.add, key_at, itertools.repeat(len(_CONTAINER_ID_KEY))))
    ends = list(map(bytes.find, documents, itertools.repeat(b'"'), starts))
    if -1 in ends:
        return [_container_id(document, 0, len(document)) for document in documents]
    return list(map(operator.getitem, documents, map(slice, starts, ends)))


def _count_uniform_creates(
    store: Store,
    body: bytes,
    default_index: str | None,
    stats: Stats,
    detect_duplicates: bool,
    count_containers: bool,
    short: bool,
) -> bytes | None:
    """The response to a bulk of plain creates into one index with new ids; None for any other.

    What the shipper sends: every action line is ``{"create":{"_index":"<name>","_id":"<id>"}}``
    byte for byte, as orjson writes it, with ids that need no unescaping. Such a bulk is checked
    and answered in whole-list passes (C-level) instead of a Python loop per item: parsing each
    action line was most of the server's time in the benchmark, where it cost more CPU than the
    shipper. Anything else (another form, a duplicate id, an index that refuses the write)
    returns None and takes the per-item loop, the one definition of the outcome; the answer
    here is what that loop gives for the bulks accepted (tests compare the two).
    """
    lines = body.split(b"\n")  # the body ends with a newline: the last part is empty
    actions = lines[0:-1:2]
    if not actions or len(lines) % 2 == 0:  # an odd number of lines: a document is missing
        return None
    first = actions[0]
    prefix_end = first.find(b'","_id":"')
    if not first.startswith(b'{"create":{"_index":"') or prefix_end < 0:
        return None
    prefix = first[: prefix_end + len(b'","_id":"')]
    name_bytes = prefix[len(b'{"create":{"_index":"') : -len(b'","_id":"')]
    if not all(map(bytes.startswith, actions, itertools.repeat(prefix))):
        return None
    if not all(map(bytes.endswith, actions, itertools.repeat(b'"}}'))):
        return None
    if min(map(len, actions)) < len(prefix) + 3:
        return None
    start = len(prefix)
    raw_ids = [action[start:-3] for action in actions]
    joined = b"".join(raw_ids) + name_bytes
    if len(joined.translate(None, _NEEDS_PARSING)) != len(joined):
        return None
    try:
        name = name_bytes.decode()
        doc_ids = list(map(bytes.decode, raw_ids))
    except UnicodeDecodeError:
        return None
    if not name:
        return None  # the loop uses the default index then
    try:
        index = store.get_write_index(name, op_type="create")
    except EsError:
        return None
    if detect_duplicates:
        new_ids = set(doc_ids)
        if len(new_ids) != len(doc_ids) or not index.ids.isdisjoint(new_ids):
            return None
        index.ids |= new_ids
    first_seq = index.count
    index.count = index.seq_no = first_seq + len(doc_ids)
    stats.items_by_status[201] += len(doc_ids)
    if count_containers:
        documents = lines[1:-1:2]
        shared = _shared_container_id(body, documents)
        if shared is None:
            _count_containers(_container_ids(documents), stats)
        else:
            stats.items_by_container[shared.decode()] += len(documents)
    if short:
        items = b",".join(itertools.repeat(b'{"create":{"status":201}}', len(doc_ids)))
        return Raw(b'{"errors":false,"items":[%s]}' % items)
    head = b'{"create":{"_index":"' + index.name.encode() + b'","_id":"'
    middle = (
        b'","_version":1,"result":"created","_shards":'
        + orjson.dumps(index.shards_info)
        + b',"_seq_no":'
    )
    items = b",".join(
        b'%s%s%s%d,"_primary_term":1,"status":201}}' % (head, doc_id, middle, seq)
        for doc_id, seq in zip(raw_ids, itertools.count(first_seq))
    )
    took = b',"ingest_took":0' if index.default_pipeline is not None else b""
    return b'{"errors":false,"took":0%s,"items":[%s]}' % (took, items)


def count_bulk(
    store: Store,
    body: bytes,
    default_index: str | None,
    stats: Stats,
    detect_duplicates: bool,
    count_containers: bool = False,
    filter_path: str | None = None,
) -> bytes:
    """Accept a bulk without storing sources; renders item results straight into bytes.

    The shipper's usual bulk is answered by ``_count_uniform_creates`` in whole-list passes;
    any other takes the loop below: each action line parsed and checked as ``execute_bulk``
    does, a set lookup for duplicate ids and one bytes %-format per item. Only
    ``create``/``index`` items are counted.
    With ``filter_path`` = one of SHORT_FILTERS (what the shipper sends) the filtered response is
    rendered directly and returned as ``Raw``: no parse-filter-reserialise of a large response.
    Any other filter is applied by the HTTP layer to the full response.
    """
    filters = filter_set(filter_path)
    short = filters in SHORT_FILTERS
    # A conflict on a 9.x data stream without a failure store says not_enabled (see
    # failure_store.py); the short form keeps it if the filter asks for it.
    short_store = filters == FAILURE_STORE_FILTER
    _check_body(body)
    uniform = _count_uniform_creates(
        store, body, default_index, stats, detect_duplicates, count_containers, short
    )
    if uniform is not None:
        return uniform
    if body.count(b"\n") % 2:
        raise illegal_argument("The bulk request must be terminated by a newline [\\n]")
    parts: list[bytes] = []
    append = parts.append
    # (op, name) -> (index, item prefix, item middle, ids set) for successful writes; in short
    # form the prefix is the whole item up to the status and the middle is unused. The op is
    # part of the key: a data stream takes create but rejects index.
    targets: dict[tuple[str, str], tuple[Index, bytes, bytes, set[str]]] = {}
    errors = False
    ingest = False
    created = 0
    conflicts = 0
    containers: list[bytes | None] = []
    # Positions, not `body.split`: the documents are never copied out of the body (at
    # ~600 bytes each, the copies were a third of this loop's time); only the container id
    # is read from them, in place.
    find = body.find
    pos = 0
    for line_no in range(body.count(b"\n") // 2):
        action_end = find(b"\n", pos)
        line = body[pos:action_end]
        document_start = action_end + 1
        document_end = find(b"\n", document_start)
        pos = document_end + 1
        op, meta = _parse_action(line, line_no * 2 + 1)
        if op not in ("create", "index"):
            raise illegal_argument(f"count-only mode does not support [{op}] actions")
        name = meta.get("_index") or default_index
        if name is None:
            raise EsError(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: index is missing;",
            )
        target = targets.get((op, name))
        if target is None:
            try:
                index = store.get_write_index(name, op_type=op)
            except EsError as exc:
                errors = True
                stats.items_by_status[exc.status] += 1
                failure = _failure(op, name, meta.get("_id"), exc.status, exc.inner())
                if short:
                    failure = {op: {"status": exc.status, "error": exc.inner()}}
                append(orjson.dumps(failure))
                continue
            if short:
                prefix = b'{"' + op.encode() + b'":{"status":'
                middle = b""
            else:
                prefix = b'{"' + op.encode() + b'":{"_index":"' + index.name.encode() + b'","_id":"'
                middle = (
                    b'","_version":1,"result":"created","_shards":'
                    + orjson.dumps(index.shards_info)
                    + b',"_seq_no":'
                )
            target = targets[op, name] = (index, prefix, middle, index.ids)
            ingest = ingest or index.default_pipeline is not None
        index, prefix, middle, ids = target
        doc_id = meta.get("_id")
        if doc_id is None:
            doc_id = f"{_id_prefix}{next(_counter):08x}"
        elif detect_duplicates:
            if doc_id in ids:
                errors = True
                conflicts += 1
                err = orjson.dumps(_conflict(index, doc_id, 1))
                stream = store.data_streams.get(index.data_stream or "")
                store_field = (
                    b',"failure_store":"not_enabled"'
                    if store.major >= 9 and stream is not None and not stream.failure_store
                    else b""
                )
                if short:
                    kept = store_field if short_store else b""
                    append(b'%s409%s,"error":%s}}' % (prefix, kept, err))
                else:
                    append(
                        b'%s%s","status":409%s,"error":%s}}'
                        % (prefix, doc_id.encode(), store_field, err)
                    )
                continue
            ids.add(doc_id)
        seq = index.count
        index.count = seq + 1
        created += 1
        if count_containers:
            containers.append(_container_id(body, document_start, document_end))
        if short:
            append(prefix + b"201}}")
        else:
            append(
                b'%s%s%s%d,"_primary_term":1,"status":201}}'
                % (prefix, doc_id.encode(), middle, seq)
            )
    if containers:
        _count_containers(containers, stats)
    for index, *_ in targets.values():
        index.seq_no = index.count
    stats.items_by_status[201] += created
    if conflicts:
        stats.items_by_status[409] += conflicts
    flag = b"true" if errors else b"false"
    if short:
        return Raw(b'{"errors":%s,"items":[%s]}' % (flag, b",".join(parts)))
    took = b',"ingest_took":0' if ingest else b""
    return b'{"errors":%s,"took":0%s,"items":[%s]}' % (flag, took, b",".join(parts))
