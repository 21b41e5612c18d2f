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


@dataclass(slots=True)
class BulkOutcome:
    outcomes: list[ItemOutcome] = field(default_factory=list)

    def indexes(self, action: ItemAction) -> list[int]:
        return [i for i, outcome in enumerate(self.outcomes) if outcome.action is action]


# Statuses of items that a later attempt can fix without changing the document.
_RETRYABLE_ITEM_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
AUTH_STATUSES = frozenset({401, 403})


def classify_item(status: int, error: Mapping[str, Any] | None) -> ItemOutcome:
    if 200 <= status < 300:
        return ItemOutcome(ItemAction.DONE, status)
    error_type = str((error or {}).get("type", "")) if isinstance(error, Mapping) else ""
    reason = str((error or {}).get("reason", "")) if isinstance(error, Mapping) else str(error)
    if status == 409 and error_type in ("version_conflict_engine_exception", ""):
        # `create` of an _id that exists: this very line was stored by an earlier attempt.
        return ItemOutcome(ItemAction.DONE, status, error_type, reason)
    if status in _RETRYABLE_ITEM_STATUSES or status >= 500:
        return ItemOutcome(ItemAction.RETRY, status, error_type, reason)
    if status in AUTH_STATUSES:
        # The user lacks a privilege on this index (security_exception): an operator can grant
        # it, and then the very same document is accepted. Retried slowly, never dropped.
        return ItemOutcome(ItemAction.RETRY, status, error_type, reason)
    return ItemOutcome(ItemAction.DEAD_LETTER, status, error_type, reason)


def classify_bulk_response(body: Mapping[str, Any], sent: int) -> BulkOutcome:
    """Per-item decisions for a bulk response to `sent` actions, in request order."""
    items: Sequence[Any] = body.get("items") or ()
    outcome = BulkOutcome()
    for item in items[:sent]:
        result = next(iter(item.values())) if isinstance(item, Mapping) and item else {}
        status = int(result.get("status", 0)) if isinstance(result, Mapping) else 0
        error = result.get("error") if isinstance(result, Mapping) else None
        outcome.outcomes.append(classify_item(status, error))
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
