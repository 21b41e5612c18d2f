"""The facts of CRI log files that the CRI log source relies on, read from files a real
containerd wrote (tests/support/containerd.py; summarised in docs/cri.md).

Each line is `<timestamp> <stream> <tag> <message>\\n`: the timestamp is Go's RFC3339Nano in
containerd's local zone, the stream `stdout` or `stderr`, the tag `F` (the message ends a
line) or `P` (a part: more follows, or the container ended without a newline). The tests
assert exact bytes, so they fail as soon as a runtime writes otherwise.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import grpc
import pytest

from tests.support import cri_testbed_pb2 as testbed
from tests.support.containerd import Pod, PrivateContainerd, containerd_missing

pytestmark = pytest.mark.containerd

PART_BYTES = 16384  # containerd's max_container_log_line_size (its default)
# Go's RFC3339Nano: the fraction's trailing zeros are trimmed, and so is a zero fraction.
TIMESTAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?(Z|[+-]\d\d:\d\d)")


@pytest.fixture(scope="module")
def pod(private_containerd: PrivateContainerd) -> Iterator[Pod]:
    """One pod for the module's containers (a pod per test would only cost time)."""
    pod = private_containerd.run_pod("log-facts", namespace="facts")
    yield pod
    private_containerd.remove_pod(pod.id)


def entries(path: Path) -> list[tuple[bytes, bytes, bytes, bytes]]:
    """The file's lines as (timestamp, stream, tag, message), checking the line grammar."""
    return entries_of(None, path)


def entries_of(data: bytes | None, path: Path) -> list[tuple[bytes, bytes, bytes, bytes]]:
    data = path.read_bytes() if data is None else data
    assert data.endswith(b"\n"), "every line the runtime writes ends with a newline"
    found = []
    for line in data[:-1].split(b"\n"):
        timestamp, stream, tag, message = line.split(b" ", 3)
        assert TIMESTAMP.fullmatch(timestamp), timestamp
        assert stream in (b"stdout", b"stderr"), line
        assert tag in (b"P", b"F"), line
        found.append((timestamp, stream, tag, message))
    return found


def run(cri: PrivateContainerd, pod: Pod, name: str, script: str) -> list[tuple[bytes, ...]]:
    """Runs `sh -c script` to its end; the (stream, tag, message) of each line it logged."""
    container = cri.create_container(pod, name, ["sh", "-c", script])
    cri.wait_exited(container)
    return [entry[1:] for entry in entries(container.log_path)]


def of_stream(lines: list[tuple[bytes, ...]], stream: bytes) -> list[tuple[bytes, ...]]:
    # stdout and stderr are copied by two goroutines into one file: each stream's lines
    # keep their order, but how the two interleave is not defined.
    return [line[1:] for line in lines if line[0] == stream]


def test_line_grammar_streams_and_timestamps(
    private_containerd: PrivateContainerd, pod: Pod
) -> None:
    started_ns = time.time_ns()
    container = private_containerd.create_container(
        pod,
        "grammar",
        ["sh", "-c", "i=0; while [ $i -lt 300 ]; do echo out $i; i=$((i+1)); done; echo e >&2"],
    )
    private_containerd.wait_exited(container)
    ended_ns = time.time_ns()
    found = entries(container.log_path)
    assert [(s, t, m) for _, s, t, m in found if s == b"stdout"] == [
        (b"stdout", b"F", b"out %d" % i) for i in range(300)
    ]
    assert [(s, t, m) for _, s, t, m in found if s == b"stderr"] == [(b"stderr", b"F", b"e")]
    # The zone is containerd's local one; the test bed runs it with TZ=UTC: "Z".
    stamps = [timestamp for timestamp, stream, _, _ in found if stream == b"stdout"]
    assert all(stamp.endswith(b"Z") for stamp in stamps)
    # Trailing zeros are trimmed, so the width varies: among 300 nanosecond fractions, some
    # end in 0 (a chance of 1 in 10 each) and are written shorter.
    fractions = [stamp[20:-1] for stamp in stamps]
    assert not any(fraction.endswith(b"0") for fraction in fractions)
    assert {len(fraction) for fraction in fractions} - {9}, "no trimmed fraction in 300"
    ns = [to_ns(stamp) for stamp in stamps]
    assert ns == sorted(ns), "one stream's timestamps follow its file order"
    assert started_ns <= ns[0] and ns[-1] <= ended_ns


def test_offset_follows_containerd_time_zone() -> None:
    """The timestamp is local time with its offset (Go's time.Now()), so a runtime not
    running in UTC writes e.g. +05:30: the parser must normalise to UTC."""
    reason = containerd_missing()
    if reason is not None:
        pytest.skip(reason)
    daemon = PrivateContainerd(
        Path(tempfile.mkdtemp(prefix="shipper-ctrd-", dir="/tmp")), env={"TZ": "Asia/Kolkata"}
    )
    try:
        daemon.start()
        daemon.import_image()
        pod = daemon.run_pod("zoned")
        before_ns = time.time_ns()
        container = daemon.create_container(pod, "main", ["echo", "zoned"])
        daemon.wait_exited(container)
        after_ns = time.time_ns()
        [(timestamp, stream, tag, message)] = entries(container.log_path)
    finally:
        daemon.teardown()
    assert (stream, tag, message) == (b"stdout", b"F", b"zoned")
    assert timestamp.endswith(b"+05:30")
    assert before_ns <= to_ns(timestamp) <= after_ns


def test_long_lines_are_split_into_parts_of_16384_bytes(
    private_containerd: PrivateContainerd, pod: Pod
) -> None:
    # Each length is written as one line of 'a's (then one of 'b's, to see where it ends).
    script = "; ".join(
        f"head -c {n} /dev/zero | tr '\\0' a; echo; echo b"
        for n in (PART_BYTES - 1, PART_BYTES, PART_BYTES + 1, 2 * PART_BYTES, 40000)
    )
    container = private_containerd.create_container(pod, "long", ["sh", "-c", script])
    private_containerd.wait_exited(container)
    found = entries(container.log_path)
    a = b"a"
    assert [(tag, message) for _, _, tag, message in found] == [
        # Up to 16384 bytes: one F line; "longer than" splits, exactly 16384 does not.
        (b"F", a * (PART_BYTES - 1)),
        (b"F", b"b"),
        (b"F", a * PART_BYTES),
        (b"F", b"b"),
        (b"P", a * PART_BYTES),
        (b"F", a),
        (b"F", b"b"),
        # 32768: two parts, the second one F (no empty F after it).
        (b"P", a * PART_BYTES),
        (b"F", a * PART_BYTES),
        (b"F", b"b"),
        (b"P", a * PART_BYTES),
        (b"P", a * PART_BYTES),
        (b"F", a * (40000 - 2 * PART_BYTES)),
        (b"F", b"b"),
    ]
    # Each part carries its own timestamp, taken when it was written.
    parts = [to_ns(timestamp) for timestamp, _, _, message in found[-4:-1]]
    assert parts == sorted(parts) and len(set(found[i][0] for i in (-4, -3, -2))) == 3


def test_carriage_returns_empty_lines_and_bytes(
    private_containerd: PrivateContainerd, pod: Pod
) -> None:
    lines = run(
        private_containerd,
        pod,
        "bytes",
        # CRLF; an empty line; a bare CRLF; CR inside; two CRs; tabs and trailing blanks;
        # invalid UTF-8 and a NUL; a CRLF whose CR is byte 16384 of the line.
        "printf 'crlf\\r\\n'; echo; printf '\\r\\n'; printf 'x\\ry\\n'; printf 'z\\r\\r\\n';"
        " printf 'a\\tb  \\n'; printf '\\303\\251\\377\\000z\\n';"
        " head -c 16383 /dev/zero | tr '\\0' c; printf '\\r\\n'",
    )
    assert lines == [
        (b"stdout", b"F", b"crlf"),  # the CR of a line's CRLF is dropped
        (b"stdout", b"F", b""),  # an empty line: "<ts> stdout F " (a trailing space)
        (b"stdout", b"F", b""),
        (b"stdout", b"F", b"x\ry"),  # any other CR stays
        (b"stdout", b"F", b"z\r"),  # only one CR is dropped
        (b"stdout", b"F", b"a\tb  "),
        (b"stdout", b"F", b"\xc3\xa9\xff\x00z"),  # bytes as written, no decoding
        (b"stdout", b"F", b"c" * (PART_BYTES - 1)),  # CRLF across the 16 KiB read buffer
    ]
    container_log = next(pod.log_directory.glob("bytes/0.log")).read_bytes()
    assert re.search(rb"\n\S+ stdout F \n", container_log), "the empty line's trailing space"


def test_an_unterminated_last_line_is_a_P_line_at_exit(
    private_containerd: PrivateContainerd, pod: Pod
) -> None:
    lines = run(
        private_containerd,
        pod,
        "unterminated",
        "printf 'out1\\nlast out'; printf 'err1\\nlast err\\r' >&2",
    )
    assert of_stream(lines, b"stdout") == [(b"F", b"out1"), (b"P", b"last out")]
    # No newline: nothing is dropped, not even a CR.
    assert of_stream(lines, b"stderr") == [(b"F", b"err1"), (b"P", b"last err\r")]
    # A line is written when its newline arrives, not in pieces as it is printed.
    assert run(
        private_containerd, pod, "slow", "printf 'ab'; sleep 0.2; printf 'cd\\n'; printf ''"
    ) == [(b"stdout", b"F", b"abcd")]
    # A container that writes nothing leaves an empty file.
    container = private_containerd.create_container(pod, "silent", ["true"])
    private_containerd.wait_exited(container)
    assert container.log_path.read_bytes() == b""


def test_layout_and_modes(private_containerd: PrivateContainerd, pod: Pod) -> None:
    container = private_containerd.create_container(pod, "layout", ["echo", "x"])
    private_containerd.wait_exited(container)
    assert pod.log_directory.name == f"facts_log-facts_{pod.uid}"
    assert container.log_path == pod.log_directory / "layout" / "0.log"
    # containerd creates the container's directory and file (kubelet the pod's directory).
    file_stat = os.stat(container.log_path)
    assert (oct(file_stat.st_mode), file_stat.st_uid, file_stat.st_gid) == ("0o100640", 0, 0)
    assert oct(os.stat(container.log_path.parent).st_mode) == "0o40755"


async def test_rotation_continues_in_a_new_file_without_loss_or_repeat(
    private_containerd: PrivateContainerd, pod: Pod, tmp_path: Path
) -> None:
    """Kubelet's rotation under a fast writer, three times: each time the plain rotation
    before is gzipped, 0.log is renamed (keeping its inode) and ReopenContainerLog makes a
    new 0.log. containerd writes the renamed file's last lines after the reopen, then
    closes it (the end a reader can wait for). Read in order, the files hold every line
    once."""
    cri = private_containerd
    control = tmp_path / "control"
    control.mkdir()
    # The writer stops by itself (a SIGKILL could cut its last line short).
    writer = "i=0; until [ -e /control/stop ]; do echo $i; i=$((i+1)); done"
    container = cri.create_container(
        pod, "rotating", ["sh", "-c", writer], mounts={"/control": control}
    )
    rotated = []
    for _ in range(3):
        await asyncio.sleep(0.15)
        inode = os.stat(container.log_path).st_ino
        rotated.append(await asyncio.to_thread(cri.rotate_like_kubelet, container))
        assert os.stat(rotated[-1]).st_ino == inode
        assert os.stat(container.log_path).st_ino != inode
        assert cri.holds_open(container.log_path)
        # Before the next rotation gzips it (kubelet waits 10 s; a test must not race).
        await wait_until(lambda: not cri.holds_open(rotated[-1]), timeout_s=5)
    await asyncio.sleep(0.15)
    (control / "stop").touch()
    await asyncio.to_thread(cri.wait_exited, container)
    assert all(re.fullmatch(r"0\.log\.\d{8}-\d{6}", path.name) for path in rotated)
    assert sorted(path.name for path in container.log_path.parent.iterdir()) == sorted(
        [f"{rotated[0].name}.gz", f"{rotated[1].name}.gz", rotated[2].name, "0.log"]
    )
    found = []
    for path in [*rotated, container.log_path]:
        gz = Path(f"{path}.gz")
        found.append(entries_of(gzip.decompress(gz.read_bytes()) if gz.exists() else None, path))
    assert all(found), "a file without lines: the writer was too slow to test anything"
    # A line may be cut at a switch (see the next test): joined, none is lost or repeated.
    ends = [
        (path.name, lines[:2], lines[-2:])
        for path, lines in zip([*rotated, container.log_path], found, strict=True)
    ]
    numbers = [int(line) for line in joined([entry for lines in found for entry in lines], ends)]
    assert numbers == list(range(len(numbers)))


async def test_a_line_in_progress_at_rotation_is_split_across_the_files(
    private_containerd: PrivateContainerd, pod: Pod, tmp_path: Path
) -> None:
    """containerd copies a stream into the file through a line reader. At
    ReopenContainerLog the old reader is closed, and it writes what it holds of an unfinished
    line as a P line into the *renamed* file (after the new 0.log is open); the rest of the
    line goes to the new 0.log. The parser must join a P at the end of a rotated file with
    the start of the next file, per stream."""
    cri = private_containerd
    control = tmp_path / "control"
    control.mkdir()
    wait_for = "until [ -e /control/{0} ]; do usleep 10000; done"
    script = "; ".join(
        [
            "printf 'before\\nhead'",
            wait_for.format("go"),
            "printf 'tail\\n'",
            "printf 'err\\n' >&2",
            wait_for.format("end"),
        ]
    )
    container = cri.create_container(
        pod, "split", ["sh", "-c", script], mounts={"/control": control}
    )
    await wait_until(lambda: container.log_path.read_bytes().endswith(b" stdout F before\n"))
    rotated = await asyncio.to_thread(cri.rotate, container)
    (control / "go").touch()
    await wait_until(lambda: len(container.log_path.read_bytes().splitlines()) == 2)
    (control / "end").touch()
    await asyncio.to_thread(cri.wait_exited, container)
    assert [entry[1:] for entry in entries(rotated)] == [
        (b"stdout", b"F", b"before"),
        (b"stdout", b"P", b"head"),
    ]
    new_lines = [entry[1:] for entry in entries(container.log_path)]
    assert sorted(new_lines) == [(b"stderr", b"F", b"err"), (b"stdout", b"F", b"tail")]
    # Kubelet rotates running containers only; containerd refuses to reopen for others.
    with pytest.raises(grpc.RpcError) as refused:
        await asyncio.to_thread(
            cri.call,
            "RuntimeService/ReopenContainerLog",
            testbed.ReopenContainerLogRequest(container_id=container.id),
            testbed.ReopenContainerLogResponse,
        )
    assert refused.value.code() == grpc.StatusCode.UNKNOWN
    assert refused.value.details() == "container is not running"


def test_a_restart_writes_the_next_attempt_file(
    private_containerd: PrivateContainerd, pod: Pod
) -> None:
    cri = private_containerd
    first = cri.create_container(pod, "restarting", ["sh", "-c", "echo run; exit 3"])
    assert cri.wait_exited(first).exit_code == 3
    second = cri.restart(first)
    cri.wait_exited(second)
    assert second.log_path == first.log_path.with_name("1.log")
    assert [entry[1:] for entry in entries(first.log_path)] == [(b"stdout", b"F", b"run")]
    assert [entry[1:] for entry in entries(second.log_path)] == [(b"stdout", b"F", b"run")]
    assert sorted(p.name for p in first.log_path.parent.iterdir()) == ["0.log", "1.log"]


def joined(found: list[tuple[bytes, bytes, bytes, bytes]], files: object = None) -> list[bytes]:
    """One stream's lines with P parts joined to what follows (the test's own reading);
    `files`: what to show if a line is left unfinished."""
    lines, pending = [], b""
    for _, _, tag, message in found:
        pending += message
        if tag == b"F":
            lines.append(pending)
            pending = b""
    assert pending == b"", f"an unfinished line at the end; the files' ends: {files}"
    return lines


async def wait_until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def to_ns(timestamp: bytes) -> int:
    """RFC3339Nano → nanoseconds since the epoch (a test's own reading, for comparisons)."""
    text = timestamp.decode()
    match = re.fullmatch(r"(.{19})(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    assert match, text
    whole, fraction, zone = match.groups()
    seconds = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone)).timestamp()
    return int(seconds) * 1_000_000_000 + int((fraction or "").ljust(9, "0"))
