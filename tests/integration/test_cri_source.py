"""The CRI log source end to end: real pods in a private containerd (which writes the CRI log
files), the shipper as a process reading them (`source: cri`), the Elasticsearch test server.

Every test compares the documents with an independent reading of the files containerd wrote
(tests/support/cri_logs.py): every line exactly once, with its exact timestamp and metadata.
Kubelet's part (rotation, restarts, deleting a pod) is played by the test bed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RUN_ID, TEST_LABEL
from tests.integration.helpers import documents_of, first_arrival
from tests.integration.test_faults import wait_until
from tests.support.containerd import CRI_IMAGE, Container, Pod, PrivateContainerd
from tests.support.cri_logs import CriLine, cri_lines, rfc3339_ns
from tests.support.shipper_process import ShipperProcess, deep_merge

pytestmark = pytest.mark.containerd

NODE = "node-test-1"
POD_LABELS = {TEST_LABEL: RUN_ID}


def cri_shipper(
    factory: Any, es_server: Any, cri: PrivateContainerd, extra: dict[str, Any] | None = None
) -> ShipperProcess:
    config = {
        "source": "cri",
        "cri": {
            "socket": str(cri.socket),
            "log_directory": str(cri.log_root),
            "annotations": ["example.com/*"],
        },
        # Only this session's pods (the private containerd is the session's).
        "processing": {"selection": {"include": [{"labels": [f"{TEST_LABEL}={RUN_ID}"]}]}},
        "elasticsearch": {"retry_max_backoff_s": 1.0},
    }
    return factory(es_server.url, deep_merge(config, extra or {}))  # type: ignore[no-any-return]


async def start(shipper: ShipperProcess) -> None:
    shipper.start(env={"NODE_NAME": NODE})
    await asyncio.to_thread(shipper.wait_ready_http)


async def stop(shipper: ShipperProcess) -> None:
    assert await asyncio.to_thread(shipper.stop) == 0, shipper.stderr()[-3000:]


async def all_documents(
    es_server: Any, container: Container, expected: int
) -> list[dict[str, Any]]:
    """The container's documents once `expected` are there (and a moment more, for doubles)."""
    found: list[dict[str, Any]] = []

    async def enough() -> bool:
        nonlocal found
        found = await documents_of(es_server, container.id)
        return len(found) >= expected

    with contextlib.suppress(AssertionError):  # the caller says what is missing
        await wait_until(enough, 90, f"{expected} documents of {container.name}")
    await asyncio.sleep(0.5)
    return await documents_of(es_server, container.id)


def document_lines(documents: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [
        (d["_source"]["@timestamp"], d["_source"]["log"]["iostream"], d["_source"]["message"])
        for d in documents
    ]


def expected_lines(lines: list[CriLine]) -> list[tuple[str, str, str]]:
    return [(rfc3339_ns(line.timestamp_ns), line.stream, line.message) for line in lines]


def assert_exactly(
    documents: list[dict[str, Any]], expected: list[tuple[str, str, str]], what: str
) -> None:
    actual = document_lines(documents)
    missing = Counter(expected) - Counter(actual)
    extra = Counter(actual) - Counter(expected)
    assert not missing and not extra, (
        f"{what}: {len(expected)} lines expected, {len(actual)} documents; "
        f"missing {list(missing.items())[:3]}, extra {list(extra.items())[:3]}"
    )
    ids = [d["_id"] for d in documents]
    assert len(ids) == len(set(ids)), f"{what}: an _id twice"


async def shipped_exactly_once(es_server: Any, container: Container) -> None:
    """Every line of the container's files (all of them, rotations too) exactly once."""
    expected = expected_lines(cri_lines(container.log_path))
    documents = await all_documents(es_server, container, len(expected))
    assert_exactly(documents, expected, container.name)


def log_record(shipper: ShipperProcess, message: str) -> dict[str, Any]:
    """The shipper's first JSON log record with this message."""
    for raw in shipper.stderr().splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(raw)
            if record.get("message") == message:
                return record  # type: ignore[no-any-return]
    raise AssertionError(f"no log record {message!r}")


def run_pod(cri: PrivateContainerd, name: str, namespace: str = "default", **kwargs: Any) -> Pod:
    labels = {**POD_LABELS, **kwargs.pop("labels", {})}
    return cri.run_pod(name, namespace=namespace, labels=labels, **kwargs)


# ------------------------------------------------------------------- 1. every kind of line

LONG = 40000  # > 16384: containerd cuts it into P, P, F parts, each with its own time
TRACE = [
    "Exception in thread main java.lang.IllegalStateException: boom",
    "\tat com.example.A.run(A.java:10)",
    "\tat com.example.B.main(B.java:5)",
    "Caused by: java.io.IOException: disk",
    "\t... 2 more",
]


async def test_every_line_of_several_pods_arrives_once_with_exact_metadata(
    es_server: Any, cri: PrivateContainerd, shipper_factory: Any
) -> None:
    web = run_pod(
        cri,
        f"web-{RUN_ID}",
        namespace="shop",
        labels={"app": "web", "app.kubernetes.io/name": "web"},
        annotations={
            "example.com/team": "a",  # shipped (cri.annotations: example.com/*)
            "other.io/x": "y",  # not shipped
            "shipper.multiline.preset": "java",  # a hint: the pod's stack traces are joined
        },
    )
    db = run_pod(cri, f"db-{RUN_ID}", namespace="store")
    shipper = cri_shipper(shipper_factory, es_server, cri)
    await start(shipper)
    main = cri.create_container(
        web,
        "main",
        [
            "sh",
            "-c",
            "echo 'plain 1'; echo 'plain 2' >&2; printf '{\"msg\":\"json line\",\"n\":1}\\n'; "
            f"head -c {LONG} /dev/zero | tr '\\0' a; echo; echo; "
            "printf 'tab\\there  '; echo; printf end",
        ],
    )
    trace = cri.create_container(
        web,
        "trace",
        ["sh", "-c", "printf '%s\\n' " + " ".join(f"'{t}'" for t in TRACE) + "; echo after"],
    )
    db_main = cri.create_container(
        db, "db", ["sh", "-c", 'for i in $(seq 1 300); do echo "db $i"; done; echo "db err" >&2']
    )
    for container in (main, trace, db_main):
        await asyncio.to_thread(cri.wait_exited, container)

    # main: every line as the file has it; the JSON one decoded.
    lines = cri_lines(main.log_path)
    # The two streams interleave in the file in no defined order.
    assert sorted(line.message for line in lines) == sorted(
        ["plain 1", "plain 2", '{"msg":"json line","n":1}', "a" * LONG, "", "tab\there  ", "end"]
    )
    documents = await all_documents(es_server, main, len(lines))
    expected = expected_lines(lines)
    json_line = next(x for x in expected if x[2].startswith("{"))
    expected = [x if x != json_line else (x[0], x[1], "json line") for x in expected]
    assert_exactly(documents, expected, "main")
    decoded = next(d["_source"] for d in documents if d["_source"]["message"] == "json line")
    assert decoded["json"]["n"] == 1
    pod_uid = web.uid
    for document in documents:
        source = document["_source"]
        assert source["kubernetes"] == {
            "namespace": "shop",
            "pod": {"name": web.name, "uid": pod_uid},
            "container": {"name": "main"},
            "node": {"name": NODE},
            "labels": {
                "app": "web",
                "app_kubernetes_io/name": "web",
                TEST_LABEL.replace(".", "_"): RUN_ID,
            },
            "annotations": {"example_com/team": "a"},
        }
        assert source["container"]["id"] == main.id
        assert source["container"]["name"] == "main"
        assert source["container"]["runtime"] == "containerd"
        assert source["container"]["image"]["name"] == CRI_IMAGE
        assert source["host"]["name"] == NODE
        # Kubelet's own container labels (pod name, namespace, uid, container name) are the
        # kubernetes.* fields above, not shipped twice; the container has no other labels.
        assert "labels" not in source["container"]

    # trace: the multiline hint from the pod's annotation joins the stack trace.
    trace_documents = await all_documents(es_server, trace, 2)
    trace_lines = cri_lines(trace.log_path)
    by_time = sorted(trace_documents, key=lambda d: d["_source"]["@timestamp"])
    assert [d["_source"]["message"] for d in by_time] == ["\n".join(TRACE), "after"]
    joined = next(d["_source"] for d in trace_documents if d["_source"]["message"] != "after")
    assert joined["@timestamp"] == rfc3339_ns(trace_lines[0].timestamp_ns)
    assert "multiline" in joined["log"]["flags"]

    # db: another pod, another namespace, no annotations.
    await shipped_exactly_once(es_server, db_main)
    db_documents = await documents_of(es_server, db_main.id)
    assert {d["_source"]["kubernetes"]["namespace"] for d in db_documents} == {"store"}
    assert all("annotations" not in d["_source"]["kubernetes"] for d in db_documents)

    # status names CRI containers namespace/pod/container.
    _, body = await asyncio.to_thread(shipper.http_get, "/status")
    report = json.loads(body)
    names = {row["name"] for row in report["containers"]}
    assert f"shop/{web.name}/main" in names
    # Every line read is accounted for, as for Docker's containers.
    assert report["accounting"]["problems"] == []
    rows = {row["name"]: row for row in report["containers"]}
    assert rows[f"shop/{web.name}/main"]["accounting"]["lines_read"] == len(lines)
    await stop(shipper)
    started = log_record(shipper, "Shipper started.")
    assert (started["source"], started["source_chosen_because"]) == ("cri", "source is cri")
    assert started["cri_socket"] == str(cri.socket)


# ------------------------------------------------------------------- 2. a restart: N+1.log


async def test_a_restarted_container_is_followed_in_its_next_attempts_file(
    es_server: Any, cri: PrivateContainerd, shipper_factory: Any
) -> None:
    pod = run_pod(cri, f"restart-{RUN_ID}")
    shipper = cri_shipper(shipper_factory, es_server, cri)
    await start(shipper)
    first = cri.create_container(
        pod, "app", ["sh", "-c", 'for i in 1 2 3; do echo "run $i"; done; exit 1']
    )
    await asyncio.to_thread(cri.wait_exited, first)
    await shipped_exactly_once(es_server, first)
    second = await asyncio.to_thread(cri.restart, first)  # what kubelet does: attempt 1
    assert second.log_path.name == "1.log" and second.id != first.id
    # Found within a moment (inotify sees 1.log appear), not at the next listing (10 s).
    _, seen_at = await first_arrival(es_server, second.id)
    latency_s = seen_at - cri_lines(second.log_path)[0].timestamp_ns / 1e9
    assert 0 < latency_s < 2.0, latency_s
    await asyncio.to_thread(cri.wait_exited, second)
    await shipped_exactly_once(es_server, second)
    await shipped_exactly_once(es_server, first)  # and nothing more of the first
    await stop(shipper)


# ------------------------------------------------------------- 3. kubelet's rotation, live


def fast_writer(tag: str, batches: int, per_batch: int = 300, pause_s: float = 0.2) -> list[str]:
    """Lines written in two pieces each (so containerd often holds a part when the log is
    reopened), stderr now and then, in bursts with pauses: a few seconds in all."""
    return [
        "sh",
        "-c",
        f"b=0; while [ $b -lt {batches} ]; do i=0; while [ $i -lt {per_batch} ]; do "
        f'printf "{tag} head $b.$i "; printf "tail $b.$i\\n"; i=$((i+1)); done; '
        f'echo "{tag} err $b" >&2; sleep {pause_s}; b=$((b+1)); done',
    ]


def split_line_writer() -> list[str]:
    """Writes `before` and the head of a line, waits for /signal/go, writes the tail."""
    return [
        "sh",
        "-c",
        "printf 'before\\nhead '; while [ ! -e /signal/go ]; do sleep 0.05; done; "
        "printf 'tail\\n'; echo after",
    ]


async def test_rotation_under_a_fast_writer_loses_and_doubles_nothing(
    es_server: Any, cri: PrivateContainerd, shipper_factory: Any, tmp_path: Path
) -> None:
    pod = run_pod(cri, f"rotate-{RUN_ID}")
    shipper = cri_shipper(shipper_factory, es_server, cri)
    await start(shipper)
    writer = cri.create_container(pod, "writer", fast_writer("w", batches=25))
    signal = tmp_path / "signal"
    signal.mkdir()
    splitter = cri.create_container(
        pod, "splitter", split_line_writer(), mounts={"/signal": signal}
    )
    # containerd writes `before` when its newline comes and holds `head ` (one write).
    await wait_until(
        lambda: asyncio.sleep(0, b"before" in splitter.log_path.read_bytes()), 10, "before"
    )
    # The line in progress goes on in the next file: containerd writes its head, as a P,
    # into the renamed file when the log is reopened.
    rotated = await asyncio.to_thread(cri.rotate_like_kubelet, splitter, 100)
    (signal / "go").touch()
    for _ in range(3):
        await asyncio.sleep(1.2)
        await asyncio.to_thread(cri.rotate_like_kubelet, writer, 100)
    for container in (writer, splitter):
        await asyncio.to_thread(cri.wait_exited, container, 60)
    assert rotated.read_bytes().endswith(b" stdout P head \n")
    assert [line.message for line in cri_lines(splitter.log_path)] == [
        "before",
        "head tail",
        "after",
    ]
    await shipped_exactly_once(es_server, splitter)
    files = [p.name for p in sorted(writer.log_path.parent.iterdir())]
    assert sum(name.endswith(".gz") for name in files) == 2, files
    lines = cri_lines(writer.log_path)
    assert len(lines) == 25 * 301
    await shipped_exactly_once(es_server, writer)
    await stop(shipper)


async def test_a_rotation_compressed_while_the_shipper_was_stopped_is_read_from_the_gz(
    es_server: Any, cri: PrivateContainerd, shipper_factory: Any
) -> None:
    pod = run_pod(cri, f"gz-{RUN_ID}")
    shipper = cri_shipper(shipper_factory, es_server, cri)
    await start(shipper)
    writer = cri.create_container(pod, "writer", fast_writer("g", batches=20, pause_s=0.3))

    async def some_shipped() -> bool:
        return len(await documents_of(es_server, writer.id)) > 0

    await wait_until(some_shipped, 20, "the first documents")
    await stop(shipper)
    shipped_before = len(await documents_of(es_server, writer.id))
    # While it is stopped: two rotations, the second compressing the first (the file the
    # shipper's position is in).
    first = await asyncio.to_thread(cri.rotate_like_kubelet, writer, 100)
    await asyncio.sleep(1.2)
    await asyncio.to_thread(cri.rotate_like_kubelet, writer, 100)
    assert not first.exists() and first.with_name(first.name + ".gz").exists()
    await start(shipper)
    await asyncio.to_thread(cri.wait_exited, writer, 60)
    assert shipped_before < len(cri_lines(writer.log_path))
    await shipped_exactly_once(es_server, writer)
    assert await asyncio.to_thread(shipper.metric, "shipper_log_files_lost_total") == 0
    await stop(shipper)


# ----------------------------------------------------------------- 4. kill -9, at any moment


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_killed_at_random_moments_while_kubelet_rotates_every_line_arrives_once(
    es_server: Any, cri: PrivateContainerd, shipper_factory: Any
) -> None:
    """kill -9 anywhere: in the middle of a file, of a line split across files, of a gzip
    of the file the position is in. Every start resumes from the last saved positions."""
    seed = int(os.environ.get("SHIPPER_TEST_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    print(f"crash loop seed: {seed} (replay with SHIPPER_TEST_SEED={seed})")
    pod = run_pod(cri, f"crash-{RUN_ID}", annotations={"shipper.multiline.preset": "java"})
    writers = [
        cri.create_container(pod, f"w{n}", fast_writer(f"w{n}", batches=80, pause_s=0.3))
        for n in range(2)
    ]
    shipper = cri_shipper(shipper_factory, es_server, cri)
    started_at = time.monotonic()
    kills = 0
    next_rotation = time.monotonic() + 2
    while kills < 12 or time.monotonic() - started_at < 25:
        shipper.start(env={"NODE_NAME": NODE})
        await asyncio.sleep(rng.uniform(0.3, 3.0))
        await asyncio.to_thread(shipper.kill)
        kills += 1
        if time.monotonic() >= next_rotation:
            for writer in writers:
                with contextlib.suppress(Exception):  # an exited one is not reopened
                    await asyncio.to_thread(cri.rotate_like_kubelet, writer, 100)
            next_rotation = time.monotonic() + rng.uniform(1.0, 3.0)
        assert time.monotonic() - started_at < 120, f"crash loop too slow (seed {seed})"
    shipped_during_loop = sum([len(await documents_of(es_server, writer.id)) for writer in writers])
    await start(shipper)
    for writer in writers:
        await asyncio.to_thread(cri.wait_exited, writer, 120)
    for writer in writers:
        assert any(p.name.endswith(".gz") for p in writer.log_path.parent.iterdir())
        await shipped_exactly_once(es_server, writer)
    assert shipped_during_loop > 0, f"nothing shipped during the crash loop (seed {seed})"
    await stop(shipper)


# ----------------------------------------------------------- 5. a pod deleted while stopped


async def test_a_pod_deleted_while_the_shipper_was_stopped_is_read_to_its_end(
    es_server: Any, cri: PrivateContainerd, shipper_factory: Any, tmp_path: Path
) -> None:
    pod = run_pod(
        cri,
        f"gone-{RUN_ID}",
        namespace="shop",
        labels={"app": "gone"},
        annotations={"example.com/team": "b"},
    )
    signal = tmp_path / "signal"
    signal.mkdir()
    container = cri.create_container(
        pod,
        "app",
        [
            "sh",
            "-c",
            'for i in $(seq 1 50); do echo "early $i"; done; '
            "while [ ! -e /signal/go ]; do sleep 0.05; done; "
            "for i in $(seq 1 50); do echo \"late $i\"; done; printf 'last, unterminated'",
        ],
        mounts={"/signal": signal},
    )
    shipper = cri_shipper(shipper_factory, es_server, cri)
    await start(shipper)

    async def early_shipped() -> bool:
        return len(await documents_of(es_server, container.id)) == 50

    await wait_until(early_shipped, 30, "the early lines")
    await stop(shipper)
    (signal / "go").touch()
    await asyncio.to_thread(cri.wait_exited, container)
    await asyncio.to_thread(cri.remove_pod, pod.id)  # kubelet: the pod is deleted
    assert pod.id not in cri.pod_ids() and container.log_path.exists()

    await start(shipper)
    await shipped_exactly_once(es_server, container)
    documents = await documents_of(es_server, container.id)
    late = [d["_source"] for d in documents if not d["_source"]["message"].startswith("early")]
    assert len(late) == 51
    for source in late:  # the metadata kept with the position
        assert source["kubernetes"]["labels"]["app"] == "gone"
        assert source["kubernetes"]["annotations"] == {"example_com/team": "b"}
        assert source["kubernetes"]["pod"] == {"name": pod.name, "uid": pod.uid}
        assert source["container"]["image"]["name"] == CRI_IMAGE

    # Kubelet deletes the pod's directory after its containers: the position goes with it.
    def saved() -> dict[str, Any]:
        path = shipper.storage / "checkpoints.json"
        return dict(json.loads(path.read_bytes())["containers"]) if path.exists() else {}

    await wait_until(lambda: asyncio.sleep(0, container.id in saved()), 10, "the position")
    assert saved()[container.id]["source"]["finished"] is True
    shutil.rmtree(pod.log_directory)
    await wait_until(lambda: asyncio.sleep(0, container.id not in saved()), 15, "its removal")
    await stop(shipper)


# --------------------------------------------------- 5b. a first start with start_at: now


def history_record(shipper: ShipperProcess) -> dict[str, Any] | None:
    """The first start's "how much history" log record, once it is written."""
    for raw in shipper.stderr().splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(raw)
            if str(record.get("message", "")).startswith("History at the first start"):
                return record  # type: ignore[no-any-return]
    return None


async def test_a_first_start_at_now_skips_the_history_it_measured_and_ships_every_later_line(
    es_server: Any, cri: PrivateContainerd, shipper_factory: Any, tmp_path: Path
) -> None:
    pod = run_pod(cri, f"history-{RUN_ID}")
    signal = tmp_path / "signal"
    signal.mkdir()
    container = cri.create_container(
        pod,
        "app",
        [
            "sh",
            "-c",
            'for i in $(seq 1 30); do echo "old $i"; echo "old err $i" >&2; done; '
            "while [ ! -e /signal/go ]; do sleep 0.05; done; "
            'for i in $(seq 1 30); do echo "new $i"; done',
        ],
        mounts={"/signal": signal},
    )
    await wait_until(
        lambda: asyncio.sleep(0, len(cri_lines(container.log_path)) == 60), 30, "the history"
    )
    history_bytes = container.log_path.stat().st_size  # the writer waits for the signal

    shipper = cri_shipper(shipper_factory, es_server, cri)
    shipper.start("--start-at", "now", env={"NODE_NAME": NODE})
    await asyncio.to_thread(shipper.wait_ready_http)
    decision = json.loads((shipper.storage / "first-start.json").read_bytes())
    assert decision["start_at"] == "now" and decision["storage_was_new"] is True
    assert all(line.timestamp_ns < decision["start_ns"] for line in cri_lines(container.log_path))
    # How much history that was: this pod's one container, its file measured to the byte.
    await wait_until(lambda: asyncio.sleep(0, history_record(shipper) is not None), 15, "history")
    record = history_record(shipper)
    assert record is not None
    assert record["message"].startswith("History at the first start on this storage: 1 container")
    assert (record["containers"], record["containers_measured"]) == (1, 1)
    assert record["log_bytes"] == history_bytes
    assert (record["start_at"], record["chosen_by"]) == ("now", "--start-at")

    (signal / "go").touch()
    await asyncio.to_thread(cri.wait_exited, container)
    lines = cri_lines(container.log_path)
    later = [line for line in lines if line.timestamp_ns >= decision["start_ns"]]
    assert [line.message for line in later] == [f"new {i}" for i in range(1, 31)]
    documents = await all_documents(es_server, container, len(later))
    assert_exactly(documents, expected_lines(later), container.name)
    await stop(shipper)


# ------------------------------------------------------------------ 6. source: auto chooses


async def test_auto_chooses_by_what_answers_and_says_why(
    private_containerd: PrivateContainerd, docker_client: Any, tmp_path: Path
) -> None:
    from shipper.build import docker_client as build_docker_client
    from shipper.config import parse_config
    from shipper.sources.choice import choose_source

    docker_host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    absent = str(tmp_path / "absent.sock")

    async def choose(cri: dict[str, Any], docker: str = docker_host) -> tuple[str, str]:
        config = parse_config({"source": "auto", "cri": cri, "docker": {"host": docker}})
        client = build_docker_client(config.docker)
        try:
            choice = await choose_source(config, client)
        finally:
            await client.close()
        return choice.kind, choice.why

    # A Kubernetes node: the CRI runtime answers (Docker may be there too).
    socket = str(private_containerd.socket)
    assert await choose({"socket": socket}) == ("cri", f"a CRI runtime answers on {socket}")
    # A Docker host: its own socket is no CRI runtime, and it is said why.
    kind, why = await choose({"socket": docker_host.removeprefix("unix://")})
    assert kind == "docker"
    assert why.startswith(f"the Docker API answers at {docker_host} (")
    assert "is not a gRPC server" in why
    # Nothing answers: a CRI socket and kubelet's log directory say Kubernetes.
    silent = tmp_path / "silent.sock"
    silent.touch()
    pods = tmp_path / "pods"
    pods.mkdir()
    kind, why = await choose(
        {"socket": str(silent), "log_directory": str(pods)}, docker=f"unix://{absent}"
    )
    assert (kind, why) == (
        "cri",
        f"nothing answers yet, but the CRI socket {silent} and the pod log directory {pods} exist",
    )
    # Nothing at all: Docker, as before there was a choice.
    kind, why = await choose({"socket": absent}, docker=f"unix://{absent}")
    assert kind == "docker" and why.startswith("nothing answers yet and no CRI socket")


async def test_not_ready_while_the_cri_runtime_does_not_answer_then_ready(
    es_server: Any, cri: PrivateContainerd, shipper_factory: Any, tmp_path: Path
) -> None:
    """The socket is there but nothing answers yet (containerd restarting): /readyz says so,
    and the shipper becomes ready, and ships, once the runtime answers."""
    socket = tmp_path / "cri.sock"
    shipper = cri_shipper(shipper_factory, es_server, cri, {"cri": {"socket": str(socket)}})
    await start(shipper)
    status, body = await asyncio.to_thread(shipper.http_get, "/readyz")
    assert status == 503
    assert f"- CRI runtime not reachable: the CRI socket {socket} does not exist" in body
    socket.symlink_to(cri.socket)  # the runtime is back

    async def ready() -> bool:
        return (await asyncio.to_thread(shipper.http_get, "/readyz"))[0] == 200

    await wait_until(ready, 20, "ready")
    pod = run_pod(cri, f"ready-{RUN_ID}")
    container = cri.create_container(pod, "app", ["sh", "-c", "echo one; echo two"])
    await asyncio.to_thread(cri.wait_exited, container)
    await shipped_exactly_once(es_server, container)
    await stop(shipper)
