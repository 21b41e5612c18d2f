"""`shipper status` counts the dead-letter file by error type, in the table and in --json."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from shipper.cli import main
from shipper.layout import StorageLayout
from shipper.sinks.elasticsearch.dead_letter import dead_letter_document
from shipper.sinks.elasticsearch.retry import ItemAction, ItemOutcome

OUTCOMES = [
    *[ItemOutcome(ItemAction.DEAD_LETTER, 400, "document_parsing_exception", "failed to parse")]
    * 3,
    *[ItemOutcome(ItemAction.DEAD_LETTER, 400, "mapper_parsing_exception", "conflict")] * 2,
    ItemOutcome(ItemAction.DEAD_LETTER, 413, "request_entity_too_large", "too large"),
]


def seed_dead_letters(storage: Path) -> Path:
    """The file as the sink writes it: one dead-letter document per line (and a torn line,
    as a crash in the middle of an append leaves one)."""
    path = StorageLayout(storage).dead_letter_file
    path.parent.mkdir(parents=True)
    lines = []
    for number, outcome in enumerate(OUTCOMES):
        entry = (
            b'{"create":{"_index":"logs-docker-default","_id":"id-%d"}}\n'
            b'{"message":"line %d"}\n' % (number, number)
        )
        _, document = dead_letter_document(entry, outcome)
        lines.append(orjson.dumps(document) + b"\n")
    path.write_bytes(b"".join(lines) + b'{"@timestamp":"2026-')
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    config = tmp_path / "shipper.yml"
    config.write_text(f"storage:\n  path: {tmp_path / 'storage'}\nmetrics:\n  listen: null\n")
    return config


def test_the_table_shows_dead_letters_by_error_type(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = seed_dead_letters(tmp_path / "storage")
    assert main(["status", "--offline", "--config", str(config_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == (
        "dead letters in the file: 7 (document_parsing_exception: 3, mapper_parsing_exception: "
        f"2, request_entity_too_large: 1, unreadable_line: 1)  [{path}]"
    )


def test_json_counts_dead_letters_by_error_type(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = seed_dead_letters(tmp_path / "storage")
    assert main(["status", "--offline", "--json", "--config", str(config_file)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source"] == "storage"
    assert report["dead_letters"] == {
        "path": str(path),
        "total": 7,
        "by_error_type": {
            "document_parsing_exception": 3,
            "mapper_parsing_exception": 2,
            "request_entity_too_large": 1,
            "unreadable_line": 1,
        },
    }


def test_no_dead_letter_file_counts_zero(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--offline", "--config", str(config_file)]) == 0
    path = StorageLayout(tmp_path / "storage").dead_letter_file
    assert capsys.readouterr().out.splitlines()[-1] == f"dead letters in the file: 0  [{path}]"


def test_the_agents_failure_store_count_is_shown() -> None:
    from shipper.commands.status import render

    report = {
        "source": "agent",
        "storage_path": "/s",
        "dead_letters": {"path": "/s/dl", "total": 0, "since_start": 1},
        "failure_store": {"since_start": 4},
    }
    assert render(report, "http://a").splitlines()[-2:] == [
        "dead letters since the agent started: 1",
        "kept in a failure store (not as log records) since the agent started: 4",
    ]
    del report["failure_store"]  # from the files alone: nothing to say
    assert "failure store" not in render(report, None)
