"""Where containers without a position begin: decided once per storage, kept ever after."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipper.layout import StorageLayout
from shipper.sources.checkpoint import Checkpoint, CheckpointBook, CheckpointStore
from shipper.sources.first_start import (
    FirstStart,
    FirstStartFileError,
    FirstStartStore,
    first_start,
    start_ns_for,
)

S = 1_000_000_000
NOW = 1_800_000_000 * S


def test_the_setting_becomes_one_point_in_time() -> None:
    assert start_ns_for("beginning", NOW) is None
    assert start_ns_for("now", NOW) == NOW
    assert start_ns_for("10m", NOW) == NOW - 600 * S
    assert start_ns_for("1h30m", NOW) == NOW - 5400 * S


def test_the_first_start_decides_and_writes_it_down_before_anything_else(tmp_path: Path) -> None:
    layout = StorageLayout(tmp_path)
    decision, first = first_start(layout, "10m", "--start-at", NOW)
    assert first and decision == FirstStart(NOW - 600 * S, "10m", "--start-at", NOW, True)
    assert FirstStartStore(layout).load() == decision
    assert not layout.buffer_dir.exists() and not layout.checkpoints_file.exists()


def test_a_restart_never_decides_again(tmp_path: Path) -> None:
    """As after kill -9 a minute into the first start: positions saved for some containers,
    a buffer, and another setting by now. The decision stands."""
    layout = StorageLayout(tmp_path)
    decided, _ = first_start(layout, "now", "the config file", NOW)
    layout.buffer_dir.mkdir()
    CheckpointStore(tmp_path).save({"a": Checkpoint(NOW + 5 * S, 2)})
    again, first = first_start(layout, "beginning", "the default", NOW + 60 * S)
    assert not first and again == decided


def test_containers_without_a_position_begin_at_the_decided_time(tmp_path: Path) -> None:
    decision = FirstStart(NOW, "now", "--start-at", NOW, True)
    saved = {"a": Checkpoint(NOW + 5 * S, 2)}
    book = CheckpointBook(CheckpointStore(tmp_path), saved, decision.start_without_position())
    assert book.start_of("a") == Checkpoint(NOW + 5 * S, 2)
    # Any other container, seen at the first start or started later: from the decided time
    # (a container started later has no line before it: that is its first line).
    assert book.start_of("b") == Checkpoint(NOW, 0)
    beginning = CheckpointBook(CheckpointStore(tmp_path), saved, None)
    assert beginning.start_of("b") is None


def test_a_storage_used_before_keeps_its_positions_and_reads_the_rest_in_full(
    tmp_path: Path,
) -> None:
    layout = StorageLayout(tmp_path)
    CheckpointStore(tmp_path).save({"a": Checkpoint(NOW, 0)})
    decision, first = first_start(layout, "now", "--start-at", NOW)
    assert first and decision.start_ns is None and not decision.storage_was_new
    assert decision.start_without_position() is None
    assert FirstStartStore(layout).load() == decision


def test_a_damaged_record_is_an_error_not_a_new_decision(tmp_path: Path) -> None:
    layout = StorageLayout(tmp_path)
    layout.first_start_file.write_text('{"version": 1, "start_ns": "soon"}')
    with pytest.raises(FirstStartFileError):
        first_start(layout, "now", "--start-at", NOW)
    layout.first_start_file.write_text("{not json")
    with pytest.raises(FirstStartFileError):
        FirstStartStore(layout).load()
