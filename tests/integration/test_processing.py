"""Processing with real containers: multiline, JSON logs, selection, redaction, metadata."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.integration.helpers import documents_of, wait_for_documents

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
    es_server: Any, containers: Any, shipper_factory: Any
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
    assert await asyncio.to_thread(restarted.stop) == 0


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
    shipper = await start_shipper(
        shipper_factory,
        es_server,
        {
            "processing": {
                "selection": {
                    "exclude": [
                        {"name": "skip-by-name-*"},
                        {"compose_project": "noisy"},
                        {"labels": ["team=secret"]},
                    ]
                }
            }
        },
    )
    suffix = str(int(time.time() * 1000))
    opted_out = containers("echo opted-out", labels={"shipper.enable": "false"})
    by_name = containers("echo by-name", name=f"skip-by-name-{suffix}")
    by_project = containers("echo by-project", labels={"com.docker.compose.project": "noisy"})
    by_label = containers("echo by-label", labels={"team": "secret"})
    shipped = containers("echo shipped", labels={"team": "public"})
    await wait_for_documents(es_server, shipped.id, 1)
    await asyncio.sleep(1.5)
    for container in (opted_out, by_name, by_project, by_label):
        assert await documents_of(es_server, container.id) == []
    assert [d["_source"]["message"] for d in await documents_of(es_server, shipped.id)] == [
        "shipped"
    ]
    assert await asyncio.to_thread(shipper.stop) == 0


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
        '{"user":"bob","password":"json-secret-9"}' 'order 1234567890123456 shipped'""",
        labels={"shipper.json": "true"},
    )
    docs = await wait_for_documents(es_server, leaky.id, 6)
    text = repr([d["_source"] for d in docs])
    for secret in (
        "hunter2-xyz",
        "c2VjcmV0LXRva2Vu",
        "AKIAIOSFODNN7EXAMPLE",
        "4111 1111 1111 1111",
        "json-secret-9",
    ):
        assert secret not in text
    assert "order 1234567890123456 shipped" in text  # not Luhn-valid: not a card, left alone
    assert shipper.metric("shipper_records_redacted_total") >= 5
    buffered = b"".join(
        p.read_bytes() for p in Path(shipper.storage, "buffer").glob("**/*") if p.is_file()
    )
    for secret in (b"hunter2-xyz", b"AKIAIOSFODNN7EXAMPLE", b"json-secret-9"):
        assert secret not in buffered
    assert await asyncio.to_thread(shipper.stop) == 0


async def test_kubernetes_labels_and_image_metadata(
    es_server: Any, containers: Any, shipper_factory: Any
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
    (doc,) = await wait_for_documents(es_server, pod.id, 1)
    source = doc["_source"]
    assert source["kubernetes"]["pod"]["name"] == "web-7d9f"
    assert source["kubernetes"]["namespace"] == "shop"
    assert source["kubernetes"]["container"]["name"] == "web"
    assert source["container"]["env"] == {"APP_ENV": "staging"}
    assert "never-shipped" not in repr(source)
    assert source["service"]["environment"] == "ci"
    assert source["container"]["image"]["name"] == "shipper-test-busybox:latest"
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
    assert await asyncio.to_thread(shipper.stop) == 0
