"""Term queries answered from postings find exactly what a scan of every document finds.

The test server narrows term, terms and bool-filter queries to the documents its postings
name before matching, so polling stays cheap as an index grows. The postings must follow every
write (create, overwrite, delete, a document losing or changing the field), and a point in
time must still match the versions it holds. Each case runs its queries twice, with postings
and with the narrowing switched off, and compares the hits; a model of the stored documents
checks the scan itself.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.es_server import search as search_module
from tests.es_server.bulk import execute_bulk
from tests.es_server.faults import Faults, Stats
from tests.es_server.search import open_pit, search
from tests.es_server.store import Store

INDEX = "events"
FIELD = "container.id.keyword"  # dynamic mapping: text with a keyword multi-field
VALUES = ["a", "b", "c"]

# A document's container.id: one value, several, or none at all.
field_values = st.one_of(
    st.sampled_from(VALUES),
    st.lists(st.sampled_from(VALUES), min_size=1, max_size=2),
    st.none(),
)
# (op, id, container.id, refresh): a write without a refresh stays invisible to searches.
writes = st.tuples(
    st.sampled_from(["index", "delete"]), st.sampled_from("wxyz"), field_values, st.booleans()
)
queries = st.one_of(
    st.builds(lambda v: {"term": {FIELD: v}}, st.sampled_from([*VALUES, "missing"])),
    st.builds(lambda v: {"term": {FIELD: {"value": v}}}, st.sampled_from(VALUES)),
    st.builds(lambda vs: {"terms": {FIELD: vs}}, st.lists(st.sampled_from(VALUES), max_size=2)),
    st.builds(
        lambda v, i: {"bool": {"filter": [{"term": {FIELD: v}}, {"ids": {"values": [i]}}]}},
        st.sampled_from(VALUES),
        st.sampled_from("wxyz"),
    ),
    st.builds(
        lambda v, w: {"bool": {"must": {"term": {FIELD: v}}, "must_not": {"term": {FIELD: w}}}},
        st.sampled_from(VALUES),
        st.sampled_from(VALUES),
    ),
    st.builds(lambda i: {"term": {"_id": i}}, st.sampled_from("wxyz")),
)


def write(store: Store, op: str, doc_id: str, value: Any, refresh: bool = True) -> None:
    meta = orjson.dumps({op: {"_index": INDEX, "_id": doc_id}})
    source = {"n": 1} if value is None else {"container": {"id": value}}
    body = meta + b"\n" + (orjson.dumps(source) + b"\n" if op == "index" else b"")
    execute_bulk(store, body, None, Faults(), Stats(), refresh)


def hits(store: Store, query: dict[str, Any], body: dict[str, Any] | None = None) -> Any:
    index = store.indices[INDEX]
    request = {"query": query, "size": 100, **(body or {})}
    found = search(store, [] if "pit" in request else [index], request, {})["hits"]["hits"]
    return [(h["_id"], h["_source"]) for h in found]


def scanned(store: Store, query: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as patch:
        patch.setattr(search_module, "_candidate_ids", lambda q, index: None)
        return hits(store, query)


def holds(value: Any, wanted: set[str]) -> bool:
    values = value if isinstance(value, list) else [value]
    return any(v in wanted for v in values)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.lists(writes, max_size=4), queries), min_size=1, max_size=8))
def test_postings_answer_what_a_scan_answers(
    steps: list[tuple[list[tuple[str, str, Any, bool]], dict[str, Any]]],
) -> None:
    store = Store(9)
    model: dict[str, Any] = {}  # id -> container.id, in write order
    write(store, "index", "seed", "a")  # maps the field, so queries have a type to parse with
    model["seed"] = "a"
    visible = dict(model)  # the model as of the last refresh
    index = store.indices[INDEX]
    index.settings["index.refresh_interval"] = "-1"  # only the writes' refreshes count
    with pytest.MonkeyPatch.context() as monkeypatch:

        def check(query: dict[str, Any]) -> None:
            with_postings = hits(store, query)
            assert with_postings == scanned(store, query, monkeypatch)
            if set(query) == {"term"} and FIELD in query["term"]:
                raw = query["term"][FIELD]
                wanted = {raw["value"] if isinstance(raw, dict) else raw}
                expected = [i for i, v in visible.items() if v is not None and holds(v, wanted)]
                assert [i for i, _ in with_postings] == expected

        for step_writes, query in steps:
            for op, doc_id, value, refresh in step_writes:
                write(store, op, doc_id, value, refresh)
                model.pop(doc_id, None)
                if op == "index":
                    model[doc_id] = value
                if refresh:
                    visible = dict(model)
            check(query)
        check({"term": {FIELD: "a"}})
    assert index.postings, "the term queries never used postings"
    for postings in index.postings.values():  # no deleted or overwritten version left behind
        assert set(postings.by_id) == set(index.docs)
        assert all(postings.by_id[i][0] is d.source for i, d in index.docs.items())


def test_a_point_in_time_matches_the_versions_it_holds() -> None:
    store = Store(9)
    write(store, "index", "x", "a")
    write(store, "index", "y", "b")
    assert hits(store, {"term": {FIELD: "a"}}) == [("x", {"container": {"id": "a"}})]
    pit = open_pit(store, [store.indices[INDEX]])
    write(store, "index", "x", "b")  # x moves from a to b after the point in time
    write(store, "delete", "y", None)
    in_pit = {"pit": {"id": pit}}
    assert hits(store, {"term": {FIELD: "a"}}, in_pit) == [("x", {"container": {"id": "a"}})]
    assert hits(store, {"term": {FIELD: "b"}}, in_pit) == [("y", {"container": {"id": "b"}})]
    assert hits(store, {"term": {FIELD: "a"}}) == []
    assert hits(store, {"term": {FIELD: "b"}}) == [("x", {"container": {"id": "b"}})]


def test_a_term_poll_reads_only_the_documents_holding_the_term(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = Store(9)
    body = b"".join(
        orjson.dumps({"create": {"_index": INDEX}})
        + b"\n"
        + orjson.dumps({"container": {"id": "noisy" if i % 100 else "quiet"}, "i": i})
        + b"\n"
        for i in range(2000)
    )
    execute_bulk(store, body, None, Faults(), Stats(), True)
    index = store.indices[INDEX]
    monkeypatch.setattr(type(index), "visible_docs", lambda self: pytest.fail("scanned"))
    found = hits(store, {"term": {FIELD: "quiet"}})
    assert [source["i"] for _, source in found] == list(range(0, 2000, 100))


def test_until_a_refresh_searches_see_the_version_that_was_searchable() -> None:
    store = Store(9)
    write(store, "index", "x", "a")
    write(store, "index", "y", "a")
    store.indices[INDEX].settings["index.refresh_interval"] = "-1"
    write(store, "index", "x", "b", refresh=False)  # overwritten, not refreshed
    write(store, "delete", "y", None, refresh=False)  # deleted, not refreshed
    old = [("x", {"container": {"id": "a"}}), ("y", {"container": {"id": "a"}})]
    assert hits(store, {"term": {FIELD: "a"}}) == old
    assert hits(store, {"term": {FIELD: "b"}}) == []
    store.indices[INDEX].refresh()
    assert hits(store, {"term": {FIELD: "a"}}) == []
    assert hits(store, {"term": {FIELD: "b"}}) == [("x", {"container": {"id": "b"}})]
