"""Fault injection and the counters tests read.

Everything here is plain state that the HTTP layer consults; tests change it in process
(``server.faults.fail_requests(503, times=2)``) or, for a server in another process, with
``POST /_test/faults`` carrying the same names as JSON (see ``Faults.apply``).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAX_CONTENT_LENGTH = 100 * 1024 * 1024  # http.max_content_length default: 100mb


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    bulk_requests: int = 0
    items_by_status: Counter[int] = field(default_factory=Counter)
    items_by_index: Counter[str] = field(default_factory=Counter)
    # create/index items by the ingest pipeline they named, and those kept in a failure store
    items_by_pipeline: Counter[str] = field(default_factory=Counter)
    items_in_failure_store: int = 0
    # count-only mode with count_containers: created items per container.id (benchmarks)
    items_by_container: Counter[str] = field(default_factory=Counter)
    bytes_received: int = 0
    gzip_requests: int = 0
    last_headers: dict[str, str] = field(default_factory=dict)
    last_bulk_headers: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "bulk_requests": self.bulk_requests,
            "items_by_status": {str(k): v for k, v in self.items_by_status.items()},
            "items_by_index": dict(self.items_by_index),
            "items_by_pipeline": dict(self.items_by_pipeline),
            "items_in_failure_store": self.items_in_failure_store,
            "items_by_container": dict(self.items_by_container),
            "bytes_received": self.bytes_received,
            "gzip_requests": self.gzip_requests,
            "last_headers": self.last_headers,
            "last_bulk_headers": self.last_bulk_headers,
        }


@dataclass
class Faults:
    reject_fraction: float = 0.0
    reject_next_items: int = 0
    fail_status: int = 503
    fail_remaining: int = 0
    fail_until: float = 0.0
    fail_only_bulk: bool = True
    delay_s: float = 0.0
    max_content_length: int = DEFAULT_MAX_CONTENT_LENGTH
    wrong_password: bool = False
    # A document matching this predicate is rejected as a mapping conflict (400 item).
    mapping_error: Callable[[dict[str, Any]], bool] | None = None
    seed: int = 0
    _random: random.Random = field(default_factory=random.Random)

    def reset(self) -> None:
        fresh = Faults()
        for name in (
            "reject_fraction",
            "reject_next_items",
            "fail_status",
            "fail_remaining",
            "fail_until",
            "fail_only_bulk",
            "delay_s",
            "max_content_length",
            "wrong_password",
            "mapping_error",
        ):
            setattr(self, name, getattr(fresh, name))

    def reject_items(self, count: int = 0, fraction: float = 0.0, seed: int | None = None) -> None:
        """Answer the next ``count`` items (or ``fraction`` of all items) with a 429."""
        self.reject_next_items = count
        self.reject_fraction = fraction
        if seed is not None:
            self._random.seed(seed)

    def fail_requests(
        self,
        status: int,
        *,
        times: int = 0,
        seconds: float = 0.0,
        only_bulk: bool = True,
    ) -> None:
        """Fail whole requests with ``status`` for the next ``times`` requests or ``seconds``."""
        self.fail_status = status
        self.fail_remaining = times
        self.fail_until = time.monotonic() + seconds if seconds else 0.0
        self.fail_only_bulk = only_bulk

    def take_request_failure(self, is_bulk: bool) -> int | None:
        if self.fail_only_bulk and not is_bulk:
            return None
        if self.fail_remaining > 0:
            self.fail_remaining -= 1
            return self.fail_status
        if self.fail_until and time.monotonic() < self.fail_until:
            return self.fail_status
        return None

    def take_item_rejection(self) -> bool:
        if self.reject_next_items > 0:
            self.reject_next_items -= 1
            return True
        return self.reject_fraction > 0 and self._random.random() < self.reject_fraction

    def apply(self, spec: dict[str, Any]) -> None:
        """The JSON form used by ``POST /_test/faults``."""
        if spec.get("reset"):
            self.reset()
        if "reject_items" in spec:
            r = spec["reject_items"]
            self.reject_items(int(r.get("count", 0)), float(r.get("fraction", 0.0)), r.get("seed"))
        if "fail_requests" in spec:
            r = spec["fail_requests"]
            self.fail_requests(
                int(r["status"]),
                times=int(r.get("times", 0)),
                seconds=float(r.get("seconds", 0.0)),
                only_bulk=bool(r.get("only_bulk", True)),
            )
        if "delay_s" in spec:
            self.delay_s = float(spec["delay_s"])
        if "max_content_length" in spec:
            self.max_content_length = int(spec["max_content_length"])
        if "wrong_password" in spec:
            self.wrong_password = bool(spec["wrong_password"])
        if "mapping_error" in spec:
            # {"field": "path", "equals": value}: reject documents whose field equals value.
            cond = spec["mapping_error"]
            if cond is None:
                self.mapping_error = None
            else:
                path, expected = cond["field"], cond.get("equals")

                def predicate(src: dict[str, Any]) -> bool:
                    node: Any = src
                    for part in path.split("."):
                        if not isinstance(node, dict) or part not in node:
                            return False
                        node = node[part]
                    return expected is None or node == expected

                self.mapping_error = predicate


def rejected_item_reason(bytes_: int) -> str:
    # IndexingPressure.markPrimaryOperationStarted's message (8.x/9.x).
    limit = 53687091
    return (
        "rejected execution of primary operation [coordinating_and_primary_bytes=0, "
        f"replica_bytes=0, all_bytes=0, primary_operation_bytes={bytes_}, "
        f"max_coordinating_and_primary_bytes={limit}]"
    )


def rejected_request_reason(bytes_: int) -> str:
    # IndexingPressure.markCoordinatingOperationStarted's message.
    limit = 53687091
    return (
        "rejected execution of coordinating operation [coordinating_and_primary_bytes="
        f"{limit}, replica_bytes=0, all_bytes={limit}, coordinating_operation_bytes={bytes_}, "
        f"max_coordinating_and_primary_bytes={limit}]"
    )
