from __future__ import annotations

import json
from typing import Any

import pytest

from shipper.model import STDOUT, LogRecord
from shipper.pipeline import jsonlogs
from shipper.pipeline.jsonlogs import JsonDecoder, JsonSpec
from shipper.pipeline.stats import ProcessorStats

T0 = 1_714_564_800_000_000_000


def decode(
    message: str, *, auto: bool = False, target: str = "json", max_depth: int = 3,
    max_fields: int = 6,
) -> tuple[LogRecord, ProcessorStats]:  # fmt: skip
    stats = ProcessorStats()
    decoder = JsonDecoder(JsonSpec(auto, target, max_depth, max_fields), stats)
    [out] = decoder.apply([LogRecord("c", T0, STDOUT, 0, message)])
    return out, stats


def test_object_with_promoted_keys() -> None:
    line = (
        '{"time":"2024-05-01T12:00:00.250Z","level":"WARN","logger":"http",'
        '"msg":"slow request","path":"/items","status":200}'
    )
    out, stats = decode(line)
    assert out.message == "slow request"
    assert out.fields == {
        "log.level": "warn",
        "log.logger": "http",
        "event.created": "2024-05-01T12:00:00.250000+00:00",
        "json": {"path": "/items", "status": 200},
    }
    assert out.timestamp_ns == T0  # Docker's time is kept for @timestamp and the _id
    assert stats.json_parsed == 1 and not stats.json_errors


@pytest.mark.parametrize(
    ("document", "level"),
    [
        ({"level": 30}, "info"),  # pino
        ({"level": 50}, "error"),
        ({"level": 7}, "7"),
        ({"severity": "ERROR"}, "error"),  # GCP-style
        ({"log.level": "Debug"}, "debug"),  # ecs-logging
        ({"level": True}, None),
    ],
)
def test_level_mapping(document: dict[str, Any], level: str | None) -> None:
    out, _ = decode(json.dumps(document))
    assert (out.fields or {}).get("log.level") == level


@pytest.mark.parametrize(
    ("document", "created"),
    [
        ({"ts": 1714564800.5}, "2024-05-01T12:00:00.500000+00:00"),  # zap: epoch seconds
        ({"time": 1714564800123}, "2024-05-01T12:00:00.123000+00:00"),  # pino: epoch ms
        ({"timestamp": 1714564800123456789}, "2024-05-01T12:00:00.123457+00:00"),  # ns
        ({"@timestamp": "2024-05-01 12:00:00"}, "2024-05-01T12:00:00"),
        ({"timestamp": "01/May/2024:12:00:00"}, None),  # not ISO: stays in the object
    ],
)
def test_app_timestamp_becomes_event_created(document: dict[str, Any], created: str | None) -> None:
    out, _ = decode(json.dumps(document))
    fields = out.fields or {}
    assert fields.get("event.created") == created
    if created is None:
        assert fields["json"] == document


def test_without_message_key_the_raw_line_stays_the_message() -> None:
    out, _ = decode('{"event":"user_created","id":7}')
    assert out.message == '{"event":"user_created","id":7}'
    assert out.fields == {"json": {"event": "user_created", "id": 7}}


def test_non_string_message_is_not_promoted() -> None:
    out, _ = decode('{"message":{"a":1},"msg":"text"}')
    assert out.message == "text"
    assert out.fields == {"json": {"message": {"a": 1}}}


@pytest.mark.parametrize(
    ("line", "tag"),
    [
        ("[1, 2, 3]", "json_not_object"),
        ('"just a string"', "json_not_object"),
        ("42", "json_not_object"),
        ("{'single': 'quotes'}", "json_invalid"),
        ('{"a": 1', "json_invalid"),
        ('{"a": NaN}', "json_invalid"),
        ("plain text", "json_invalid"),
        ('{"a":{"b":{"c":{"d":1}}}}', "json_too_deep"),
        ('{"a":1,"b":2,"c":3,"d":4,"e":5,"f":{"g":7}}', "json_too_many_fields"),
    ],
)
def test_rejected_lines_stay_plain_with_a_tag(line: str, tag: str) -> None:
    out, stats = decode(line)
    assert out.message == line
    assert out.fields == {"tags": [tag]}
    assert stats.json_errors == {tag: 1}
    assert stats.json_parsed == 0


def test_limits_are_inclusive() -> None:
    out, _ = decode('{"a":{"b":{"c":1}},"d":[{"e":1}],"f":2}')  # depth 3, 6 keys
    assert out.fields == {"json": {"a": {"b": {"c": 1}}, "d": [{"e": 1}], "f": 2}}


def test_auto_mode_only_tries_lines_starting_with_a_brace() -> None:
    assert decode("[1, 2]", auto=True)[0].fields is None
    assert decode("hello {}", auto=True)[0].fields is None
    out, stats = decode("{broken", auto=True)
    assert out.fields == {"tags": ["json_invalid"]}
    assert stats.json_errors == {"json_invalid": 1}


def test_dotted_target() -> None:
    out, _ = decode('{"msg":"hi","a":1}', target="app.data")
    assert out.fields == {"app.data": {"a": 1}}


def test_root_target_moves_colliding_keys_under_json() -> None:
    line = (
        '{"@timestamp":"2024-05-01T12:00:00Z","message":"hi","host":"web-1",'
        '"container.id":"x","tags":["a"],"json":1,"user":{"id":7},"http.status":200}'
    )
    out, _ = decode(line, target="", max_fields=20)
    assert out.message == "hi"
    assert out.fields == {
        "event.created": "2024-05-01T12:00:00+00:00",
        "user": {"id": 7},
        "http.status": 200,
        "json": {"host": "web-1", "container.id": "x", "tags": ["a"], "json": 1},
    }


def test_existing_fields_and_tags_are_kept() -> None:
    stats = ProcessorStats()
    decoder = JsonDecoder(JsonSpec(False, "json", 3, 6), stats)
    record = LogRecord("c", T0, STDOUT, 0, "nope", fields={"tags": ["x"], "a": 1})
    [out] = decoder.apply([record])
    assert out.fields == {"tags": ["x", "json_invalid"], "a": 1}
    assert record.fields == {"tags": ["x"], "a": 1}


def test_the_message_getter_points_at_the_message() -> None:
    record = LogRecord("c", 1, STDOUT, 2, '{"a": 1}', (), None, 9)
    assert jsonlogs._MESSAGE_FIELD(record) == record.message


def test_keep_original_keeps_the_line_as_written_when_it_was_decoded() -> None:
    line = '{"msg": "slow request",  "level":"WARN", "path": "/items"}'
    decoder = JsonDecoder(JsonSpec(True, "json", 3, 6, keep_original=True), ProcessorStats())
    decoded, plain, broken = decoder.apply(
        [
            LogRecord("c", T0, STDOUT, 0, line),
            LogRecord("c", T0, STDOUT, 1, "plain text"),
            LogRecord("c", T0, STDOUT, 2, "{not json"),
        ]
    )
    assert decoded.message == "slow request"
    assert decoded.fields is not None and decoded.fields["event.original"] == line
    # Lines that stay as they are need no copy.
    assert plain.fields is None
    assert broken.message == "{not json" and "event.original" not in (broken.fields or {})


def test_keep_original_is_redacted_like_the_message() -> None:
    from shipper.config import RedactionConfig
    from shipper.pipeline.redact import Redactor

    line = '{"msg": "login", "password": "hunter2"}'
    stats = ProcessorStats()
    [decoded] = JsonDecoder(JsonSpec(True, "json", 3, 6, keep_original=True), stats).apply(
        [LogRecord("c", T0, STDOUT, 0, line)]
    )
    [masked] = Redactor(RedactionConfig(), stats).apply([decoded])
    assert masked.fields is not None
    assert "hunter2" not in json.dumps(masked.fields)
    assert masked.fields["event.original"] == '{"msg": "login", "password": "[REDACTED]"}'
    assert "redacted" in masked.flags
