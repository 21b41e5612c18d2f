"""What to do with each item of a `_bulk` response, decided in one pure function.

We never string-match `"errors":true`: every item is looked at, so one rejected document
neither fails the whole batch nor hides among successes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class ItemAction(enum.Enum):
    DONE = "done"  # stored now, or stored before (409 on create)
    RETRY = "retry"  # the cluster was busy or broken: send this item again later
    DEAD_LETTER = "dead_letter"  # can never succeed as it is: keep it aside with the reason


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    action: ItemAction
    status: int
    error_type: str = ""
    reason: str = ""
    # The item's `failure_store` (Elasticsearch 8.19/9.1+), "" when absent: "used" (a 201
    # whose document went to the data stream's failure store), "not_enabled" (an error the
    # failure store could have kept), "failed" (it could not).
    failure_store: str = ""

    @property
    def in_failure_store(self) -> bool:
        """Stored, but in the failure store: not as a log record."""
        return self.failure_store == FAILURE_STORE_USED


@dataclass(slots=True)
class BulkOutcome:
    outcomes: list[ItemOutcome] = field(default_factory=list)

    def indexes(self, action: ItemAction) -> list[int]:
        return [i for i, outcome in enumerate(self.outcomes) if outcome.action is action]


FAILURE_STORE_USED = "used"
FAILURE_STORE_VALUES = frozenset({FAILURE_STORE_USED, "not_enabled", "failed"})

# Statuses of items that a later attempt can fix without changing the document.
_RETRYABLE_ITEM_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
AUTH_STATUSES = frozenset({401, 403})
# Errors that come with a 5xx status yet fail the same way on every attempt. A pipeline's
# `fail` processor throws a plain RuntimeException (FailProcessorException), which
# Elasticsearch reports as 500 (elastic/elasticsearch#48803, #48810 fixed this only for
# client errors); retrying it would hold the document, and the retry queue, for ever
# (elastic/beats#14361).
_PERMANENT_ERROR_TYPES = frozenset({"fail_processor_exception"})


def classify_item(
    status: int, error: Mapping[str, Any] | None, failure_store: str = ""
) -> ItemOutcome:
    store = failure_store if failure_store in FAILURE_STORE_VALUES else ""
    if 200 <= status < 300:
        return ItemOutcome(ItemAction.DONE, status, failure_store=store)
    error_type = str((error or {}).get("type", "")) if isinstance(error, Mapping) else ""
    reason = str((error or {}).get("reason", "")) if isinstance(error, Mapping) else str(error)
    if status == 409 and error_type in ("version_conflict_engine_exception", ""):
        # `create` of an _id that exists: this very line was stored by an earlier attempt.
        return ItemOutcome(ItemAction.DONE, status, error_type, reason, store)
    if error_type in _PERMANENT_ERROR_TYPES:
        return ItemOutcome(ItemAction.DEAD_LETTER, status, error_type, reason, store)
    if status in _RETRYABLE_ITEM_STATUSES or status >= 500:
        return ItemOutcome(ItemAction.RETRY, status, error_type, reason, store)
    if status in AUTH_STATUSES:
        # The user lacks a privilege on this index (security_exception): an operator can grant
        # it, and then the very same document is accepted. Retried slowly, never dropped.
        return ItemOutcome(ItemAction.RETRY, status, error_type, reason, store)
    return ItemOutcome(ItemAction.DEAD_LETTER, status, error_type, reason, store)


def item_result(item: Any) -> Mapping[str, Any]:
    """The result inside a bulk item (`{"create": {...}}` → `{...}`); {} if malformed."""
    result = next(iter(item.values())) if isinstance(item, Mapping) and item else {}
    return result if isinstance(result, Mapping) else {}


def classify_bulk_response(body: Mapping[str, Any], sent: int) -> BulkOutcome:
    """Per-item decisions for a bulk response to `sent` actions, in request order."""
    items: Sequence[Any] = body.get("items") or ()
    outcome = BulkOutcome()
    for item in items[:sent]:
        result = item_result(item)
        status = int(result.get("status", 0))
        failure_store = str(result.get("failure_store") or "")
        outcome.outcomes.append(classify_item(status, result.get("error"), failure_store))
    # A response with fewer items than actions sent must not lose the missing ones.
    for _ in range(sent - len(outcome.outcomes)):
        outcome.outcomes.append(ItemOutcome(ItemAction.RETRY, 0, "missing_item", "no item result"))
    return outcome


class RequestAction(enum.Enum):
    RETRY = "retry"
    SPLIT = "split"  # 413: the body is too large for http.max_content_length
    # 401/403, and 4xx answers to the request as a whole (400 from a proxy in front, 404 on a
    # wrong path prefix): they need an operator. Keep the data, keep trying, say why.
    RETRY_SLOWLY = "retry_slowly"


def classify_request_failure(status: int | None) -> RequestAction:
    """A whole request failed (no per-item results): nothing is ever dropped here.

    Our bulk bodies are valid by construction (and checksummed on disk), so a 4xx for the
    whole request says the path to the cluster is misconfigured, not that a document is bad:
    splitting it down to single documents would only dead-letter every one of them.
    """
    if status == 413:
        return RequestAction.SPLIT
    if status is not None and 400 <= status < 500 and status not in (408, 429):
        return RequestAction.RETRY_SLOWLY
    return RequestAction.RETRY
