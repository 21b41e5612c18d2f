from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipper.config import RedactionConfig
from shipper.model import STDOUT, LogRecord
from shipper.pipeline import redact
from shipper.pipeline.redact import Redactor
from shipper.pipeline.stats import ProcessorStats


def redactor(**cfg: object) -> tuple[Redactor, ProcessorStats]:
    stats = ProcessorStats()
    return Redactor(RedactionConfig.model_validate(cfg), stats), stats


def masked(text: str, **cfg: object) -> tuple[str, set[str]]:
    hits: set[str] = set()
    return redactor(**cfg)[0].redact_text(text, hits), hits


@pytest.mark.parametrize(
    ("text", "expected", "preset"),
    [
        ("login password=hunter2 user=bob", "login password=[REDACTED] user=bob", "key_value"),
        ("passwd=abc pwd=def", "passwd=[REDACTED] pwd=[REDACTED]", "key_value"),
        ("DB_PASSWORD: s3cr3t!", "DB_PASSWORD: [REDACTED]", "key_value"),
        ("client_secret = 'x y z'", "client_secret = '[REDACTED]'", "key_value"),
        ('{"user":"bob","password":"p@ss w0rd"}', '{"user":"bob","password":"[REDACTED]"}',
         "key_value"),
        ('body={\\"api_key\\":\\"k-123\\"}', 'body={\\"api_key\\":\\"[REDACTED]\\"}',
         "key_value"),
        ("GET /cb?access_token=abc123&state=x", "GET /cb?access_token=[REDACTED]&state=x",
         "key_value"),
        ("X-Auth-Token: abcd1234", "X-Auth-Token: [REDACTED]", "key_value"),
        ("secret=s1 token=t1 api-key=a1", "secret=[REDACTED] token=[REDACTED] api-key=[REDACTED]",
         "key_value"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
         "Authorization: Bearer [REDACTED]", "authorization"),
        ('"authorization": "Basic dXNlcjpwYXNz"', '"authorization": "Basic [REDACTED]"',
         "authorization"),
        ("curl -H 'x: bearer abc.def-123'", "curl -H 'x: bearer [REDACTED]'", "authorization"),
        ("key AKIAIOSFODNN7EXAMPLE used", "key [REDACTED] used", "aws_access_key"),
        ("sts ASIAY34FZKBOKMUTVV7A ok", "sts [REDACTED] ok", "aws_access_key"),
        ("card 4111 1111 1111 1111 ok", "card [REDACTED] ok", "credit_card"),
        ("card=5500-0000-0000-0004.", "card=[REDACTED].", "credit_card"),
        ("amex 378282246310005", "amex [REDACTED]", "credit_card"),
        ("dsn postgres://app:s3cret@db:5432/shop", "dsn postgres://app:[REDACTED]@db:5432/shop",
         "url_password"),
    ],
)  # fmt: skip
def test_each_preset_masks(text: str, expected: str, preset: str) -> None:
    assert masked(text) == (expected, {preset})


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T12:00:00.123456789Z took 1714564800123456789 ns",  # timestamps
        "epoch_ms=1714564800123 date=20240501120000123",
        "request 123e4567-e89b-12d3-a456-426614174000 done",  # UUID
        "request 12345678-1234-1234-1234-123456789012 done",  # all-digit UUID
        "order 4111111111111112 shipped",  # 16 digits, Luhn fails
        "id 1234567890123456",  # starts with 1: not issued by a card network
        "max_tokens=100 token_count=5 secretary=Jane keyboard=de",
        "using bearer authentication for the api",
        "password= (empty) and password",
        "AKIAIOSFODNN7EXAMPL short, xAKIAIOSFODNN7EXAMPLEx glued",
        "http://host:8080/path@v2",
        "already password=[REDACTED] masked",
    ],
)
def test_false_positives_are_not_masked(text: str) -> None:
    assert masked(text) == (text, set())


def test_presets_can_be_turned_off_one_by_one_and_all() -> None:
    text = "password=a AKIAIOSFODNN7EXAMPLE"
    assert masked(text, presets=["aws_access_key"]) == (
        "password=a [REDACTED]", {"aws_access_key"},
    )  # fmt: skip
    assert masked(text, presets=[]) == (text, set())
    assert not redactor(presets=[])[0].active


def test_own_rules_with_backreferences_and_custom_mask() -> None:
    cfg = {
        "mask": "***",
        "rules": [
            {"id": "email", "pattern": r"([\w.]+)@example\.com", "replacement": r"\1@…"},
            {"id": "pin", "pattern": r"pin \d{4}"},
        ],
    }
    assert masked("mail bob@example.com pin 1234 password=x", **cfg) == (
        "mail bob@… *** password=***", {"email", "pin", "key_value"},
    )  # fmt: skip


def test_records_are_flagged_counted_and_json_fields_masked() -> None:
    r, stats = redactor()
    fields: dict[str, Any] = {
        "json": {"user": "bob", "db": {"password": "hunter2", "tokens": ["a"]},
                 "note": "token=abc", "api_key": ["k1", "k2"], "count": 3},
        "log.level": "info",
    }  # fmt: skip
    records = [
        LogRecord("c", 1, STDOUT, 0, "clean line"),
        LogRecord("c", 2, STDOUT, 0, "login ok", fields=fields),
        LogRecord("c", 3, STDOUT, 0, "card 4111 1111 1111 1111", flags=("multiline",)),
    ]
    out = r.apply(records)
    assert out[0] is records[0]
    assert out[1].fields == {
        "json": {"user": "bob", "db": {"password": "[REDACTED]", "tokens": ["a"]},
                 "note": "token=[REDACTED]", "api_key": ["[REDACTED]", "[REDACTED]"],
                 "count": 3},
        "log.level": "info",
    }  # fmt: skip
    assert fields["json"]["db"] == {"password": "hunter2", "tokens": ["a"]}  # not mutated
    assert out[1].flags == ("redacted",)
    assert out[2].message == "card [REDACTED]"
    assert out[2].flags == ("multiline", "redacted")
    assert stats.redacted == {"key_value": 1, "credit_card": 1}


secretish = st.lists(
    st.sampled_from(
        ["password", "token", "=", ": ", " ", '"', "'", "\\", "4111", " 1111", "-1111",
         "Bearer ", "abc.1", "AKIA", "IOSFODNN7EXAMPLE", "http://u:", "@h", "[REDACTED]", "x"]
    )
    | st.text(max_size=3),
    max_size=20,
).map("".join)  # fmt: skip


@given(secretish)
def test_redaction_is_idempotent(text: str) -> None:
    r, _ = redactor()
    once = r.redact_text(text, set())
    assert r.redact_text(once, set()) == once


_PIECES = [
    "password=hunter2", "Authorization: Bearer abc.def-123", "AKIAABCDEFGHIJKLMNOP",
    "card 4111 1111 1111 1111 ok", "https://bob:s3cret@db.local/x", "plain words", "1234-5678",
    "grüße 日本", "İstanbul", "key", "\n", "tok", "en", "2026-12-01", "99999999999",
]  # fmt: skip


@given(st.lists(st.lists(st.sampled_from(_PIECES), max_size=4).map(" ".join), max_size=12))
def test_a_batch_is_redacted_exactly_as_line_by_line(messages: list[str]) -> None:
    records = [LogRecord("c", i, STDOUT, 0, text) for i, text in enumerate(messages)]
    batch_redactor, batch_stats = redactor()
    single_redactor, single_stats = redactor()
    together = batch_redactor.apply(records)
    alone = [single_redactor.apply([record])[0] for record in records]
    assert together == alone
    assert batch_stats.take() == single_stats.take()


def test_a_batch_without_any_needle_comes_back_as_it_was() -> None:
    records = [LogRecord("c", i, STDOUT, 0, "x" * 99) for i in range(100)]
    assert redactor()[0].apply(records) is records


def test_positional_getters_point_at_their_fields() -> None:
    record = LogRecord("c", 1, STDOUT, 2, "the message", ("truncated",), {"a": 1}, 9)
    assert redact._MESSAGE_FIELD(record) == record.message
    assert redact._FIELDS_FIELD(record) == record.fields


def test_a_batch_with_decoded_fields_has_those_fields_redacted() -> None:
    # The batch prefilter finds nothing in the messages; the record with fields is still walked.
    records = [
        LogRecord("c", i, STDOUT, 0, "plain", (), {"token": "s3cr3t"} if i == 2 else None, 5)
        for i in range(4)
    ]
    out = Redactor(RedactionConfig(), ProcessorStats()).apply(records)
    assert [r.fields for r in out] == [None, None, {"token": "[REDACTED]"}, None]
    assert out[0] is records[0]
