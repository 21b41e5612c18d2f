"""_search and _count over stored sources: the queries, sorts and paging a shipper's tests use.

Scores are constant (1.0 for every match); sorting is what paging relies on. The documented
tiebreaker is ES's: ``_doc`` (index order, then write order) or, within a point in time,
``_shard_doc``; sorting on ``_id`` is rejected as ES 8/9 do by default.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from . import dates
from .errors import EsError, cause, search_phase_failure
from .mapping import DATE_TYPES, NUMERIC_TYPES, Mappings, source_values
from .store import Doc, Index, Postings, Store, new_uuid

MAX_RESULT_WINDOW = 10000
_TOKEN = re.compile(r"\w+", re.UNICODE)

Hit = tuple[Index, str, Doc, int]  # index, id, doc, global order


def _tokens(text: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(text)]


def _field_info(m: Mappings, field: str) -> tuple[str, str | None]:
    """(source path, type); a multi-field like ``message.keyword`` reads its parent's values."""
    d = m.fields.get(field)
    if d is None:
        return field, None
    return d.get("_multi_of", field), d.get("type", "object")


def _as_comparable(value: Any, type_: str | None, m: Mappings, field: str) -> Any:
    if type_ in DATE_TYPES:
        fmt = m.fields.get(field, {}).get("format", dates.DEFAULT_DATE_FORMAT)
        try:
            return dates.parse_math(value, fmt)
        except dates.DateParseError:
            return None
    if type_ in NUMERIC_TYPES:
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    if type_ == "boolean":
        return value in (True, "true")
    return (
        value
        if isinstance(value, str)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
    )


def compile_query(q: dict[str, Any] | None, index: Index) -> Callable[[dict[str, Any], str], bool]:
    if not q:
        return lambda src, _id: True
    if len(q) != 1:
        raise EsError(
            400,
            "parsing_exception",
            "[_na] query malformed, must start with start_object",
            extra={"line": 1, "col": 1},
        )
    ((kind, spec),) = q.items()
    m = index.mappings
    if kind == "match_all":
        return lambda src, _id: True
    if kind == "match_none":
        return lambda src, _id: False
    if kind == "bool":

        def many(key: str) -> list[Callable[[dict[str, Any], str], bool]]:
            clauses = spec.get(key, [])
            if isinstance(clauses, dict):
                clauses = [clauses]
            return [compile_query(c, index) for c in clauses]

        must, filt, should, must_not = (
            many("must"),
            many("filter"),
            many("should"),
            many("must_not"),
        )
        msm = spec.get("minimum_should_match", 0 if (must or filt) else 1 if should else 0)
        msm = int(msm)

        def bool_q(src: dict[str, Any], _id: str) -> bool:
            if not all(c(src, _id) for c in must) or not all(c(src, _id) for c in filt):
                return False
            if any(c(src, _id) for c in must_not):
                return False
            return sum(1 for c in should if c(src, _id)) >= msm

        return bool_q
    if kind == "ids":
        wanted = set(spec.get("values", []))
        return lambda src, _id: _id in wanted
    if kind == "exists":
        path, type_ = _field_info(m, spec["field"])
        if type_ is None:
            return lambda src, _id: False
        return lambda src, _id: bool(source_values(src, path))
    if kind in ("term", "terms", "match", "match_phrase", "range", "prefix", "wildcard"):
        field, raw_values = _field_and_values(kind, spec)
        if field == "_id":
            ids = {str(v) for v in raw_values}
            return lambda src, _id: _id in ids
        path, type_ = _field_info(m, field)
        if type_ is None:
            return lambda src, _id: False
        _check_searchable(index, field)
        analyzed = type_ in ("text", "match_only_text")
        if kind == "range":
            bounds = {
                k: _as_comparable(v, type_, m, field)
                for k, v in spec[field].items()
                if k in ("gt", "gte", "lt", "lte")
            }

            def range_q(src: dict[str, Any], _id: str) -> bool:
                for v in source_values(src, path):
                    c = _as_comparable(v, type_, m, field)
                    if c is None:
                        continue
                    try:
                        if all(
                            (op == "gt" and c > b)
                            or (op == "gte" and c >= b)
                            or (op == "lt" and c < b)
                            or (op == "lte" and c <= b)
                            for op, b in bounds.items()
                        ):
                            return True
                    except TypeError:
                        continue
                return False

            return range_q
        if kind in ("prefix", "wildcard"):
            pattern = str(raw_values[0])
            rx = re.compile(
                re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
                + (".*" if kind == "prefix" else "")
                + r"\Z"
            )
            return lambda src, _id: any(rx.match(str(v)) for v in source_values(src, path))
        if analyzed and kind in ("match", "match_phrase"):
            query_tokens = _tokens(str(raw_values[0]))
            operator = (
                spec[field].get("operator", "or").lower() if isinstance(spec[field], dict) else "or"
            )

            def match_text(src: dict[str, Any], _id: str) -> bool:
                for v in source_values(src, path):
                    toks = _tokens(str(v))
                    if kind == "match_phrase":
                        n = len(query_tokens)
                        if any(toks[i : i + n] == query_tokens for i in range(len(toks) - n + 1)):
                            return True
                    elif (operator == "and" and all(t in toks for t in query_tokens)) or (
                        operator != "and" and any(t in toks for t in query_tokens)
                    ):
                        return True
                return False

            return match_text
        if analyzed:
            wanted_tokens = {str(v) for v in raw_values}
            return lambda src, _id: any(
                t in wanted_tokens for v in source_values(src, path) for t in _tokens(str(v))
            )
        wanted = {_as_comparable(v, type_, m, field) for v in raw_values}
        postings = _postings(index, field, path, type_)
        return lambda src, _id: any(v in wanted for v in postings.values_of(src, _id))
    raise EsError(
        400,
        "parsing_exception",
        f"unknown query [{kind}]",
        extra={"line": 1, "col": 13},
        caused_by=cause("named_object_not_found_exception", f"[1:13] unknown field [{kind}]"),
    )


def _check_searchable(index: Index, field: str) -> None:
    """A field mapped `index: false, doc_values: false` is stored in _source only: a query on
    it fails (MappedFieldType.failIfNotIndexedNorDocValuesFallback; ECS maps event.original
    so). With doc values it is still searchable, slowly."""
    definition = index.mappings.fields.get(field) or {}
    if definition.get("index", True) is False and definition.get("doc_values", True) is False:
        reason = cause(
            "query_shard_exception",
            f"failed to create query: Cannot search on field [{field}] since it is not "
            "indexed nor has doc values.",
            index_uuid=index.uuid,
            index=index.name,
        )
        raise search_phase_failure(index.name, reason)


def _field_and_values(kind: str, spec: dict[str, Any]) -> tuple[str, list[Any]]:
    """The field a single-field query names and the values it asks for."""
    if kind == "terms":
        field = next(k for k in spec if k != "boost")
        return field, list(spec[field])
    ((field, raw),) = spec.items()
    if kind in ("term", "match", "match_phrase", "prefix", "wildcard") and isinstance(raw, dict):
        raw = raw.get("value", raw.get("query"))
    return field, [raw]


def _postings(index: Index, field: str, path: str, type_: str) -> Postings:
    mappings = index.mappings

    def comparables(src: dict[str, Any]) -> list[Any]:
        return [_as_comparable(v, type_, mappings, field) for v in source_values(src, path)]

    return index.postings_for((field, path, type_), comparables)


def _candidate_ids(q: dict[str, Any] | None, index: Index) -> set[str] | None:
    """A superset of the ids ``q`` matches, from postings; None when they cannot narrow it.

    Only narrows: the compiled query still decides every candidate, so a query this does not
    understand costs a scan, never a wrong answer.
    """
    if not q or len(q) != 1:
        return None
    ((kind, spec),) = q.items()
    if kind == "bool":
        clauses: list[Any] = []
        for key in ("must", "filter"):
            value = spec.get(key, [])
            clauses.extend([value] if isinstance(value, dict) else value)
        narrowed = [ids for c in clauses if (ids := _candidate_ids(c, index)) is not None]
        return set.intersection(*sorted(narrowed, key=len)) if narrowed else None
    if kind not in ("term", "terms"):
        return None
    field, raw_values = _field_and_values(kind, spec)
    if field == "_id":
        return {str(v) for v in raw_values}
    path, type_ = _field_info(index.mappings, field)
    if type_ is None:
        return set()
    if type_ in ("text", "match_only_text"):
        return None
    wanted = {_as_comparable(v, type_, index.mappings, field) for v in raw_values}
    return _postings(index, field, path, type_).ids_holding(wanted)


def _sort_specs(sort: Any) -> list[tuple[str, str, dict[str, Any]]]:
    if sort is None:
        return []
    if not isinstance(sort, list):
        sort = [sort]
    out: list[tuple[str, str, dict[str, Any]]] = []
    for s in sort:
        if isinstance(s, str):
            out.append((s, "desc" if s == "_score" else "asc", {}))
        else:
            ((field, opts),) = s.items()
            if isinstance(opts, str):
                out.append((field, opts, {}))
            else:
                out.append((field, opts.get("order", "desc" if field == "_score" else "asc"), opts))
    return out


def _sort_value(hit: Hit, field: str, opts: dict[str, Any]) -> Any:
    index, _doc_id, doc, order = hit
    if field in ("_doc", "_shard_doc"):
        return order
    if field == "_score":
        return 1.0
    path, type_ = _field_info(index.mappings, field)
    values = [
        _as_comparable(v, type_, index.mappings, field) for v in source_values(doc.source, path)
    ]
    values = [v for v in values if v is not None]
    if not values:
        return None
    value = min(values) if opts.get("order", "asc") != "desc" else max(values)
    if type_ == "date":
        return value // 1_000_000
    if type_ in NUMERIC_TYPES and type_ not in ("double", "float", "half_float", "scaled_float"):
        return int(value)
    if type_ == "boolean":
        return 1 if value else 0
    return value


def _check_sortable(indices: list[Index], field: str, opts: dict[str, Any]) -> None:
    name = indices[0].name if indices else "_na_"
    if field == "_id":
        reason = cause(
            "illegal_argument_exception",
            "Fielddata access on the _id field is disallowed, you can re-enable it by updating "
            "the dynamic cluster setting: indices.id_field_data.enabled",
        )
        raise search_phase_failure(name, reason)
    if field in ("_doc", "_score", "_shard_doc"):
        return
    for index in indices:
        _, type_ = _field_info(index.mappings, field)
        if type_ in ("text", "match_only_text"):
            reason = cause(
                "illegal_argument_exception",
                "Text fields are not optimised for operations that require per-document field "
                "data like aggregations and sorting, so these operations are disabled by "
                "default. Please use a keyword field instead. Alternatively, set fielddata=true "
                f"on [{field}] in order to load field data by uninverting the inverted index. "
                "Note that this can use significant memory.",
            )
            raise search_phase_failure(index.name, reason)
        if type_ is None and "unmapped_type" not in opts:
            reason = cause(
                "query_shard_exception",
                f"No mapping found for [{field}] in order to sort on",
                index_uuid=index.uuid,
                index=index.name,
            )
            raise search_phase_failure(index.name, reason)


def _key(values: list[Any], specs: list[tuple[str, str, dict[str, Any]]]) -> tuple[Any, ...]:
    out = []
    for v, (_, order, opts) in zip(values, specs, strict=True):
        missing_last = opts.get("missing", "_last") == "_last"
        if v is None:
            out.append((1 if missing_last else -1, 0))
            continue
        if order == "desc":
            v = -v if isinstance(v, (int, float)) else _Desc(v)
        out.append((0, v))
    return tuple(out)


class _Desc:
    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __lt__(self, other: _Desc) -> bool:
        return bool(self.v > other.v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.v == other.v

    def __hash__(self) -> int:
        return hash(self.v)


def collect(
    indices: list[Index],
    query: dict[str, Any] | None,
    snapshot: list[tuple[str, list[tuple[str, Doc]]]] | None = None,
    store: Store | None = None,
) -> list[Hit]:
    hits: list[Hit] = []
    if snapshot is not None and store is not None:
        for ordinal, (name, docs) in enumerate(snapshot):
            index = store.indices.get(name)
            if index is None:
                continue
            match = compile_query(query, index)
            for doc_id, doc in docs:
                if match(doc.source, doc_id):
                    hits.append((index, doc_id, doc, (ordinal << 32) | doc.seq_no))
        return hits
    for ordinal, index in enumerate(indices):
        index.maybe_auto_refresh()
        match = compile_query(query, index)
        candidates = _candidate_ids(query, index)
        docs = index.visible_docs() if candidates is None else index.visible_docs_among(candidates)
        for doc_id, doc in docs:
            if match(doc.source, doc_id):
                hits.append((index, doc_id, doc, (ordinal << 32) | doc.seq_no))
    return hits


def search(
    store: Store, indices: list[Index], body: dict[str, Any], params: dict[str, str]
) -> dict[str, Any]:
    started = time.monotonic()
    size = int(params.get("size", body.get("size", 10)))
    from_ = int(params.get("from", body.get("from", 0)))
    pit = body.get("pit")
    snapshot = None
    if pit is not None:
        snapshot = store.pits.get(pit["id"])
        if snapshot is None:
            raise EsError(
                404,
                "search_context_missing_exception",
                "No search context found for id [1]",
            )
    if from_ + size > MAX_RESULT_WINDOW:
        name = indices[0].name if indices else "_na_"
        reason = cause(
            "illegal_argument_exception",
            f"Result window is too large, from + size must be less than or equal to: "
            f"[{MAX_RESULT_WINDOW}] but was [{from_ + size}]. See the scroll api for a more "
            "efficient way to request large data sets. This limit can be set by changing the "
            "[index.max_result_window] index level setting.",
        )
        raise search_phase_failure(name, reason)
    specs = _sort_specs(body.get("sort"))
    for field, _, opts in specs:
        _check_sortable(indices, field, opts)
    hits = collect(indices, body.get("query"), snapshot, store)
    total = len(hits)
    rows: list[tuple[Hit, list[Any]]] = []
    if specs:
        rows = [(h, [_sort_value(h, f, o) for f, _, o in specs]) for h in hits]
        rows.sort(key=lambda r: _key(r[1], specs))
        after = body.get("search_after")
        if after is not None:
            after_key = _key(list(after), specs)
            rows = [r for r in rows if _key(r[1], specs) > after_key]
    else:
        rows = [(h, []) for h in hits]
    page = rows[from_ : from_ + size]
    out_hits = []
    for (index, doc_id, doc, _), sort_values in page:
        h: dict[str, Any] = {
            "_index": index.name,
            "_id": doc_id,
            "_score": None if specs else 1.0,
            "_source": doc.source,
        }
        if specs:
            h["sort"] = sort_values
        out_hits.append(h)
    hits_obj: dict[str, Any] = {}
    track = body.get("track_total_hits", params.get("track_total_hits", 10000))
    if track in (True, "true"):
        hits_obj["total"] = {"value": total, "relation": "eq"}
    elif track not in (False, "false"):
        limit = int(track)
        hits_obj["total"] = (
            {"value": total, "relation": "eq"}
            if total <= limit
            else {"value": limit, "relation": "gte"}
        )
    hits_obj["max_score"] = None if specs or not out_hits else 1.0
    hits_obj["hits"] = out_hits
    n = len(indices) if snapshot is None else len(snapshot)
    response: dict[str, Any] = {}
    if pit is not None:
        response["pit_id"] = pit["id"]
    response.update(
        {
            "took": int((time.monotonic() - started) * 1000),
            "timed_out": False,
            "_shards": {"total": n, "successful": n, "skipped": 0, "failed": 0},
            "hits": hits_obj,
        }
    )
    return response


def count(indices: list[Index], body: dict[str, Any]) -> dict[str, Any]:
    total = 0
    for index in indices:
        if not index.docs and index.count:
            total += index.count  # count-only mode keeps no documents to match against
            continue
        total += len(collect([index], body.get("query")))
    n = len(indices)
    return {"count": total, "_shards": {"total": n, "successful": n, "skipped": 0, "failed": 0}}


def open_pit(store: Store, indices: list[Index]) -> str:
    pit_id = new_uuid() + new_uuid()
    for index in indices:
        index.maybe_auto_refresh()
    store.pits[pit_id] = [(i.name, list(i.visible_docs())) for i in indices]
    return pit_id
