"""Elasticsearch-shaped errors.

Real Elasticsearch renders every failure as
``{"error": {"root_cause": [...], "type": ..., "reason": ..., ...}, "status": N}``; bulk items carry
only the inner object. Keeping the shapes in one place makes the reason texts easy to audit against
the Elasticsearch sources they were copied from.
"""

from __future__ import annotations

from typing import Any


def cause(type_: str, reason: str, **extra: Any) -> dict[str, Any]:
    """The inner ``{"type", "reason", ...}`` object used in bulk items and ``caused_by``."""
    out: dict[str, Any] = {"type": type_, "reason": reason}
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


class EsError(Exception):
    """A request-level failure, rendered as Elasticsearch renders an ElasticsearchException."""

    def __init__(
        self,
        status: int,
        type_: str,
        reason: str,
        *,
        extra: dict[str, Any] | None = None,
        caused_by: dict[str, Any] | None = None,
        root_cause: list[dict[str, Any]] | None = None,
        headers: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.type = type_
        self.reason = reason
        self.extra = extra or {}
        self.caused_by = caused_by
        self.root_cause = root_cause
        self.headers = headers or {}

    def inner(self) -> dict[str, Any]:
        out = cause(self.type, self.reason, **self.extra)
        if self.headers:
            out["header"] = {k: v[0] if len(v) == 1 else v for k, v in self.headers.items()}
        if self.caused_by is not None:
            out["caused_by"] = self.caused_by
        return out

    def body(self) -> dict[str, Any]:
        inner = self.inner()
        if self.root_cause is not None:
            roots = self.root_cause
        else:
            roots = [{k: v for k, v in inner.items() if k != "caused_by"}]
        error = {"root_cause": roots, **inner}
        return {"error": error, "status": self.status}


class PlainError(Exception):
    """Failures Elasticsearch renders with a bare string (405, no handler, bad content type)."""

    def __init__(self, status: int, message: str, *, with_status: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.with_status = with_status

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.with_status:
            out["status"] = self.status
        return out


def index_not_found(name: str) -> EsError:
    extra = {
        "resource.type": "index_or_alias",
        "resource.id": name,
        "index_uuid": "_na_",
        "index": name,
    }
    return EsError(404, "index_not_found_exception", f"no such index [{name}]", extra=extra)


def illegal_argument(reason: str, status: int = 400) -> EsError:
    return EsError(status, "illegal_argument_exception", reason)


def java_list(items: list[str] | tuple[str, ...]) -> str:
    """Java's ``List.toString()``, which Elasticsearch uses in most messages."""
    return "[" + ", ".join(items) + "]"


def search_phase_failure(index: str, reason: dict[str, Any], status: int = 400) -> EsError:
    """A query that every shard rejects: ES wraps the shard failure in all-shards-failed."""
    return EsError(
        status,
        "search_phase_execution_exception",
        "all shards failed",
        extra={
            "phase": "query",
            "grouped": True,
            "failed_shards": [
                {"shard": 0, "index": index, "node": "test-node-id", "reason": reason}
            ],
        },
        caused_by=reason,
        root_cause=[reason],
    )
