"""Podman's logs API body and resuming it: what differs from Docker's (see shipper.docker.engine).

The bodies here are shaped exactly as Podman 4.3's service sends them (measured; see
docs/podman.md): one frame per k8s-file line, TTY or not, each part of a split line with its
own time, timestamps in whole seconds (RFC 3339, with the host's offset) or, from Podman 5.8
on, with nine digits.
"""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from shipper.docker.engine import (
    DOCKER,
    PODMAN,
    keeps_no_logs,
    logs_request,
    runtime_of,
    stream_dialect,
)
from shipper.docker.frames import DOCKER_STREAM, PODMAN_STREAM, LogStreamDecoder
from shipper.docker.versions import ApiVersion, EngineVersions
from shipper.lines.timestamps import format_timestamp, parse_timestamp
from shipper.model import ContainerMeta, LogRecord
from shipper.pipeline.encoder import container_document, encode_records
from shipper.sources.checkpoint import Checkpoint, StreamPosition

S = 1_000_000_000
T0 = parse_timestamp(b"2026-12-06T15:42:59Z")

# `GET /version` as Podman 4.3.1 and Debian's Docker 20.10 answer it (abridged, real values).
PODMAN_VERSION = {
    "Platform": {"Name": "linux/amd64/debian-12"},
    "Components": [
        {"Name": "Podman Engine", "Version": "4.3.1", "Details": {"APIVersion": "4.3.1"}},
        {"Name": "Conmon", "Version": "conmon version 2.1.6, commit: unknown"},
        {"Name": "OCI Runtime (runc)", "Version": "runc version 1.1.5+ds1"},
    ],
    "Version": "4.3.1",
    "ApiVersion": "1.41",
    "MinAPIVersion": "1.24",
}
DOCKER_VERSION = {
    "Platform": {"Name": ""},
    "Components": [
        {"Name": "Engine", "Version": "20.10.24+dfsg1", "Details": {"ApiVersion": "1.41"}},
        {"Name": "containerd", "Version": "1.6.20~ds1"},
        {"Name": "runc", "Version": "1.1.5+ds1"},
    ],
    "Version": "20.10.24+dfsg1",
    "ApiVersion": "1.41",
    "MinAPIVersion": "1.12",
}


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def podman_message(ts_ns: int, content: bytes, stream: int = 1, *, nanos: bool = False) -> bytes:
    """One frame as Podman sends it: whole seconds up to 5.7, nine digits from 5.8."""
    stamp = format_timestamp(ts_ns)
    if not nanos:
        assert ts_ns % S == 0
        stamp = stamp[:19] + "Z"
    return frame(stream, stamp.encode() + b" " + content)


def decode(body: bytes, *, tty: bool = False) -> tuple[list[LogRecord], list[tuple[int, int]]]:
    decoder = LogStreamDecoder("c1", tty=tty, dialect=PODMAN_STREAM)
    records = decoder.feed(body) + decoder.finish()
    return records, decoder.take_spans()


def summary(records: list[LogRecord]) -> list[tuple[int, str, int, str]]:
    return [(r.timestamp_ns, r.stream, r.seq, r.message) for r in records]


# ------------------------------------------------------------------------- engine detection


def test_the_engine_is_told_by_its_version_components() -> None:
    podman = EngineVersions.from_version(PODMAN_VERSION)
    assert (podman.runtime, podman.engine, podman.newest) == (PODMAN, "4.3.1", ApiVersion(1, 41))
    assert podman.describe() == "Podman 4.3.1 (API 1.24 to 1.41)"
    docker = EngineVersions.from_version(DOCKER_VERSION)
    assert (docker.runtime, docker.engine) == (DOCKER, "20.10.24+dfsg1")
    assert docker.describe() == "Docker Engine 20.10.24+dfsg1 (API 1.12 to 1.41)"
    assert runtime_of({}) == DOCKER  # an engine that says nothing of itself: Docker's API


def test_podman_logs_are_asked_of_its_own_endpoint_with_an_exact_inclusive_since() -> None:
    since = T0 + 517053725
    request = logs_request(PODMAN, "abc", since_ns=since, follow=True)
    assert request.path == "/v4.0.0/libpod/containers/abc/logs"
    assert not request.versioned
    # Podman's since is exclusive: one nanosecond earlier gives the lines at `since` too.
    assert request.params["since"] == "2026-12-06T15:42:59.517053724Z"
    assert parse_timestamp(request.params["since"].encode()) == since - 1
    assert request.params["follow"] == "1" and request.params["timestamps"] == "1"
    assert "since" not in logs_request(PODMAN, "abc", since_ns=0, follow=False).params


def test_docker_logs_request_is_unchanged() -> None:
    request = logs_request(DOCKER, "abc", since_ns=T0 + 5, follow=False)
    assert request.path == "/containers/abc/logs" and request.versioned
    assert request.params["since"] == f"{T0 // S}.000000005"
    assert stream_dialect(DOCKER) is DOCKER_STREAM and stream_dialect(PODMAN) is PODMAN_STREAM


def test_a_driver_that_keeps_no_logs_is_told_from_a_passing_failure() -> None:
    # Podman 4.3's answer for `--log-driver none` (and passthrough), measured.
    podman = (
        '{"cause":"this container is not logging output","message":"failed to obtain logs '
        "for Container '5b8a': this container is using the 'none' log driver, cannot read "
        'logs: this container is not logging output","response":500}'
    )
    assert keeps_no_logs(500, podman)
    assert keeps_no_logs(501, '{"message":"configured logging driver does not support reading"}')
    assert not keeps_no_logs(500, '{"message":"runtime error: something else"}')


# ------------------------------------------------------------------------------- decoding


def test_parts_stamped_at_different_times_are_one_line_with_the_first_parts_time() -> None:
    # conmon reads a long line in 8 KiB chunks, and "abc" + 1.5 s later "def\n" arrive as two
    # messages of different seconds: each is one line, as `podman logs` shows it.
    body = (
        podman_message(T0, b"x" * 8192)
        + podman_message(T0, b"x" * 8192)
        + podman_message(T0, b"x" * 3616)
        + podman_message(T0, b"\n")
        + podman_message(T0, b"abc")
        + podman_message(T0 + S, b"err\n", 2)
        + podman_message(T0 + S, b"def\n")
        + podman_message(T0 + S, b"tail")
    )
    records, spans = decode(body)
    assert summary(records) == [
        (T0, "stdout", 0, "x" * 20000),
        (T0, "stdout", 1, "abcdef"),
        (T0 + S, "stderr", 0, "err"),
        (T0 + S, "stdout", 0, "tail"),  # the stream ended inside it: still a line
    ]
    assert spans == [(T0, T0 + S)]
    # Docker's rule would have cut "abc" off "def": the dialect is what differs.
    docker = LogStreamDecoder("c1", tty=False, dialect=DOCKER_STREAM)
    messages = [r.message for r in docker.feed(body) + docker.finish()]
    assert "abc" in messages and "def" in messages


def test_framed_tty_lines_lose_the_terminals_carriage_return_on_every_path() -> None:
    # A nine-digit UTC stamp (Podman 5.8) has Docker's exact form, which the multiplexed
    # fast paths take: they must not keep the "\r" of a TTY line.
    body = (
        podman_message(T0 + 123456789, b"tty1\r\n", nanos=True)
        + podman_message(T0 + 123456789, b"ttyp", nanos=True)
        + podman_message(T0 + S, b"q\r\n", nanos=True)
        + podman_message(T0 + S + 7, b"y" * 4096, nanos=True)
        + podman_message(T0 + S + 9, b"yy\r\n", nanos=True)
    )
    records, spans = decode(body, tty=True)
    assert summary(records) == [
        (T0 + 123456789, "stdout", 0, "tty1"),
        (T0 + 123456789, "stdout", 1, "ttypq"),
        (T0 + S + 7, "stdout", 0, "y" * 4098),
    ]
    assert spans == [(T0 + 123456789, T0 + S), (T0 + S + 7, T0 + S + 9)]


def test_timestamps_with_the_hosts_offset_are_the_same_instant() -> None:
    # Podman formats in the service's local zone: 16:42:59+01:00 is 15:42:59Z.
    body = frame(1, b"2026-12-06T16:42:59+01:00 hello\n")
    records, _ = decode(body)
    assert summary(records) == [(T0, "stdout", 0, "hello")]


# -------------------------------------------------------------------------------- resuming


def test_a_resume_never_starts_inside_a_line_whose_parts_span_the_since() -> None:
    position = StreamPosition(slack_ns=S)
    position.note_spans([(T0, T0 + 3 * S)])
    position.take([T0, T0 + 3 * S, T0 + 3 * S])  # the long line, then two lines at +3 s
    # newest - slack = T0 + 2 s would read the long line's last part alone.
    assert position.checkpoint() == Checkpoint(T0, 3)
    # Once past the line's last part, the since moves on.
    position.take([T0 + 5 * S])
    assert position.checkpoint() == Checkpoint(T0 + 4 * S, 1)


def test_moving_back_stops_at_the_start_of_the_read() -> None:
    start = Checkpoint(T0 + 2 * S, 0)
    position = StreamPosition(start, slack_ns=S)
    # A line the start cuts (a checkpoint written without this rule): lines before the start
    # were never counted here, so the since goes back no further than the start.
    position.note_spans([(T0, T0 + 4 * S)])
    position.take([T0 + 4 * S, T0 + 5 * S])
    assert position.checkpoint() == Checkpoint(T0 + 2 * S, 2)


# One message of the container: (stream, seconds after the previous message, text, ends line).
_MESSAGE = st.tuples(
    st.sampled_from([1, 2]),
    st.sampled_from([0, 0, 0, 1, 2]),
    st.binary(min_size=0, max_size=6).filter(lambda b: b"\n" not in b),
    st.booleans(),
)


@given(messages=st.lists(_MESSAGE, max_size=30), cut=st.integers(min_value=0, max_value=30))
def test_a_resume_from_any_checkpoint_gives_exactly_the_lines_not_taken(
    messages: list[tuple[int, int, bytes, bool]], cut: int
) -> None:
    """Podman applies `since` to every message (part) by its own time. Whatever was taken,
    the resumed read, after skipping `skip` lines, gives exactly the rest: same times, same
    `seq`s, same text (the `_id`s of the lines not yet shipped)."""
    stamped = []
    ts = T0
    for stream, gap_s, text, ends in messages:
        ts += gap_s * S  # conmon writes in the order it stamps: times never go back
        stamped.append((ts, podman_message(ts, text + (b"\n" if ends else b""), stream)))
    full, spans = decode(b"".join(body for _, body in stamped))
    cut = min(cut, len(full))
    position = StreamPosition(slack_ns=S)
    position.note_spans(spans)
    position.take([r.timestamp_ns for r in full[:cut]])
    checkpoint = position.checkpoint()
    resumed, _ = decode(b"".join(body for t, body in stamped if t >= checkpoint.since_ns))
    assert summary(resumed[checkpoint.skip :]) == summary(full[cut:])


# ---------------------------------------------------------------------------------- records


def test_podman_containers_are_marked_and_podman_compose_labels_fill_the_compose_fields() -> None:
    meta = ContainerMeta(
        id="f" * 64,
        name="web_1",
        image="localhost/shop/web:1.4",
        labels={"io.podman.compose.project": "shop", "io.podman.compose.service": "web"},
        runtime=PODMAN,
    )
    assert (meta.compose_project, meta.compose_service) == ("shop", "web")
    doc = container_document(meta, index="logs-docker-default", host_name="h")
    record = LogRecord(meta.id, T0, "stdout", 0, "hello")
    entry = encode_records([record], doc)[0]
    assert b'"runtime":"podman"' in entry
    assert b'"docker":{"compose":{"project":"shop","service":"web"}}' in entry
    # Docker's labels win where both are set (podman-compose writes both, with one value).
    both = ContainerMeta(
        id="e" * 64,
        name="x",
        image="i",
        labels={"com.docker.compose.project": "a", "io.podman.compose.project": "b"},
    )
    assert both.compose_project == "a" and both.runtime == DOCKER
