"""The all-created bulk answer is recognised byte for byte; every other answer is parsed."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipper.sinks.elasticsearch.response import ResponseSerializer, all_created_count

SERIALIZER = ResponseSerializer()


def answer(items: list[dict[str, object]], errors: bool = False) -> bytes:
    return orjson.dumps({"errors": errors, "items": items})


CREATED = {"create": {"status": 201}}


@pytest.mark.parametrize("count", [1, 2, 5000])
def test_the_all_created_answer_is_not_parsed_but_equal(count: int) -> None:
    data = answer([CREATED] * count)
    assert all_created_count(data) == count
    loaded = SERIALIZER.json_loads(data)
    assert loaded == orjson.loads(data)
    assert len(loaded["items"]) == count
    assert isinstance(loaded["items"], list)
    with pytest.raises(TypeError):  # one shared item: nobody may change it
        loaded["items"][0]["create"]["status"] = 409  # type: ignore[index]


CONFLICT = {"create": {"status": 409, "error": {"type": "version_conflict_engine_exception"}}}


@pytest.mark.parametrize(
    "data",
    [
        answer([CREATED, CONFLICT], errors=True),
        answer([CREATED, {"create": {"status": 200}}]),
        answer([{"index": {"status": 201}}]),
        answer([]),
        b'{"errors":false,"items":[{"create":{"status":201}} ,{"create":{"status":201}}]}',
        b'{"errors":false,"took":3,"items":[{"create":{"status":201}}]}',
        b'{"errors":false,"items":[{"create":{"status":201}}]}\n',
        b'{"error":{"type":"x"},"status":400}',
    ],
)
def test_any_other_answer_is_parsed(data: bytes) -> None:
    assert all_created_count(data) is None
    assert SERIALIZER.json_loads(data) == orjson.loads(data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"errors":false,"items":[{"create":{"status":201}},{"create":{"status":201}}',
        b'{"errors":false,"items":[{"create":{"status":201}}{"create":{"status":201}},]}',
    ],
)
def test_a_broken_answer_still_fails_to_parse(data: bytes) -> None:
    assert all_created_count(data) is None
    with pytest.raises(orjson.JSONDecodeError):
        SERIALIZER.json_loads(data)


_items = st.sampled_from(
    [CREATED, CONFLICT, {"create": {"status": 429}}, {"index": {"status": 201}}]
)


@given(st.lists(_items, max_size=8), st.booleans())
def test_random_answers_load_as_orjson_loads_them(
    items: list[dict[str, object]], errors: bool
) -> None:
    data = answer(items, errors)
    assert SERIALIZER.json_loads(data) == orjson.loads(data)


@given(st.integers(1, 40), st.integers(0, 10_000), st.binary(min_size=1, max_size=3))
def test_a_changed_byte_is_never_taken_for_success(count: int, where: int, new: bytes) -> None:
    data = bytearray(answer([CREATED] * count))
    at = where % len(data)
    changed = bytes(data[:at] + new + data[at + 1 :])
    if changed == bytes(data):
        return
    recognised = all_created_count(changed)
    if recognised is not None:  # only when the change made another all-created answer
        assert orjson.loads(changed) == {"errors": False, "items": [CREATED] * recognised}
