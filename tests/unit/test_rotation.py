"""The rotation-risk decision: Docker's rotation limits, the backlog estimate, the watch."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from shipper.model import ContainerMeta, Destination, LogRecord
from shipper.sources.rotation import (
    RotationLimits,
    RotationWatch,
    backlog_at_risk,
    estimate_backlog_bytes,
    parse_size,
    rotation_limits,
)

S = 1_000_000_000


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("10m", 10 * 1024**2),
        ("10M", 10 * 1024**2),
        ("512k", 512 * 1024),
        ("512kb", 512 * 1024),
        ("1.5g", int(1.5 * 1024**3)),
        ("2MiB", 2 * 1024**2),
        ("100", 100),
        ("-1", None),
        ("ten", None),
        ("", None),
    ],
)
def test_sizes_are_read_as_docker_reads_them(text: str, size: int | None) -> None:
    assert parse_size(text) == size


def test_json_file_without_max_size_never_rotates() -> None:
    assert rotation_limits("json-file", {}) is None
    assert rotation_limits("json-file", {"max-file": "3"}) is None
    assert rotation_limits("json-file", {"max-size": "-1"}) is None


def test_json_file_limits_default_to_one_file() -> None:
    limits = rotation_limits("json-file", {"max-size": "10m"})
    assert limits is not None
    assert (limits.max_size_bytes, limits.max_files) == (10 * 1024**2, 1)
    limits = rotation_limits("json-file", {"max-size": "50k", "max-file": "3"})
    assert limits is not None and limits.capacity_bytes == 150 * 1024


def test_local_driver_rotates_by_default() -> None:
    limits = rotation_limits("local", {})
    assert limits is not None and limits.capacity_bytes == 5 * 20 * 1024**2
    limits = rotation_limits("local", {"max-size": "1m", "max-file": "2"})
    assert limits is not None and limits.capacity_bytes == 2 * 1024**2


@pytest.mark.parametrize("driver", ["journald", "syslog", "none", "fluentd", ""])
def test_other_drivers_are_not_rotated_by_docker(driver: str) -> None:
    assert rotation_limits(driver, {"max-size": "1m"}) is None


def test_bad_max_file_falls_back_to_the_default() -> None:
    for bad in ("zero", "0", "-2"):
        limits = rotation_limits("json-file", {"max-size": "1m", "max-file": bad})
        assert limits is not None and limits.max_files == 1


def test_the_decision_compares_the_backlog_with_a_share_of_what_docker_keeps() -> None:
    limits = RotationLimits(max_size_bytes=1000, max_files=2, line_overhead_bytes=0)
    assert not backlog_at_risk(999, limits)  # default share: half of 2000
    assert backlog_at_risk(1000, limits)
    assert not backlog_at_risk(1500, limits, ratio=0.8)
    assert backlog_at_risk(1600, limits, ratio=0.8)


def test_backlog_is_the_write_rate_times_how_far_behind_reading_is() -> None:
    assert estimate_backlog_bytes(1000.0, newest_taken_ns=10 * S, now_ns=13 * S) == 3000.0
    # A clock behind the newest line (skew) is no backlog, not a negative one.
    assert estimate_backlog_bytes(1000.0, newest_taken_ns=10 * S, now_ns=9 * S) == 0.0


def _meta(running: bool = True, **opts: str) -> ContainerMeta:
    return ContainerMeta(
        id="c" * 64,
        name="writer",
        image="img",
        log_driver="json-file",
        log_opts=opts,
        running=running,
    )


def _lines(start_s: float, count: int, spacing_s: float, size: int) -> list[LogRecord]:
    return [
        LogRecord("c" * 64, int((start_s + i * spacing_s) * S), "stdout", 0, "x", size=size)
        for i in range(count)
    ]


def test_watch_reports_a_paused_fast_writer_once_per_episode() -> None:
    watch = RotationWatch()
    meta = _meta(**{"max-size": "10k", "max-file": "2"})  # keeps 20 KiB; warns at 10 KiB
    watch.container_changed(meta)
    # 100 lines of 136 bytes (+64 json-file overhead) a second: 20 KB/s.
    watch.put_started(meta.id, now_monotonic=0.0)
    watch.put_finished(meta.id, _lines(100.0, 100, 0.01, 136), now_monotonic=0.1)
    assert watch.write_rate(meta.id) == pytest.approx(20_000, rel=0.01)
    watch.put_started(meta.id, now_monotonic=0.2)  # the buffer is full: this put waits
    newly, now_at_risk = watch.check(now_ns=int(100.2 * S), now_monotonic=0.3)
    assert (newly, now_at_risk) == ([], 0)
    newly, now_at_risk = watch.check(now_ns=int(101.6 * S), now_monotonic=1.6)
    assert now_at_risk == 1 and len(newly) == 1
    risk = newly[0]
    assert risk.container_name == "writer" and risk.capacity_bytes == 20 * 1024
    assert risk.backlog_bytes >= 10 * 1024
    # Still at risk: not reported again.
    assert watch.check(now_ns=int(103 * S), now_monotonic=3.0) == ([], 1)
    # Reading caught up: the episode ends, and a new one is reported again.
    watch.put_finished(meta.id, _lines(103.0, 1, 0.01, 136), now_monotonic=3.1)
    assert watch.check(now_ns=int(103.1 * S), now_monotonic=3.2) == ([], 0)
    watch.put_started(meta.id, now_monotonic=3.3)
    assert len(watch.check(now_ns=int(106 * S), now_monotonic=6.0)[0]) == 1


def test_watch_ignores_idle_stopped_and_unrotated_containers() -> None:
    watch = RotationWatch()
    idle = _meta(**{"max-size": "10k"})
    watch.container_changed(idle)
    watch.put_finished(idle.id, _lines(100.0, 100, 0.01, 200), now_monotonic=0.1)
    # Nothing pending and no read for a while: the container is idle, its lag is no backlog.
    assert watch.check(now_ns=1000 * S, now_monotonic=60.0) == ([], 0)
    # A stopped container writes nothing more.
    watch.container_changed(_meta(running=False, **{"max-size": "10k"}))
    watch.put_started(idle.id, now_monotonic=61.0)
    assert watch.check(now_ns=1000 * S, now_monotonic=62.0) == ([], 0)

    plain = RotationWatch()
    unrotated = _meta()
    plain.container_changed(unrotated)
    plain.put_started(unrotated.id, now_monotonic=0.0)
    plain.put_finished(unrotated.id, _lines(100.0, 100, 0.01, 200), now_monotonic=0.1)
    plain.put_started(unrotated.id, now_monotonic=0.2)
    assert plain.check(now_ns=1000 * S, now_monotonic=1.0) == ([], 0)


def test_forgotten_containers_are_not_checked() -> None:
    watch = RotationWatch()
    meta = _meta(**{"max-size": "1k"})
    watch.container_changed(meta)
    watch.put_finished(meta.id, _lines(100.0, 100, 0.01, 200), now_monotonic=0.1)
    watch.put_started(meta.id, now_monotonic=0.2)
    watch.forget(meta.id)
    assert watch.check(now_ns=200 * S, now_monotonic=1.0) == ([], 0)
    assert watch.write_rate(meta.id) == 0.0


async def test_a_container_held_back_by_its_rate_limit_is_warned_about_as_such(
    tmp_path: Path,
) -> None:
    """pause keeps a fast writer's lines in Docker's log: while the intake waits for the
    quota, the container is busy and falls behind, and the risk names the rate limit."""
    import asyncio
    import time

    from shipper.buffer import DiskBuffer
    from shipper.config import parse_config
    from shipper.sources.intake import BufferIntake

    config = parse_config(
        {"processing": {"rate_limit": {"rules": [{"id": "slow", "lines_per_s": 10, "burst_s": 1}]}}}
    )
    buffer = DiskBuffer.open(tmp_path, max_bytes=1 << 30, segment_max_bytes=1 << 20, fsync="never")
    intake = BufferIntake(
        buffer, lambda meta: Destination("logs-docker-default"), "h", lambda: config.processing
    )
    meta = _meta(**{"max-size": "10k", "max-file": "2"})
    now = time.time()
    # 200 lines of 500 bytes written over 0.2 s a second ago: 20 s of quota.
    records = _lines(now - 1.0, 200, 0.001, 500)
    put = asyncio.create_task(intake.put(meta, records))
    await asyncio.sleep(1.2)
    newly, at_risk = intake.rotation.check(time.time_ns() + 2 * S, time.monotonic())
    assert at_risk == 1 and [risk.rate_limited for risk in newly] == [True]
    assert buffer.records_held < 30  # the quota's burst and a second's worth, not more
    put.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await put
    await buffer.close()
