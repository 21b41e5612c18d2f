"""Processing with real containers: multiline, JSON logs, selection, redaction, metadata."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import docker
import orjson
import pytest

from shipper.pipeline.encoder import document_id
from tests.conftest import RUN_ID, TEST_IMAGE, TEST_LABEL
from tests.integration.helpers import (
    checkpoints,
    documents_of,
    epoch_ns,
    epoch_s,
    wait_for_documents,
)
from tests.support.docker_logs import reference_lines

pytestmark = pytest.mark.docker

JAVA_TRACE = r"""printf '%s\n' 'starting' \
 'Exception in thread "main" java.lang.IllegalStateException: boom' \
 '	at com.example.App.run(App.java:42)' \
 '	at com.example.App.main(App.java:10)' \
 'Caused by: java.io.IOException: disk' \
 '	at com.example.Io.read(Io.java:7)' \
 '	... 2 more' \
 'next event' >&2"""

PYTHON_TRACE = r"""printf '%s\n' 'Traceback (most recent call last):' \
 '  File "/app/main.py", line 3, in <module>' \
 '    main()' \
 '  File "/app/main.py", line 2, in main' \
 '    raise ValueError("bad value")' \
 'ValueError: bad value' ; sleep 600"""


async def start_shipper(
    shipper_factory: Any, es_server: Any, config: dict[str, Any] | None = None
) -> Any:
    shipper = shipper_factory(es_server.url, config)
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)
    return shipper


async def test_stack_traces_arrive_as_one_event_each(
    es_server: Any, containers: Any, shipper_factory: Any
) -> None:
    shipper = await start_shipper(shipper_factory, es_server)
    java = containers(JAVA_TRACE, labels={"shipper.multiline.preset": "java"})
    python = containers(PYTHON_TRACE, labels={"shipper.multiline.preset": "python"})
    started = time.monotonic()
    java_docs = await wait_for_documents(es_server, java.id, 3)
    python_docs = await wait_for_documents(es_server, python.id, 1)
    messages = sorted(d["_source"]["message"] for d in java_docs)
    assert messages == sorted(
        [
            "starting",
            'Exception in thread "main" java.lang.IllegalStateException: boom\n'
            "\tat com.example.App.run(App.java:42)\n"
            "\tat com.example.App.main(App.java:10)\n"
            "Caused by: java.io.IOException: disk\n"
            "\tat com.example.Io.read(Io.java:7)\n"
            "\t... 2 more",
            "next event",
        ]
    )
    trace = next(d for d in java_docs if d["_source"]["message"].startswith("Exception"))
    assert "multiline" in trace["_source"]["log"]["flags"]
    assert trace["_source"]["log"]["iostream"] == "stderr"
    # The Python container stays alive and quiet: its event leaves on the flush timeout.
    assert [d["_source"]["message"] for d in python_docs] == [
        "Traceback (most recent call last):\n"
        '  File "/app/main.py", line 3, in <module>\n'
        "    main()\n"
        '  File "/app/main.py", line 2, in main\n'
        '    raise ValueError("bad value")\n'
        "ValueError: bad value"
    ]
    assert time.monotonic() - started < 10
    assert await asyncio.to_thread(shipper.stop) == 0


async def test_multiline_event_is_rebuilt_identically_after_a_kill(
    es_server: Any, docker_client: docker.DockerClient, containers: Any, shipper_factory: Any
) -> None:
    """A held event is not checkpointed: after kill -9 it is rebuilt with the same _id."""
    shipper = await start_shipper(
        shipper_factory, es_server, {"processing": {"multiline": {"flush_timeout_s": 30}}}
    )
    python = containers(PYTHON_TRACE, labels={"shipper.multiline.preset": "python"})
    await asyncio.sleep(3)  # read and held (30 s flush timeout), checkpoints saved meanwhile
    assert await documents_of(es_server, python.id) == []
    shipper.kill()
    shipper.config["processing"] = {"multiline": {"flush_timeout_s": 0.5}}
    restarted = shipper_factory(es_server.url, shipper.config, name="shipper")
    restarted.start()
    docs = await wait_for_documents(es_server, python.id, 1, timeout_s=20)
    assert len(docs) == 1 and docs[0]["_source"]["message"].endswith("ValueError: bad value")
    assert docs[0]["_source"]["message"].startswith("Traceback")
    assert docs[0]["_id"] == await asyncio.to_thread(first_line_id, docker_client, python.id)
    assert await asyncio.to_thread(restarted.stop) == 0


def first_line_id(client: docker.DockerClient, container_id: str) -> str:
    """The `_id` of the container's first line, by the documented scheme, from Docker's logs.

    The first line of a container is the first of its stream and timestamp: its seq is 0.
    """
    first = reference_lines(client, container_id)[0]
    return document_id(container_id, epoch_ns(first.timestamp), first.stream, 0)


async def test_a_sent_event_keeps_its_id_when_it_is_read_again_after_a_kill(
    es_server: Any,
    docker_client: docker.DockerClient,
    containers: Any,
    shipper_factory: Any,
) -> None:
    """Sent, but its position not yet saved: after kill -9 the event is read, joined and sent
    again, and Elasticsearch keeps one document, under the `_id` of its first line."""
    config = {"storage": {"checkpoint_interval_s": 3600}}
    shipper = await start_shipper(shipper_factory, es_server, config)
    python = containers(PYTHON_TRACE, labels={"shipper.multiline.preset": "python"})
    (sent,) = await wait_for_documents(es_server, python.id, 1)
    assert python.id not in checkpoints(shipper)  # so the restart reads it again
    await asyncio.to_thread(shipper.kill)
    shipper.start()
    await asyncio.to_thread(shipper.wait_ready_http)

    async def sent_again() -> bool:
        conflicts: float = await asyncio.to_thread(
            shipper.metric, "shipper_bulk_items_total", {"status": "409"}
        )
        return conflicts >= 1

    deadline = time.monotonic() + 20
    while not await sent_again():
        assert time.monotonic() < deadline, "the event was not sent again after the restart"
        await asyncio.sleep(0.2)
    (doc,) = await documents_of(es_server, python.id)
    assert doc["_source"] == sent["_source"]
    assert doc["_source"]["message"].startswith("Traceback (most recent call last):\n")
    assert (
        doc["_id"]
        == sent["_id"]
        == await asyncio.to_thread(first_line_id, docker_client, python.id)
    )
    assert await asyncio.to_thread(shipper.stop) == 0


async def test_events_are_cut_at_max_lines_and_the_last_leaves_on_the_flush_timeout(
    es_server: Any,
    docker_client: docker.DockerClient,
    containers: Any,
    shipper_factory: Any,
) -> None:
    flush_timeout_s = 1.0
    shipper = await start_shipper(
        shipper_factory,
        es_server,
        {"processing": {"multiline": {"max_lines": 3, "flush_timeout_s": flush_timeout_s}}},
    )
    frames = [f"\tat com.example.App.f{i}(App.java:{i})" for i in range(1, 7)]
    trace = ['Exception in thread "main" java.lang.IllegalStateException: boom', *frames]
    quoted = " ".join(f"'{line}'" for line in trace)
    java = containers(
        f"printf '%s\\n' {quoted}; sleep 600", labels={"shipper.multiline.preset": "java"}
    )
    # The last piece is held until the container has been quiet for the flush timeout.
    deadline = time.monotonic() + 20
    docs: list[dict[str, Any]] = []
    while len(docs) < 3:
        assert time.monotonic() < deadline, docs
        await asyncio.sleep(0.05)
        docs = await documents_of(es_server, java.id)
    seen_at = time.time()
    lines = await asyncio.to_thread(reference_lines, docker_client, java.id)
    assert [line.message for line in lines] == trace
    latency_s = seen_at - epoch_s(lines[-1].timestamp)
    assert latency_s < flush_timeout_s + 1.0, latency_s
    await asyncio.sleep(0.5)
    docs = await documents_of(es_server, java.id)
    # Every line once, in pieces of at most three, each piece with its first line's time.
    pieces = [
        (d["_source"]["message"], d["_source"]["log"]["flags"], d["_source"]["@timestamp"])
        for d in docs
    ]
    assert sorted(pieces) == sorted(
        [
            ("\n".join(trace[0:3]), ["multiline", "multiline_split"], lines[0].timestamp),
            ("\n".join(trace[3:6]), ["multiline", "multiline_split"], lines[3].timestamp),
            (trace[6], ["multiline_split"], lines[6].timestamp),
        ]
    )
    # Records flagged, as shipped: all three pieces carry multiline_split, two are joined.
    assert shipper.metric("shipper_records_flagged_total", {"flag": "multiline_split"}) == 3
    assert shipper.metric("shipper_records_flagged_total", {"flag": "multiline"}) == 2
    assert shipper.metric("shipper_multiline_events_total") == 2
    assert await asyncio.to_thread(shipper.stop) == 0


async def test_json_lines_become_fields_and_broken_json_stays_text(
    es_server: Any, containers: Any, shipper_factory: Any
) -> None:
    shipper = await start_shipper(shipper_factory, es_server)
    app = containers(
        r"""printf '%s\n' '{"level":"WARN","msg":"disk low","logger":"app.disk","free_mb":12,"time":"2026-01-02T03:04:05.123Z"}' \
        '{"msg": "unterminated' '[1,2,3]' 'plain words'""",
        labels={"shipper.json": "true"},
    )
    docs = await wait_for_documents(es_server, app.id, 4)
    by_message = {d["_source"]["message"]: d["_source"] for d in docs}
    structured = by_message["disk low"]
    assert structured["log"]["level"] == "warn"
    assert structured["log"]["logger"] == "app.disk"
    assert structured["json"] == {"free_mb": 12}
    assert structured["event"]["created"].startswith("2026-01-02T03:04:05.123")
    assert structured["@timestamp"] != structured["event"]["created"]  # Docker's time kept
    assert by_message['{"msg": "unterminated']["tags"] == ["json_invalid"]
    assert by_message["[1,2,3]"]["tags"] == ["json_not_object"]
    assert by_message["plain words"]["tags"] == ["json_invalid"]
    assert shipper.metric("shipper_json_parsed_total") == 1
    assert shipper.metric("shipper_json_errors_total") == 3
    assert await asyncio.to_thread(shipper.stop) == 0


async def test_selection_by_label_name_image_and_compose_project(
    es_server: Any, containers: Any, shipper_factory: Any, docker_client: docker.DockerClient
) -> None:
    # A second tag of the test image, only this run's: the image glob must tell it apart.
    other_tag = f"shipper-test-busybox:other-{RUN_ID}"
    assert docker_client.images.get(TEST_IMAGE).tag("shipper-test-busybox", f"other-{RUN_ID}")
    by_image = None
    try:
        shipper = await start_shipper(
            shipper_factory,
            es_server,
            {
                "processing": {
                    "selection": {
                        # Only this run's containers, as the fixture's default selection does.
                        "include": [{"labels": [f"{TEST_LABEL}={RUN_ID}"]}],
                        "exclude": [
                            {"name": "skip-by-name-*"},
                            {"image": "shipper-test-busybox:other-*"},
                            {"compose_project": "noisy"},
                            {"labels": ["team=secret"]},
                        ],
                    }
                }
            },
        )
        suffix = str(int(time.time() * 1000))
        opted_out = containers("echo opted-out", labels={"shipper.enable": "false"})
        by_name = containers("echo by-name", name=f"skip-by-name-{suffix}")
        by_image = containers("echo by-image", image=other_tag)
        by_project = containers("echo by-project", labels={"com.docker.compose.project": "noisy"})
        by_label = containers("echo by-label", labels={"team": "secret"})
        shipped = containers("echo shipped", labels={"team": "public"})
        # The same image under its usual tag, with a name close to the excluded glob.
        near_miss = containers("echo near-miss", name=f"skip-by-nam-{suffix}")
        for container in (shipped, near_miss):
            await wait_for_documents(es_server, container.id, 1)
        await asyncio.sleep(1.5)
        for container in (opted_out, by_name, by_image, by_project, by_label):
            assert await documents_of(es_server, container.id) == [], container.name
        assert [d["_source"]["message"] for d in await documents_of(es_server, shipped.id)] == [
            "shipped"
        ]
        assert [d["_source"]["message"] for d in await documents_of(es_server, near_miss.id)] == [
            "near-miss"
        ]
        assert await asyncio.to_thread(shipper.stop) == 0
    finally:
        # The container goes first: Docker refuses to untag a reference a container uses.
        if by_image is not None:
            with contextlib.suppress(docker.errors.NotFound):
                by_image.remove(force=True)
        docker_client.images.remove(other_tag, noprune=True)


async def test_opt_in_mode_ships_only_labelled_containers(
    es_server: Any, containers: Any, shipper_factory: Any
) -> None:
    shipper = await start_shipper(
        shipper_factory, es_server, {"processing": {"selection": {"mode": "opt_in"}}}
    )
    unlabelled = containers("echo nobody asked")
    opted_in = containers("echo please ship me", labels={"shipper.enable": "true"})
    assert len(await wait_for_documents(es_server, opted_in.id, 1)) == 1
    await asyncio.sleep(1.5)
    assert await documents_of(es_server, unlabelled.id) == []
    assert await asyncio.to_thread(shipper.stop) == 0


async def test_secrets_are_masked_before_they_reach_the_disk_buffer(
    es_server: Any, containers: Any, shipper_factory: Any
) -> None:
    shipper = await start_shipper(shipper_factory, es_server)
    leaky = containers(
        r"""printf '%s\n' 'login user=bob password=hunter2-xyz ok' \
        'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2Vu.abc123' \
        'aws key AKIAIOSFODNN7EXAMPLE used' 'card 4111 1111 1111 1111 charged' \
        'clone https://deploy:url-pass-77@git.example.com/app.git done' \
        '{"user":"bob","password":"json-secret-9"}' 'order 1234567890123456 shipped'""",
        labels={"shipper.json": "true"},
    )
    masked = [
        "login user=bob password=[REDACTED] ok",
        "Authorization: Bearer [REDACTED]",
        "aws key [REDACTED] used",
        "card [REDACTED] charged",
        "clone https://deploy:[REDACTED]@git.example.com/app.git done",
        '{"user":"bob","password":"[REDACTED]"}',
        "order 1234567890123456 shipped",  # not Luhn-valid: not a card, left alone
    ]
    secrets = [
        "hunter2-xyz",
        "c2VjcmV0LXRva2Vu",
        "AKIAIOSFODNN7EXAMPLE",
        "4111 1111 1111 1111",
        "url-pass-77",
        "json-secret-9",
    ]
    docs = await wait_for_documents(es_server, leaky.id, len(masked))
    assert sorted(d["_source"]["message"] for d in docs) == sorted(masked)
    by_message = {d["_source"]["message"]: d["_source"] for d in docs}
    assert by_message['{"user":"bob","password":"[REDACTED]"}']["json"] == {
        "user": "bob",
        "password": "[REDACTED]",
    }
    for message in masked[:-1]:
        assert by_message[message]["log"]["flags"] == ["redacted"], message
    text = repr([d["_source"] for d in docs])
    for secret in secrets:
        assert secret not in text
    # One count per record and rule: the JSON line is one record, masked in its text and
    # in its decoded field.
    for rule, count in {
        "key_value": 2,
        "authorization": 1,
        "aws_access_key": 1,
        "credit_card": 1,
        "url_password": 1,
    }.items():
        assert shipper.metric("shipper_records_redacted_total", {"rule": rule}) == count, rule
    assert shipper.metric("shipper_records_redacted_total") == 6

    # The segment being written is kept while the shipper runs (only sealed, fully
    # acknowledged segments are deleted), so the buffer still holds every entry, as written.
    segments = sorted(Path(shipper.storage, "buffer").glob("*.seg"))
    buffered = b"".join(p.read_bytes() for p in segments)
    assert segments and buffered, "nothing in the buffer to check"
    # One mask in each of the six messages, and one in the JSON line's decoded field.
    assert buffered.count(b"[REDACTED]") == 7
    for message in masked:
        assert orjson.dumps(message) in buffered, message  # the message as the entry has it
    for secret in secrets:
        assert secret.encode() not in buffered, secret
    # Each of those records carries the flag (log.flags above), and the flag count says so.
    assert shipper.metric("shipper_records_flagged_total", {"flag": "redacted"}) == 6
    assert await asyncio.to_thread(shipper.stop) == 0


async def test_kubernetes_labels_and_image_metadata(
    es_server: Any, containers: Any, shipper_factory: Any, docker_client: docker.DockerClient
) -> None:
    shipper = await start_shipper(
        shipper_factory,
        es_server,
        {"processing": {"env_allowlist": ["APP_ENV"], "fields": {"service.environment": "ci"}}},
    )
    pod = containers(
        "echo from a pod",
        labels={
            "io.kubernetes.pod.name": "web-7d9f",
            "io.kubernetes.pod.namespace": "shop",
            "io.kubernetes.container.name": "web",
        },
        environment={"APP_ENV": "staging", "DB_PASSWORD": "never-shipped"},
    )
    image_id = docker_client.images.get(TEST_IMAGE).id
    by_id = containers("echo by image id", image=image_id)
    (doc,) = await wait_for_documents(es_server, pod.id, 1)
    source = doc["_source"]
    assert source["kubernetes"]["pod"]["name"] == "web-7d9f"
    assert source["kubernetes"]["namespace"] == "shop"
    assert source["kubernetes"]["container"]["name"] == "web"
    assert source["container"]["env"] == {"APP_ENV": "staging"}
    assert "never-shipped" not in repr(source)
    assert source["service"]["environment"] == "ci"
    # The image as the container was created with it, and its parts; the test image was
    # imported, not pulled, so it has no registry digest.
    assert source["container"]["image"] == {
        "name": "shipper-test-busybox:latest",
        "tag": ["latest"],
    }
    # Created from the image id: no tag to report, the id is the image's digest.
    (by_id_doc,) = await wait_for_documents(es_server, by_id.id, 1)
    assert by_id_doc["_source"]["container"]["image"] == {
        "name": image_id,
        "hash": {"all": [image_id]},
    }
    assert await asyncio.to_thread(shipper.stop) == 0


async def test_line_longer_than_max_line_bytes_is_truncated_once(
    es_server: Any, containers: Any, shipper_factory: Any
) -> None:
    shipper = await start_shipper(
        shipper_factory, es_server, {"processing": {"max_line_bytes": 50000}}
    )
    long = containers("head -c 200000 /dev/zero | tr '\\0' b; echo; echo short")
    docs = await wait_for_documents(es_server, long.id, 2)
    lengths = sorted((len(d["_source"]["message"]), d["_source"]["log"].get("flags")) for d in docs)
    assert lengths == [(5, None), (50000, ["truncated"])]
    assert shipper.metric("shipper_records_flagged_total", {"flag": "truncated"}) == 1
    assert await asyncio.to_thread(shipper.stop) == 0
