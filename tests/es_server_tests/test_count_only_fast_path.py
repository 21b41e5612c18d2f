"""The count-only server's whole-list path gives what its per-item loop gives.

`count_bulk` answers the shipper's usual bulk (plain creates into one index, new ids) in
whole-list passes and everything else in the per-item loop. Each case here runs the same
sequence of bulks through two fresh stores, one with the whole-list path and one without, and
compares every response byte and every counter. The canonical bulk must take the whole-list
path (else the comparison would prove nothing); its perturbations must fall back wherever the
answer differs from a plain success.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.es_server import bulk as bulk_module
from tests.es_server.bulk import FAILURE_STORE_FILTER, STATUS_FILTER, count_bulk
from tests.es_server.errors import EsError
from tests.es_server.faults import Stats
from tests.es_server.store import Store

SHORT = ",".join(sorted(STATUS_FILTER))
WITH_FAILURE_STORE = ",".join(sorted(FAILURE_STORE_FILTER))  # what the shipper sends
INDEX = "logs-docker-default"


def action(doc_id: str, index: str = INDEX, op: str = "create") -> bytes:
    return orjson.dumps({op: {"_index": index, "_id": doc_id}})


def document(container: str, message: str = "hello") -> bytes:
    return orjson.dumps(
        {"@timestamp": "2026-12-02T00:00:00Z", "container": {"id": container}, "message": message}
    )


def bulk_body(*pairs: tuple[bytes, bytes]) -> bytes:
    return b"".join(a + b"\n" + d + b"\n" for a, d in pairs)


def outcome(store: Store, stats: Stats, body: bytes, filter_path: str | None) -> Any:
    try:
        response = bytes(count_bulk(store, body, None, stats, True, True, filter_path))
    except EsError as exc:
        response = b"error %d %s" % (exc.status, str(exc.inner()).encode())
    for index in store.indices.values():
        response = response.replace(index.uuid.encode(), b"<uuid>")
    return response


def state(store: Store, stats: Stats) -> Any:
    return (
        dict(stats.items_by_status),
        dict(stats.items_by_container),
        {name: (i.count, i.seq_no, sorted(i.ids)) for name, i in store.indices.items()},
    )


def compare(bodies: list[bytes], filter_path: str | None, monkeypatch: pytest.MonkeyPatch) -> int:
    """Runs `bodies` both ways; returns how many the whole-list path answered."""
    taken = 0
    real = bulk_module._count_uniform_creates

    def counting(*args: Any) -> bytes | None:
        nonlocal taken
        answer = real(*args)
        taken += answer is not None
        return answer

    fast_store, fast_stats = Store(9), Stats()
    loop_store, loop_stats = Store(9), Stats()
    fast, loop = [], []
    with monkeypatch.context() as patch:
        patch.setattr(bulk_module, "_count_uniform_creates", counting)
        patch.setattr(bulk_module, "_counter", itertools.count())  # the same generated ids
        fast = [outcome(fast_store, fast_stats, body, filter_path) for body in bodies]
    with monkeypatch.context() as patch:
        patch.setattr(bulk_module, "_count_uniform_creates", lambda *args: None)
        patch.setattr(bulk_module, "_counter", itertools.count())
        loop = [outcome(loop_store, loop_stats, body, filter_path) for body in bodies]
    assert fast == loop
    assert state(fast_store, fast_stats) == state(loop_store, loop_stats)
    return taken


@pytest.mark.parametrize("filter_path", [SHORT, WITH_FAILURE_STORE, None])
def test_the_shippers_bulk_takes_the_whole_list_path(
    filter_path: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = bulk_body(*[(action(f"id-{i}"), document("c1" if i % 3 else "c2")) for i in range(7)])
    second = bulk_body(*[(action(f"id-{i}"), document("c1")) for i in range(7, 10)])
    assert compare([first, second], filter_path, monkeypatch) == 2
    store, stats = Store(9), Stats()
    response = orjson.loads(bytes(count_bulk(store, first, None, stats, True, True, filter_path)))
    assert response["errors"] is False
    assert [item["create"]["status"] for item in response["items"]] == [201] * 7
    if filter_path is None:
        assert [item["create"]["_seq_no"] for item in response["items"]] == list(range(7))
        assert response["items"][3]["create"]["_id"] == "id-3"
    assert stats.items_by_container == {"c1": 4, "c2": 3}
    assert store.indices[next(iter(store.indices))].count == 7


def after_a(second_action: bytes, second_document: bytes | None = None) -> bytes:
    """A canonical first item, then the given one."""
    return bulk_body(
        (action("a"), document("c")), (second_action, second_document or document("c"))
    )


def raw_action(meta: bytes) -> bytes:
    """An action line written by hand: `meta` goes inside the create object."""
    return b'{"create":{"_index":"%s",%s}}' % (INDEX.encode(), meta)


PERTURBATIONS: dict[str, bytes] = {
    "duplicate within the bulk": after_a(action("a")),
    "index op": after_a(action("b", op="index")),
    "two indices": after_a(action("b", index="other")),
    "escaped id": after_a(action('q"uote')),
    "unicode escape id": after_a(raw_action(b'"_id":"\\u0041"')),
    "control character": after_a(raw_action(b'"_id":"x\ty"')),
    "invalid utf-8 id": after_a(raw_action(b'"_id":"\xff"')),
    "no id": bulk_body((b'{"create":{"_index":"%s"}}' % INDEX.encode(), document("c"))),
    "extra key": after_a(raw_action(b'"_id":"b","routing":"r"')),
    "spaces": after_a(b'{"create": {"_index":"%s","_id":"b"}}' % INDEX.encode()),
    "missing document": bulk_body((action("a"), document("c"))) + action("b") + b"\n",
    "bad index name": bulk_body((action("a", index="UPPER"), document("c"))),
    "empty index": bulk_body((action("a", index=""), document("c"))),
    "no container": bulk_body((action("a"), b'{"message":"m"}'), (action("b"), document("c"))),
    "two containers in one document": bulk_body(
        (action("a"), b'{"container":{"id":"x"},"y":{"container":{"id":"z"}}}'),
        (action("b"), b"{}"),
    ),
    # Every document ends as the first does, but one holds another key before that end.
    "a second key before the common end": bulk_body(
        (action("a"), b'{"m":1,"container":{"id":"c"}}'),
        (action("b"), b'{"container":{"id":"z"},"m":1,"container":{"id":"c"}}'),
    ),
    # The same, with the keys overlapping: a count of the whole key would see one.
    "overlapping keys": bulk_body(
        (action("a"), b'{"container":{"id":"c"}}'),
        (action("b"), b'{"container":{"id":"container":{"id":"c"}}'),
    ),
    "the key in the first document only": bulk_body(
        (action("a"), b'{"container":{"id":"c"}}'), (action("b"), b'{"m":1}')
    ),
}


def shipper_document(container: str, message: str, stream: str) -> bytes:
    """Shaped as the shipper writes it: the line's own fields first, the container's after."""
    return orjson.dumps(
        {
            "@timestamp": "2026-12-02T00:00:00.000000001Z",
            "message": message,
            "log": {"iostream": stream},
            "container": {"id": container, "name": "noisy", "labels": {"app": "x"}},
            "host": {"name": "h"},
        }
    )


def test_one_containers_block_is_counted_without_a_search_per_document(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    searched: list[int] = []
    real = bulk_module._container_ids
    monkeypatch.setattr(
        bulk_module, "_container_ids", lambda docs: searched.append(len(docs)) or real(docs)
    )
    one = bulk_body(
        *[
            (action(f"id-{i}"), shipper_document("c1", f"line {i}", ("stdout", "stderr")[i % 2]))
            for i in range(6)
        ]
    )
    two = bulk_body(
        (action("id-6"), shipper_document("c1", "a", "stdout")),
        (action("id-7"), shipper_document("c2", "b", "stdout")),
    )
    assert compare([one, two], SHORT, monkeypatch) == 2
    # The loop's run is patched out of the fast path; the fast path's run searched only `two`.
    assert searched == [2]
    store, stats = Store(9), Stats()
    count_bulk(store, one, None, stats, True, True, SHORT)
    assert stats.items_by_container == {"c1": 6}


@pytest.mark.parametrize("filter_path", [SHORT, WITH_FAILURE_STORE, None])
@pytest.mark.parametrize("case", sorted(PERTURBATIONS))
def test_other_bulks_give_the_same_answer_either_way(
    case: str, filter_path: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After a canonical bulk, so that ids already stored count as duplicates too.
    canonical = bulk_body((action("seen"), document("c")))
    compare([canonical, PERTURBATIONS[case], canonical], filter_path, monkeypatch)


_ids = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=6)


@settings(max_examples=200, deadline=None)
@given(
    batches=st.lists(
        st.lists(
            st.tuples(
                _ids,
                st.sampled_from([INDEX, "logs-other-default"]),
                st.sampled_from(["create", "create", "create", "index"]),
                st.sampled_from(["c1", "c2", 'q"c']),
            ),
            min_size=1,
            max_size=6,
        ),
        min_size=1,
        max_size=4,
    ),
    short=st.booleans(),
)
def test_random_bulks_give_the_same_answer_either_way(
    batches: list[list[tuple[str, str, str, str]]], short: bool
) -> None:
    bodies = [
        bulk_body(*[(action(i, index, op), document(c)) for i, index, op, c in batch])
        for batch in batches
    ]
    with pytest.MonkeyPatch.context() as monkeypatch:
        compare(bodies, SHORT if short else None, monkeypatch)


@pytest.mark.parametrize("filter_path", [SHORT, WITH_FAILURE_STORE, None])
def test_a_conflict_on_a_9x_data_stream_says_the_failure_store_is_not_enabled(
    filter_path: str | None,
) -> None:
    """As the full server answers it (failure_store.py): the short form keeps the field only
    when the filter asks for it, and the response is the filtered full one."""
    store, stats = Store(9), Stats()
    body = bulk_body((action("a"), document("c")))
    count_bulk(store, body, None, stats, True, True, filter_path)
    again = orjson.loads(bytes(count_bulk(store, body, None, stats, True, True, filter_path)))
    item = again["items"][0]["create"]
    assert item["status"] == 409
    assert ("failure_store" in item) is (filter_path != SHORT)
    if "failure_store" in item:
        assert item["failure_store"] == "not_enabled"
        assert list(item)[-2:] == ["failure_store", "error"]
