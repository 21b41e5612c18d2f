"""Assertions shared by integration tests: Elasticsearch documents vs Docker's own logs."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import docker

from tests.support.docker_logs import Line, lines_of_documents, reference_lines
from tests.support.shipper_process import ShipperProcess

DATA_STREAM = "logs-docker-default"
# What the runtime says a container wrote: Docker's logs API by default (Podman's tests read
# its k8s-file log instead, see tests/support/podman.py).
Reference = Callable[[docker.DockerClient, str], list[Line]]


async def documents_of(
    es: Any, container_id: str, index: str = DATA_STREAM
) -> list[dict[str, Any]]:
    # Asked of the cluster (container.id is a keyword): fetching every document and
    # filtering here made each poll slower than the shipper once a noisy test had run.
    query = {"term": {"container.id": container_id}}
    documents = await es.probe().fetch_all(index, query)
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


async def first_arrival(
    es: Any, container_id: str, *, timeout_s: float = 10, step_s: float = 0.05
) -> tuple[list[dict[str, Any]], float]:
    """The container's first documents and the wall-clock time they were first seen.

    Polls in small steps: the step is added to any latency measured with it, and counts
    against the shipper, never for it.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        documents = await documents_of(es, container_id)
        if documents:
            return documents, time.time()
        await asyncio.sleep(step_s)
    raise AssertionError(f"no document of {container_id[:12]} within {timeout_s} s")


def epoch_s(rfc3339: str) -> float:
    """Docker's RFC 3339 UTC timestamp → seconds since the epoch (to the microsecond)."""
    seconds, _, fraction = rfc3339.rstrip("Z").partition(".")
    base = datetime.fromisoformat(seconds + "+00:00").timestamp()
    return base + float("0." + (fraction or "0"))


def epoch_ns(rfc3339: str) -> int:
    """Docker's RFC 3339 UTC timestamp (9 fraction digits) → exact nanoseconds."""
    seconds, _, fraction = rfc3339.rstrip("Z").partition(".")
    base = int(datetime.fromisoformat(seconds + "+00:00").timestamp())
    return base * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))


def checkpoints(shipper: ShipperProcess) -> dict[str, dict[str, int]]:
    """The shipper's saved positions by container id ({} before the first save)."""
    path = shipper.storage / "checkpoints.json"
    if not path.exists():
        return {}
    return dict(json.loads(path.read_bytes())["containers"])


def lines_taken(checkpoint: dict[str, int], lines: Iterable[Line]) -> int:
    """How many of `lines` (a container's, in log order) a checkpoint counts as taken.

    A resume reads from `since_ns` (inclusive) and skips `skip` lines: every line before
    `since_ns`, plus `skip` more, were taken.
    """
    before = sum(1 for line in lines if epoch_ns(line.timestamp) < checkpoint["since_ns"])
    return before + checkpoint["skip"]


def cut_line_command(tty: bool) -> str:
    """One run of a container that stops in the middle of a line, numbered by a file in it.

    The file survives in the container's filesystem from one run to the next, so each run's
    lines are distinct (Docker gives them distinct timestamps anyway; the text tells which run
    a joined line came from). On a TTY there is one stream, so one cut line.
    """
    count = "n=$(( $(cat /run-count 2>/dev/null || echo 0) + 1 )); echo $n > /run-count; "
    if tty:
        return count + 'echo "run $n first"; printf "run $n cut"; exit 1'
    return (
        count + 'echo "run $n first"; echo "run $n err" >&2; '
        'printf "run $n cut out"; printf "run $n cut err" >&2; exit 1'
    )


def cut_line_expected(tty: bool, runs: int) -> list[tuple[str, str]]:
    out = []
    for n in range(1, runs + 1):
        if tty:
            out += [("stdout", f"run {n} first"), ("stdout", f"run {n} cut")]
        else:
            out += [
                ("stdout", f"run {n} first"),
                ("stderr", f"run {n} err"),
                ("stdout", f"run {n} cut out"),
                ("stderr", f"run {n} cut err"),
            ]
    return sorted(out)


def _assert_same_lines(
    container_id: str, expected: list[Line], documents: list[dict[str, Any]]
) -> None:
    actual = lines_of_documents(documents)
    missing = Counter(expected) - Counter(actual)
    extra = Counter(actual) - Counter(expected)
    assert not missing and not extra, (
        f"container {container_id[:12]}: {len(expected)} lines expected, {len(actual)} documents;"
        f" missing {list(missing.items())[:5]}, extra {list(extra.items())[:5]}"
    )
    ids = [d["_id"] for d in documents]
    assert len(ids) == len(set(ids)), f"container {container_id[:12]}: an _id twice"


async def assert_shipped_exactly_once(
    es: Any,
    client: docker.DockerClient,
    container_id: str,
    *,
    timeout_s: float = 60,
    index: str = DATA_STREAM,
    reference: Reference = reference_lines,
) -> tuple[list[Line], list[dict[str, Any]]]:
    """Every line Docker has for the container is in Elasticsearch once, byte for byte."""
    expected = await asyncio.to_thread(reference, client, container_id)
    documents = await wait_for_documents(
        es, container_id, len(expected), timeout_s=timeout_s, index=index
    )
    _assert_same_lines(container_id, expected, documents)
    return expected, documents


async def assert_all_shipped_exactly_once(
    es: Any,
    client: docker.DockerClient,
    container_ids: list[str],
    *,
    timeout_s: float = 60,
    index: str = DATA_STREAM,
    reference: Reference = reference_lines,
) -> dict[str, list[Line]]:
    """`assert_shipped_exactly_once` for many containers, reading the index once per poll.

    For a fleet: one fetch of every document instead of one per container.
    """
    expected = dict(
        zip(
            container_ids,
            await asyncio.gather(
                *(asyncio.to_thread(reference, client, cid) for cid in container_ids)
            ),
            strict=True,
        )
    )
    wanted = set(container_ids)
    total = sum(len(lines) for lines in expected.values())
    deadline = time.monotonic() + timeout_s
    settled = False
    by_container: dict[str, list[dict[str, Any]]] = {}
    while True:
        by_container = {cid: [] for cid in container_ids}
        for document in await es.probe().fetch_all(index):
            cid = (document["_source"].get("container") or {}).get("id")
            if cid in wanted:
                by_container[cid].append(document)
        if sum(len(docs) for docs in by_container.values()) >= total:
            if settled:
                break
            settled = True  # once more after a pause: a duplicate would show up now
            await asyncio.sleep(0.5)
            continue
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    for cid in container_ids:
        _assert_same_lines(cid, expected[cid], by_container[cid])
    return expected


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
    _assert_same_lines(container_id, expected, documents)
    return documents
