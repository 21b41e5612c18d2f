"""Pure decisions of the Elasticsearch output: per item, per request, per template."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from shipper.config import IlmConfig, parse_config
from shipper.errors import ConfigError
from shipper.pipeline.encoder import index_of
from shipper.sinks.elasticsearch.dead_letter import dead_letter_document
from shipper.sinks.elasticsearch.retry import (
    ItemAction,
    ItemOutcome,
    RequestAction,
    classify_bulk_response,
    classify_item,
    classify_request_failure,
)
from shipper.sinks.elasticsearch.retry_queue import RetryQueue, Ticket
from shipper.sinks.elasticsearch.secrets import read_secret
from shipper.sinks.elasticsearch.templates import (
    TEMPLATE_VERSION,
    ilm_policy,
    index_template,
    should_write,
    supports_failure_store,
    with_meta,
)


@pytest.mark.parametrize(
    ("status", "error_type", "action"),
    [
        (201, "", ItemAction.DONE),
        (200, "", ItemAction.DONE),
        (409, "version_conflict_engine_exception", ItemAction.DONE),
        (429, "es_rejected_execution_exception", ItemAction.RETRY),
        (500, "exception", ItemAction.RETRY),
        (503, "unavailable_shards_exception", ItemAction.RETRY),
        (408, "", ItemAction.RETRY),
        (400, "document_parsing_exception", ItemAction.DEAD_LETTER),
        (400, "illegal_argument_exception", ItemAction.DEAD_LETTER),
        (404, "index_not_found_exception", ItemAction.DEAD_LETTER),
        (409, "some_other_conflict", ItemAction.DEAD_LETTER),
        # A pipeline's fail processor: 500, but the same on every attempt.
        (500, "fail_processor_exception", ItemAction.DEAD_LETTER),
    ],
)
def test_classify_item(status: int, error_type: str, action: ItemAction) -> None:
    error = {"type": error_type, "reason": "why"} if error_type else None
    assert classify_item(status, error).action is action


def test_failure_store_status_is_read_from_each_item() -> None:
    """As Elasticsearch 9.1 answers (the failure store reference, "Failure redirection"):
    `used` on a 201 of a document kept in the failure store; `not_enabled` beside the error
    of one that could have been; absent on a plain success."""
    body = {
        "errors": True,
        "items": [
            {"create": {"status": 201}},
            {"create": {"failure_store": "used", "status": 201}},
            {
                "create": {
                    "status": 400,
                    "failure_store": "not_enabled",
                    "error": {"type": "document_parsing_exception", "reason": "bad"},
                }
            },
            {
                "create": {
                    "status": 400,
                    "failure_store": "failed",
                    "error": {"type": "document_parsing_exception", "reason": "bad"},
                }
            },
            {"create": {"status": 201, "failure_store": "something_new"}},
        ],
    }
    outcomes = classify_bulk_response(body, 5).outcomes
    assert [(o.action, o.failure_store, o.in_failure_store) for o in outcomes] == [
        (ItemAction.DONE, "", False),
        (ItemAction.DONE, "used", True),
        (ItemAction.DEAD_LETTER, "not_enabled", False),
        (ItemAction.DEAD_LETTER, "failed", False),
        (ItemAction.DONE, "", False),  # an unknown value is not taken for "used"
    ]


def test_missing_items_are_retried_never_lost() -> None:
    body = {"items": [{"create": {"status": 201}}]}
    outcomes = classify_bulk_response(body, 3).outcomes
    assert [o.action for o in outcomes] == [ItemAction.DONE, ItemAction.RETRY, ItemAction.RETRY]


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (None, RequestAction.RETRY),
        (429, RequestAction.RETRY),
        (502, RequestAction.RETRY),
        (503, RequestAction.RETRY),
        (504, RequestAction.RETRY),
        (413, RequestAction.SPLIT),
        (401, RequestAction.RETRY_SLOWLY),
        (403, RequestAction.RETRY_SLOWLY),
    ],
)
def test_classify_request_failure(status: int | None, action: RequestAction) -> None:
    assert classify_request_failure(status) is action


async def test_retry_queue_hands_out_items_when_due_and_bounds_workers() -> None:
    acked: list[str] = []
    ticket = Ticket(2, lambda: acked.append("batch"))
    queue = RetryQueue(max_docs=2, base_s=0.05, cap_s=0.05)
    queue.park(b"a\n", ticket, attempt=1)
    queue.park(b"b\n", ticket, attempt=1)
    assert len(queue) == 2
    waiter = asyncio.create_task(queue.wait_for_room())
    await asyncio.sleep(0)
    assert not waiter.done()  # full: a worker would wait here
    due = await asyncio.wait_for(queue.take_due(10, 1 << 20), timeout=1)
    await asyncio.wait_for(waiter, timeout=1)  # room again as soon as one item left
    while len(due) < 2:  # full jitter: each item has its own due time
        due += await asyncio.wait_for(queue.take_due(10, 1 << 20), timeout=1)
    assert sorted(p.entry for p in due) == [b"a\n", b"b\n"]
    await asyncio.wait_for(waiter, timeout=1)
    for parked in due:
        parked.ticket.settle()
    assert acked == ["batch"]


async def test_retry_queue_respects_batch_limits() -> None:
    queue = RetryQueue(max_docs=100, base_s=0.001, cap_s=0.001)
    ticket = Ticket(5, lambda: None)
    for i in range(5):
        queue.park(b"x" * 10 + str(i).encode(), ticket, attempt=1)
    await asyncio.sleep(0.01)
    first = await queue.take_due(3, 1 << 20)
    second = await queue.take_due(3, 22)  # two entries of 11 bytes
    assert (len(first), len(second), len(queue)) == (3, 2, 0)


def _ours(body: dict[str, object], version: int = TEMPLATE_VERSION) -> dict[str, object]:
    marked = with_meta(body)
    marked["_meta"] = {**marked["_meta"], "version": version}  # type: ignore[dict-item]
    return marked


@pytest.mark.parametrize(
    ("existing", "overwrite", "write", "why"),
    [
        (None, False, True, "missing"),
        (_ours({"a": 1}), False, False, "up to date"),
        (_ours({"a": 0}), False, True, "outdated"),
        (_ours({"a": 1}, version=1), False, True, "outdated"),
        (_ours({"a": 1}, version=TEMPLATE_VERSION + 1), False, False, "newer shipper"),
        (_ours({"a": 1}, version=TEMPLATE_VERSION + 1), True, True, "newer shipper"),
        ({"a": 2, "_meta": {"owner": "me"}}, False, False, "not managed"),
        ({"a": 2}, True, True, "not managed"),
    ],
)
def test_template_ownership(
    existing: dict[str, object] | None, overwrite: bool, write: bool, why: str
) -> None:
    decision, reason = should_write(existing, with_meta({"a": 1}), overwrite)
    assert decision is write
    assert why in reason


def test_ilm_policy() -> None:
    assert ilm_policy(IlmConfig(enabled=True, delete_after="90d"))["phases"]["delete"] == {
        "min_age": "90d",
        "actions": {"delete": {}},
    }
    assert "delete" not in ilm_policy(IlmConfig(enabled=True))["phases"]


ENTRY = (
    b'{"create":{"_index":"logs-docker-default","_id":"abc"}}\n'
    b'{"@timestamp":"2024-01-01T00:00:00.000000001Z","message":"m","container":{"id":"c1"}}\n'
)


def test_dead_letter_document_keeps_the_original_and_the_reason() -> None:
    outcome = ItemOutcome(ItemAction.DEAD_LETTER, 400, "document_parsing_exception", "bad")
    doc_id, document = dead_letter_document(ENTRY, outcome, "logs-shipper.deadletter-default")
    assert doc_id == "abc"  # the original _id: dead-lettering again is a 409, not a copy
    assert orjson.loads(document["event"]["original"])["container"] == {"id": "c1"}
    assert document["error"] == {"type": "document_parsing_exception", "message": "bad"}
    assert document["http"] == {"response": {"status_code": 400}}
    assert document["shipper"] == {"target_index": "logs-docker-default", "document_id": "abc"}
    assert document["data_stream"] == {
        "type": "logs",
        "dataset": "shipper.deadletter",
        "namespace": "default",
    }


def test_dead_letter_of_a_damaged_entry_still_gets_a_stable_id() -> None:
    outcome = ItemOutcome(ItemAction.DEAD_LETTER, 400, "x", "y")
    first, _ = dead_letter_document(b"not json\n{}\n", outcome)
    again, _ = dead_letter_document(b"not json\n{}\n", outcome)
    assert first == again and len(first) == 20


def test_index_of() -> None:
    assert index_of(ENTRY) == "logs-docker-default"
    assert index_of(b'{"create": {"_index": "logs-a-b"}}\n{}\n') == "logs-a-b"
    assert index_of(b"garbage") == ""


def test_secrets_from_files(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    assert read_secret(None, str(secret), "elasticsearch.password_file") == "s3cret"
    assert read_secret("inline", None, "elasticsearch.password_file") == "inline"
    with pytest.raises(ConfigError) as caught:
        read_secret(None, str(tmp_path / "missing"), "elasticsearch.password_file")
    assert caught.value.key == "elasticsearch.password_file"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        read_secret(None, str(tmp_path / "empty"), "elasticsearch.api_key_file")


@pytest.mark.parametrize(
    ("es", "problem"),
    [
        ({"password": "a", "password_file": "/x", "username": "u"}, "not both"),
        ({"api_key": "a", "username": "u"}, "one way to authenticate"),
        ({"bearer_token_file": "/t", "api_key_file": "/k"}, "one way to authenticate"),
        ({"password": "p"}, "password without username"),
        ({"dead_letter": {"data_stream": "logs-docker-default"}}, "must differ"),
        ({"dead_letter": {"data_stream": "deadletters"}}, "logs-<dataset>-<namespace>"),
    ],
)
def test_auth_config_errors(es: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"elasticsearch": es})
    assert problem in str(caught.value)
    assert caught.value.key.startswith("elasticsearch")


def test_the_failure_store_option_is_the_9_1_template_syntax() -> None:
    plain = index_template("logs-a-b", ["c"])
    assert "template" not in plain
    enabled = index_template("logs-a-b", ["c"], failure_store=True)
    assert enabled["template"] == {"data_stream_options": {"failure_store": {"enabled": True}}}
    # Switching it changes the digest: the installed template is updated at the next start.
    assert with_meta(plain)["_meta"]["digest"] != with_meta(enabled)["_meta"]["digest"]


@pytest.mark.parametrize(
    ("version", "supported"),
    [
        ("8.17.0", False),
        ("8.18.2", False),
        ("8.19.0", True),
        ("8.19.4", True),
        ("9.0.3", False),
        ("9.1.0", True),
        ("9.1.2", True),
        ("9.2.0-SNAPSHOT", True),
        ("10.0.0", True),
        ("7.17.0", False),
        ("", False),
        ("x.y", False),
    ],
)
def test_failure_store_support_by_version(version: str, supported: bool) -> None:
    assert supports_failure_store(version) is supported
