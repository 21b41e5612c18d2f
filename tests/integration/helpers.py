"""Assertions shared by integration tests: Elasticsearch documents vs Docker's own logs."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import docker

from tests.support.docker_logs import Line, lines_of_documents, reference_lines

DATA_STREAM = "logs-docker-default"


async def documents_of(
    es: Any, container_id: str, index: str = DATA_STREAM
) -> list[dict[str, Any]]:
    documents = await es.probe().fetch_all(index)
    return [d for d in documents if (d["_source"].get("container") or {}).get("id") == container_id]


async def wait_for_documents(
    es: Any,
    container_id: str,
    expected: int,
    *,
    timeout_s: float = 60,
    index: str = DATA_STREAM,
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    documents: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        documents = await documents_of(es, container_id, index)
        if len(documents) >= expected:
            await asyncio.sleep(0.5)  # anything extra (a duplicate) would show up now
            return await documents_of(es, container_id, index)
        await asyncio.sleep(0.25)
    return documents


async def assert_shipped_exactly_once(
    es: Any,
    client: docker.DockerClient,
    container_id: str,
    *,
    timeout_s: float = 60,
    index: str = DATA_STREAM,
) -> tuple[list[Line], list[dict[str, Any]]]:
    """Every line Docker has for the container is in Elasticsearch once, byte for byte."""
    expected = await asyncio.to_thread(reference_lines, client, container_id)
    documents = await wait_for_documents(
        es, container_id, len(expected), timeout_s=timeout_s, index=index
    )
    actual = lines_of_documents(documents)
    missing = Counter(expected) - Counter(actual)
    extra = Counter(actual) - Counter(expected)
    assert not missing and not extra, (
        f"container {container_id[:12]}: {len(expected)} lines in Docker, {len(actual)} documents;"
        f" missing {list(missing.items())[:5]}, extra {list(extra.items())[:5]}"
    )
    ids = [d["_id"] for d in documents]
    assert len(ids) == len(set(ids))
    return expected, documents


async def assert_documents_are_exactly(
    es: Any,
    container_id: str,
    expected: list[Line],
    *,
    timeout_s: float = 60,
    index: str = DATA_STREAM,
) -> list[dict[str, Any]]:
    """Like assert_shipped_exactly_once, against lines read earlier (the container is gone)."""
    documents = await wait_for_documents(
        es, container_id, len(expected), timeout_s=timeout_s, index=index
    )
    actual = lines_of_documents(documents)
    missing = Counter(expected) - Counter(actual)
    extra = Counter(actual) - Counter(expected)
    assert not missing and not extra, (
        f"container {container_id[:12]}: {len(expected)} lines expected, {len(actual)} documents;"
        f" missing {list(missing.items())[:5]}, extra {list(extra.items())[:5]}"
    )
    return documents
