"""Self-logs: JSON or text, secrets masked however they get there, errors rate-limited."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from shipper import logsetup, telemetry


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    monkeypatch.setattr(logsetup.sys, "stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logging.getLogger("shipper").level
    logsetup.configure("debug", "json")
    yield stream
    root.handlers[:], root.level = saved[0], saved[1]
    logging.getLogger("shipper").setLevel(saved[2])


def test_json_lines_with_structured_fields(captured: io.StringIO) -> None:
    telemetry.info("Shipper started.", output="elasticsearch", storage_path="/var/lib/x")
    (line,) = captured.getvalue().splitlines()
    document = orjson.loads(line)
    assert document["message"] == "Shipper started."
    assert document["log.level"] == "info"
    assert document["storage_path"] == "/var/lib/x"


def test_secrets_are_masked_wherever_they_appear(captured: io.StringIO) -> None:
    logsetup.register_secrets(["registered-S3cret-value", "abc"])
    log = logging.getLogger("shipper.test")
    log.debug(
        "request failed: %s",
        "POST http://u:url-Pa55@es:9200/_bulk Authorization: Basic dXNlcjpodW50ZXIy",
        extra={"fields": {"password": "field-Pa55", "error": "auth registered-S3cret-value"}},
    )
    try:
        raise RuntimeError("connect failed with registered-S3cret-value")
    except RuntimeError:
        log.exception("boom")
    text = captured.getvalue()
    for secret in ("registered-S3cret-value", "url-Pa55", "dXNlcjpodW50ZXIy", "field-Pa55"):
        assert secret not in text
    assert "***" in text
    assert "abc" not in logsetup._secrets  # too short to mask usefully


def test_text_format_masks_too(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(logsetup.sys, "stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:]
    try:
        logsetup.configure("info", "text")
        logsetup.register_secrets(["text-S3cret-value"])
        telemetry.info("Connected.", api_key="text-S3cret-value", host="es")
    finally:
        root.handlers[:] = saved
    assert "text-S3cret-value" not in stream.getvalue()
    assert "Connected." in stream.getvalue()


def test_repeated_errors_are_rate_limited(
    captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(telemetry.time, "monotonic", lambda: clock[0])
    limiter = telemetry.RateLimitedLog(interval_s=30)
    monkeypatch.setattr(telemetry, "rate_limited", limiter)
    before = telemetry.errors.labels("test_flood")._value.get()
    for _ in range(100):
        telemetry.error("test_flood", "Something keeps failing.", attempt=1)
        clock[0] += 0.1  # 100 errors in 10 s
    clock[0] += 30
    telemetry.error("test_flood", "Something keeps failing.", attempt=2)
    lines = [orjson.loads(line) for line in captured.getvalue().splitlines()]
    assert len(lines) == 2  # the first, then one after the interval with the count
    assert "suppressed_since_last" not in lines[0]
    assert lines[1]["suppressed_since_last"] == 99
    # Every occurrence is counted, logged or not.
    assert telemetry.errors.labels("test_flood")._value.get() - before == 101
