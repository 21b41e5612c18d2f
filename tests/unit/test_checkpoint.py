from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipper.sources.checkpoint import (
    Checkpoint,
    CheckpointFileError,
    CheckpointStore,
    StreamPosition,
)

S = 1_000_000_000


def resume(stream: list[int], cp: Checkpoint) -> list[int]:
    """What a resumed reader emits: lines with ts >= since, minus the first `skip` of them."""
    indexes = [i for i, ts in enumerate(stream) if ts >= cp.since_ns]
    return indexes[cp.skip :]


def test_fresh_position_starts_at_the_beginning() -> None:
    assert StreamPosition().checkpoint() == Checkpoint(0, 0)


def test_checkpoint_counts_lines_in_the_slack_window() -> None:
    position = StreamPosition(slack_ns=S)
    position.take([10 * S, 11 * S, 11 * S + 5, 12 * S])
    assert position.checkpoint() == Checkpoint(11 * S, 3)


@given(
    stream=st.lists(st.integers(min_value=1, max_value=50).map(lambda x: x * S // 10), max_size=40),
    cut=st.integers(min_value=0, max_value=40),
    second_cut=st.integers(min_value=0, max_value=40),
)
def test_resume_emits_exactly_the_lines_not_taken(
    stream: list[int], cut: int, second_cut: int
) -> None:
    # Timestamps may go backwards by less than the slack (stdout/stderr stamping jitter).
    stream = [max(ts, (max(stream[:i]) if i else 0) - S // 2) for i, ts in enumerate(stream)]
    cut = min(cut, len(stream))
    position = StreamPosition(slack_ns=S)
    position.take(stream[:cut])
    first = position.checkpoint()
    assert resume(stream, first) == list(range(cut, len(stream)))
    # Resume, re-read (and skip) part of the taken lines, take some more, checkpoint again.
    resumed = StreamPosition(first, slack_ns=S)
    remaining = [stream[i] for i in resume(stream, Checkpoint(first.since_ns, 0))]
    upto = min(second_cut, len(remaining))
    resumed.take(remaining[:upto])
    taken_total = max(cut, len(stream) - len(remaining) + upto)
    assert resume(stream, resumed.checkpoint()) == list(range(taken_total, len(stream)))


def test_store_round_trip_and_atomic_replace(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    assert store.load() == {}
    store.save({"a": Checkpoint(5, 1), "b": Checkpoint(7, 0)})
    assert store.load() == {"a": Checkpoint(5, 1), "b": Checkpoint(7, 0)}
    assert not (tmp_path / "checkpoints.json.tmp").exists()


def test_a_sources_state_is_kept_with_the_position_and_older_readers_ignore_it(
    tmp_path: Path,
) -> None:
    state = {"kind": "cri", "name": "ns/pod/c", "meta": {"labels": {"app": "web"}}}
    store = CheckpointStore(tmp_path)
    store.save({"a": Checkpoint(5, 1, source_state=state), "b": Checkpoint(7, 0)})
    assert store.load() == {"a": Checkpoint(5, 1, source_state=state), "b": Checkpoint(7, 0)}
    raw = orjson.loads((tmp_path / "checkpoints.json").read_bytes())
    assert raw["containers"]["a"] == {"since_ns": 5, "skip": 1, "source": state}
    assert raw["containers"]["b"] == {"since_ns": 7, "skip": 0}
    # What the previous version read of an entry: the position, whatever else is there.
    entry = raw["containers"]["a"]
    assert Checkpoint(int(entry["since_ns"]), int(entry["skip"])) == Checkpoint(5, 1)


def test_a_position_counts_from_its_start_without_the_sources_state() -> None:
    position = StreamPosition(Checkpoint(10 * S, 2, source_state={"kind": "cri"}), slack_ns=S)
    assert position.checkpoint() == Checkpoint(10 * S, 2)
    position.take([10 * S, 10 * S, 10 * S + 1])
    assert position.checkpoint() == Checkpoint(10 * S, 3)


def test_corrupt_store_is_reported_not_crashing(tmp_path: Path) -> None:
    (tmp_path / "checkpoints.json").write_bytes(b'{"version": 1, "containers": {')
    with pytest.raises(CheckpointFileError):
        CheckpointStore(tmp_path).load()


def test_a_full_disk_keeps_the_previous_checkpoints_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    from shipper.errors import DiskFullError

    store = CheckpointStore(tmp_path)
    store.save({"a": Checkpoint(5 * S, 2)})
    before = (tmp_path / "checkpoints.json").read_bytes()
    real_write = os.write
    calls = {"n": 0}

    def write_then_fail(fd: int, data: object) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data)[:7])  # type: ignore[call-overload]  # a short write
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", write_then_fail)
    with pytest.raises(DiskFullError):
        store.save({"a": Checkpoint(9 * S, 0), "b": Checkpoint(1, 1)})
    monkeypatch.undo()
    assert (tmp_path / "checkpoints.json").read_bytes() == before
    assert not (tmp_path / "checkpoints.json.tmp").exists()
    assert store.load() == {"a": Checkpoint(5 * S, 2)}
    store.save({"a": Checkpoint(9 * S, 0)})  # space is back
    assert store.load() == {"a": Checkpoint(9 * S, 0)}


def test_a_limiter_state_is_saved_with_the_position_exactly(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    state = (1, 1_800_000_000_123_456_789, 0.30000000000000004, 12.5, 5, 6, 7, 8, 9, 10)
    store.save({"a": Checkpoint(5, 1, state), "b": Checkpoint(7, 0)})
    assert store.load() == {"a": Checkpoint(5, 1, state), "b": Checkpoint(7, 0)}
    raw = (tmp_path / "checkpoints.json").read_bytes()
    assert b'"b":{"since_ns":7,"skip":0}' in raw  # no key when there is no state


def test_the_book_saves_each_containers_limiter_state_as_of_its_position(tmp_path: Path) -> None:
    from shipper.sources.checkpoint import CheckpointBook

    class _Follower:
        container_id = "a"

        def checkpoint(self) -> Checkpoint:
            return Checkpoint(9, 2)

    saved = {"a": Checkpoint(5, 0, (1, 2)), "gone": Checkpoint(3, 0, (3, 4))}
    book = CheckpointBook(CheckpointStore(tmp_path), saved)
    assert book.saved_limiter_states() == {"a": (1, 2), "gone": (3, 4)}
    states = {"a": (7, 7)}
    book.keep_limiter_states(states.get)
    follower = _Follower()
    book.follower_started(follower)
    assert book.snapshot() == {"a": Checkpoint(9, 2, (7, 7)), "gone": Checkpoint(3, 0, (3, 4))}
    states["a"] = (8, 8)
    book.follower_ended(follower)
    assert book.snapshot()["a"] == Checkpoint(9, 2, (8, 8))
