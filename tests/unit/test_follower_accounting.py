"""A follower's lines add up in the accounting across a broken stream, with a multiline event
open when it broke and the other stream's lines sent meanwhile: the held lines are read again
without being counted again, the others are read (and sent) again and counted again."""

from __future__ import annotations

import calendar
import struct
from collections.abc import AsyncGenerator
from pathlib import Path

from shipper.buffer import DiskBuffer
from shipper.config import parse_config
from shipper.docker.api import DockerUnavailable
from shipper.model import ContainerMeta, Destination
from shipper.sources.docker.follower import ContainerFollower, FollowerSettings
from shipper.sources.intake import BufferIntake

CID = "f" * 64
T0 = calendar.timegm((2027, 1, 15, 8, 0, 0)) * 1_000_000_000  # 2027-01-15T08:00:00Z
# (stream, message): stdout events whose continuation lines start with a space, and stderr
# lines between their parts. The stream breaks after the fifth line, "event 1" still open.
LINES = [
    ("stdout", "event 1"),
    ("stdout", " at a"),
    ("stderr", "err 1"),
    ("stdout", " at b"),
    ("stderr", "err 2"),
    ("stdout", " at c"),
    ("stdout", "event 2"),
    ("stderr", "err 3"),
    ("stdout", "event 3"),
]
BREAK_AFTER = 5


def _timestamp(index: int) -> int:
    return T0 + index * 1_000  # a microsecond apart


def _frame(index: int, stream: str, message: str) -> bytes:
    """A multiplexed logs API frame: header (stream, size), Docker timestamp, the line."""
    payload = f"2027-01-15T08:00:00.{_timestamp(index) - T0:09d}Z {message}\n".encode()
    return struct.pack(">BxxxL", 1 if stream == "stdout" else 2, len(payload)) + payload


class _Docker:
    """The logs API of one container: the first follow stream breaks part-way; then the
    container has stopped and a plain read returns the rest of its log."""

    def __init__(self) -> None:
        self.reads = 0

    async def inspect(self, container_id: str) -> ContainerMeta:
        return ContainerMeta(
            CID,
            "web",
            "img",
            labels={"shipper.multiline.pattern": "^\\s"},
            running=self.reads == 0,
            started_at="2027-01-15T07:59:00Z",
        )

    async def logs(
        self, container_id: str, *, since_ns: int = 0, follow: bool = True
    ) -> AsyncGenerator[bytes, None]:
        self.reads += 1
        first = self.reads == 1
        for index, (stream, message) in enumerate(LINES):
            if first and index == BREAK_AFTER:
                raise DockerUnavailable("the stream broke")
            if _timestamp(index) >= since_ns:
                yield _frame(index, stream, message)


async def test_lines_add_up_across_a_broken_stream_with_an_event_open(tmp_path: Path) -> None:
    config = parse_config({})
    buffer = DiskBuffer.open(tmp_path, max_bytes=1 << 30, segment_max_bytes=1 << 20, fsync="never")
    intake = BufferIntake(
        buffer, lambda meta: Destination("logs-docker-default"), "h", lambda: config.processing
    )
    docker = _Docker()
    follower = ContainerFollower(
        CID,
        docker,  # type: ignore[arg-type]
        intake,
        None,
        FollowerSettings(read_mode="api", processing=lambda: config.processing),
    )
    await follower.run()
    counts = intake.counts(CID)
    assert docker.reads == 2
    # When the stream broke, "event 1" (three lines) and "err 2" (each stream's last event
    # waits for the next line) were held, and "err 1" had been sent: "err 1" is read and sent
    # again and counted again, the held lines are read again but counted once.
    assert counts.lines_read == len(LINES) + 1
    assert (counts.joined, counts.held, counts.summaries) == (3, 0, 0)
    events = ["event 1\n at a\n at b\n at c", "event 2", "event 3", "err 1", "err 2", "err 3"]
    assert counts.buffered == len(events) + 1 == buffer.records_held
    assert counts.problems() == []
    await buffer.close()
