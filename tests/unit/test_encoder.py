from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from shipper.lines.timestamps import format_timestamp
from shipper.model import ContainerMeta, LogRecord
from shipper.pipeline.encoder import (
    _full_entry,
    container_document,
    decode_entry,
    document_id,
    encode_records,
    sanitize_label_key,
)

META = ContainerMeta(
    id="c" * 64,
    name="web-1",
    image="registry.local:5000/team/web:1.2",
    labels={
        "com.docker.compose.project": "shop",
        "com.docker.compose.service": "web",
        "a.b": "1",
        "a": "top",
        "evil": '"},"message":"injected',
    },
)


def test_document_id_is_deterministic_and_distinguishes_every_part() -> None:
    base = document_id("c1", 1, "stdout", 0)
    assert base == document_id("c1", 1, "stdout", 0)
    others = {
        document_id("c2", 1, "stdout", 0),
        document_id("c1", 2, "stdout", 0),
        document_id("c1", 1, "stderr", 0),
        document_id("c1", 1, "stdout", 1),
    }
    assert base not in others and len(others) == 4


def test_document_id_starts_with_the_time_and_has_fixed_fields() -> None:
    container = "dd7eab1c4e02a1b3" + "f" * 48
    assert document_id(container, 0x18A3C3B2F1E0D9C8, "stdout", 0) == (
        "18a3c3b2f1e0d9c8dd7eab1c4e02a1b3o0"
    )
    assert document_id(container, 5, "stderr", 26) == "0000000000000005dd7eab1c4e02a1b3e1a"
    # Later lines sort after earlier ones: what Lucene's id lookups like best.
    ids = [document_id(container, ts, "stdout", 0) for ts in (9, 10, 2**40, 2**62)]
    assert ids == sorted(ids)
    assert document_id("c1", 1, "stdout", 0) == "0000000000000001c1______________o0"


@given(
    ts=st.integers(0, 2**63 - 1),
    seq=st.integers(0, 10**6),
    stream=st.sampled_from(["stdout", "stderr"]),
    message=st.text(),
    flags=st.sampled_from([(), ("truncated",), ("invalid_utf8", "redacted")]),
    label=st.text(),
    pipeline=st.sampled_from([None, "parse", 'odd "%s" \\ pipeline']),
)
def test_the_fast_template_and_the_general_path_build_the_same_entry(
    ts: int,
    seq: int,
    stream: str,
    message: str,
    flags: tuple[str, ...],
    label: str,
    pipeline: str | None,
) -> None:
    meta = ContainerMeta(
        id="ab%" + "c" * 61, name="w%s", image="i", labels={"x%d": label, "p": "100%"}
    )
    doc = container_document(meta, index="logs-docker-default", host_name="h%", pipeline=pipeline)
    record = LogRecord(meta.id, ts, stream, seq, message, flags)
    (fast,) = encode_records([record], doc)
    general = _full_entry(record, doc)
    assert decode_entry(fast) == decode_entry(general)
    action, source = decode_entry(fast)
    assert action["create"]["_id"] == document_id(meta.id, ts, stream, seq)
    assert action["create"].get("pipeline") == pipeline
    assert source["message"] == message and source["container"]["labels"]["x%d"] == label
    assert source["@timestamp"] == format_timestamp(ts)
    if not flags:
        assert fast == general  # byte for byte


def test_label_keys_with_dots_do_not_nest() -> None:
    assert sanitize_label_key("com.docker.compose.project") == "com_docker_compose_project"
    assert sanitize_label_key("") == "_"


def test_encoded_entry_is_a_create_action_and_the_ecs_document() -> None:
    doc = container_document(META, index="logs-docker-default", host_name="node-7")
    record = LogRecord(
        META.id, 1795839223517053725, "stderr", 2, 'say "hi"\tüñí', ("invalid_utf8",)
    )
    (entry,) = encode_records([record], doc)
    assert entry.endswith(b"\n") and entry.count(b"\n") == 2
    action, source = decode_entry(entry)
    assert action == {
        "create": {
            "_index": "logs-docker-default",
            "_id": document_id(META.id, 1795839223517053725, "stderr", 2),
        }
    }
    assert source == {
        "@timestamp": "2026-11-28T04:13:43.517053725Z",
        "message": 'say "hi"\tüñí',
        "log": {"iostream": "stderr", "flags": ["invalid_utf8"]},
        "container": {
            "id": META.id,
            "name": "web-1",
            "image": {"name": "registry.local:5000/team/web:1.2"},
            "runtime": "docker",
            "labels": {
                "a": "top",
                "a_b": "1",
                "com_docker_compose_project": "shop",
                "com_docker_compose_service": "web",
                "evil": '"},"message":"injected',
            },
        },
        "host": {"name": "node-7"},
        "ecs": {"version": "8.11.0"},
        "data_stream": {"type": "logs", "dataset": "docker", "namespace": "default"},
        "docker": {"compose": {"project": "shop", "service": "web"}},
    }


def test_records_with_extra_fields_merge_into_the_same_document_shape() -> None:
    doc = container_document(META, index="logs-docker-default", host_name="n")
    plain = LogRecord(META.id, 5, "stdout", 0, "m")
    rich = plain._replace(fields={"log.level": "error", "json": {"a": 1}, "container.extra": "x"})
    _, plain_source = decode_entry(encode_records([plain], doc)[0])
    _, rich_source = decode_entry(encode_records([rich], doc)[0])
    assert rich_source["log"] == {"iostream": "stdout", "level": "error"}
    assert rich_source["json"] == {"a": 1}
    assert rich_source["container"]["extra"] == "x"
    del rich_source["log"], rich_source["json"], rich_source["container"]["extra"]
    del plain_source["log"]
    assert rich_source == plain_source


def test_timestamps_before_and_after_a_second_boundary_are_exact() -> None:
    doc = container_document(META, index="logs-docker-default", host_name="n")
    records = [LogRecord(META.id, ns, "stdout", 0, "x") for ns in (999_999_999, 1_000_000_000, 7)]
    stamps = [orjson.loads(e.split(b"\n")[1])["@timestamp"] for e in encode_records(records, doc)]
    assert stamps == [
        "1970-01-01T00:00:00.999999999Z",
        "1970-01-01T00:00:01.000000000Z",
        "1970-01-01T00:00:00.000000007Z",
    ]


def test_the_action_names_the_pipeline_and_is_unchanged_without_one() -> None:
    record = LogRecord(META.id, 5, "stdout", 0, "m")
    doc_id = document_id(META.id, 5, "stdout", 0).encode()
    plain = container_document(META, index="logs-docker-default", host_name="n")
    piped = container_document(META, index="logs-docker-default", host_name="n", pipeline="p1")
    # Byte for byte: what the buffer held before pipelines existed, so ids and records of a
    # shipper without a pipeline stay exactly as they were.
    assert encode_records([record], plain)[0].split(b"\n")[0] == (
        b'{"create":{"_index":"logs-docker-default","_id":"' + doc_id + b'"}}'
    )
    assert encode_records([record], piped)[0].split(b"\n")[0] == (
        b'{"create":{"_index":"logs-docker-default","pipeline":"p1","_id":"' + doc_id + b'"}}'
    )
    # The general path (a record with fields) writes the same action.
    rich = record._replace(fields={"log.level": "info"})
    assert decode_entry(_full_entry(rich, piped))[0] == {
        "create": {"_index": "logs-docker-default", "pipeline": "p1", "_id": doc_id.decode()}
    }
    # The rest of the entry is the same with or without a pipeline.
    assert (
        encode_records([record], plain)[0].split(b"\n")[1:]
        == (encode_records([record], piped)[0].split(b"\n")[1:])
    )
