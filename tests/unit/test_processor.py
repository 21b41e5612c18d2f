from __future__ import annotations

from typing import Any

from shipper.config import ProcessingConfig
from shipper.model import STDERR, STDOUT, ContainerMeta, LogRecord
from shipper.pipeline.processor import build_processor

CID = "c" * 64
T0 = 1_714_564_800_000_000_000
OFF = {"json_logs": {"mode": "off"}, "redaction": {"presets": []}}


def cfg(**raw: Any) -> ProcessingConfig:
    return ProcessingConfig.model_validate(raw)


def meta(
    labels: dict[str, str] | None = None, image: str = "myorg/app:1", name: str = "app"
) -> ContainerMeta:
    return ContainerMeta(id=CID, name=name, image=image, labels=labels or {})


def lines(*messages: str, stream: str = STDOUT) -> list[LogRecord]:
    return [LogRecord(CID, T0 + i, stream, 0, m) for i, m in enumerate(messages)]


def test_nothing_active_returns_the_same_list() -> None:
    processor = build_processor(cfg(**OFF), meta())
    records = lines("a", "{}")
    assert not processor.active
    assert processor.process(records) is records
    assert processor.flush_due(1e9) == [] and processor.flush_all() == []
    assert processor.oldest_pending() is None and processor.next_flush_deadline() is None


def test_label_preset_python_then_json_drop_and_redact_in_order() -> None:
    labels = {"shipper.multiline.preset": "python", "shipper.json": "auto"}
    processor = build_processor(
        cfg(drop=[{"id": "health", "message_pattern": "^GET /healthz"}]), meta(labels)
    )
    out = processor.process(
        lines(
            '{"level":"error","msg":"login failed password=hunter2","user":"bob"}',
            "Traceback (most recent call last):",
            '  File "/app/auth.py", line 3, in login',
            '    raise PermissionError("token=abc123")',
            "PermissionError: token=abc123",
            '{"msg":"GET /healthz 200"}',
            "GET /healthz 200",
            "done",
        ),
        now_monotonic_s=5.0,
    )
    assert [(r.message, r.flags, r.fields) for r in out] == [
        ("login failed password=[REDACTED]", ("redacted",),
         {"log.level": "error", "json": {"user": "bob"}}),
        ("Traceback (most recent call last):\n"
         '  File "/app/auth.py", line 3, in login\n'
         '    raise PermissionError("token=[REDACTED]")\n'
         "PermissionError: token=[REDACTED]",
         ("multiline", "redacted"), None),
    ]  # fmt: skip
    assert out[1].timestamp_ns == T0 + 1
    assert processor.oldest_pending() == (T0 + 7, 0)  # "done" is held until the next line
    assert processor.next_flush_deadline() == 6.0
    assert [r.message for r in processor.flush_due(6.0)] == ["done"]
    stats = processor.stats.take()
    assert stats.dropped == {"health": 2}
    assert stats.redacted == {"key_value": 2}
    assert (stats.json_parsed, stats.multiline_events, stats.multiline_lines) == (2, 1, 4)
    assert processor.stats.take().dropped == {}  # take() starts again from zero


def test_config_rule_by_image_glob_and_label_override() -> None:
    c = cfg(
        multiline={"rules": [{"image": "myorg/java-*", "preset": "java"}, {"pattern": "^x"}]},
        **OFF,
    )
    java = build_processor(c, meta(image="myorg/java-api:3"))
    assert java.multiline is not None and java.multiline.spec.preset == "java"
    other = build_processor(c, meta())
    assert other.multiline is not None and other.multiline.spec.pattern is not None
    off = build_processor(c, meta({"shipper.multiline.preset": "none"}))
    assert off.multiline is None


def test_label_pattern_negate_before() -> None:
    labels = {
        "shipper.multiline.pattern": r"^\d{4}-",
        "shipper.multiline.negate": "true",
        "shipper.multiline.match": "after",
    }
    processor = build_processor(cfg(**OFF), meta(labels))
    out = processor.process(lines("2024-05-01 a", "  b", "c", "2024-05-01 d"), 0.0)
    out += processor.flush_all()
    assert [r.message for r in out] == ["2024-05-01 a\n  b\nc", "2024-05-01 d"]
    assert processor.warnings == []


def test_bad_labels_are_warned_about_and_ignored() -> None:
    labels = {
        "shipper.multiline.preset": "cobol",
        "shipper.json": "perhaps",
        "shipper.field.message": "x",
    }
    processor = build_processor(cfg(), meta(labels))
    assert processor.multiline is None
    assert processor.warnings == [
        "label shipper.multiline.preset='cobol' ignored: not one of java, python, go",
        "label shipper.json='perhaps' ignored: not true, false or auto",
        "label shipper.field.message ignored: not a dotted path, or a field the shipper sets "
        "itself",
    ]
    bad_regex = build_processor(cfg(), meta({"shipper.multiline.pattern": "("}))
    assert bad_regex.multiline is None
    assert bad_regex.warnings[0].startswith("label shipper.multiline.pattern ignored: invalid")


def test_json_label_false_beats_config_and_rules_pick_containers() -> None:
    c = cfg(json_logs={"mode": "off", "rules": [{"name": "api-*", "mode": "on"}]})
    assert build_processor(c, meta(name="api-1")).process(lines("x"))[0].fields == {
        "tags": ["json_invalid"]
    }
    assert build_processor(c, meta(name="web")).process(lines("{}"))[0].fields is None
    off = build_processor(c, meta({"shipper.json": "false"}, name="api-1"))
    assert off.process(lines("x"))[0].fields is None


def test_drop_by_stream_scoped_to_a_container() -> None:
    c = cfg(drop=[{"id": "nginx-stderr", "image": "nginx*", "stream": "stderr"}], **OFF)
    records = lines("out") + lines("err", stream=STDERR)
    assert [r.message for r in build_processor(c, meta(image="nginx:1")).process(records)] == [
        "out"
    ]
    assert build_processor(c, meta()).process(records) is records


def test_flush_all_processes_held_events() -> None:
    processor = build_processor(
        cfg(multiline={"rules": [{"preset": "java"}]}), meta({"shipper.json": "false"})
    )
    assert processor.process(lines("Exception: password=x", "\tat a.b(C.java:1)"), 0.0) == []
    [event] = processor.flush_all()
    assert event.message == "Exception: password=[REDACTED]\n\tat a.b(C.java:1)"
    assert event.flags == ("multiline", "redacted")
