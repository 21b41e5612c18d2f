"""The C hot path against the Python code it stands in for: the same records, the same bytes.

Each test feeds the same random input to the native path and to the pure-Python path (the
module globals that hold the C module set to None) and asserts identical results: records,
counters and decoder state, bulk entries, redaction. The inputs mix the common form, which
the C code takes, with everything it must hand back to Python (partials, odd timestamps,
invalid UTF-8, escapes, lone surrogates, attrs, non-plain records, tricky Unicode).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipper import native as native_module
from shipper.buffer.format import JoinedEntries
from shipper.config import RedactionConfig
from shipper.cri import parser as cri_parser
from shipper.cri.parser import CriDecoder
from shipper.docker import frames, jsonfile
from shipper.docker.frames import LogStreamDecoder
from shipper.docker.jsonfile import JsonFileDecoder
from shipper.lines.timestamps import TimestampError, format_timestamp, parse_timestamp
from shipper.model import ContainerMeta, LogRecord
from shipper.pipeline import encoder, redact
from shipper.pipeline.encoder import container_document
from shipper.pipeline.redact import Redactor, _presets_prefilter
from shipper.pipeline.stats import ProcessorStats
from shipper.sources import batch_facts as batch_facts_module
from shipper.sources.batch_facts import python_batch_facts

pytestmark = pytest.mark.skipif(
    not native_module.ACTIVE, reason="the C hot path is not built (or SHIPPER_NATIVE=0)"
)

CID = "3f" * 32
BASE_S = 1_795_000_000

# Every name shipper/native.py's docstring lists as bound to C or Python at import, with its
# pure-Python implementation.
_PYTHON_IMPLEMENTATIONS: list[tuple[Any, str, Any]] = [
    (frames, "_scan_frames", frames._scan_no_frames),
    (jsonfile, "_scan_jsonfile", jsonfile._scan_no_lines),
    (cri_parser, "_scan_cri", cri_parser._scan_no_lines),
    (encoder, "encode_records", encoder.python_encode_records),
    (encoder, "encode_joined", encoder.python_encode_joined),
    (redact._BatchPrefilter, "candidates", redact._BatchPrefilter.python_candidates),
    (batch_facts_module, "batch_facts", batch_facts_module._python_batch_facts_or_none),
]


@contextlib.contextmanager
def pure_python() -> Iterator[None]:
    saved = [getattr(owner, name) for owner, name, _ in _PYTHON_IMPLEMENTATIONS]
    for owner, name, python in _PYTHON_IMPLEMENTATIONS:
        setattr(owner, name, python)
    try:
        yield
    finally:
        for (owner, name, _), value in zip(_PYTHON_IMPLEMENTATIONS, saved, strict=True):
            setattr(owner, name, value)


def test_every_binding_is_c_backed_here_and_switched_by_pure_python() -> None:
    for owner, name, python in _PYTHON_IMPLEMENTATIONS:
        assert getattr(owner, name) is not python, name
    with pure_python():
        for owner, name, python in _PYTHON_IMPLEMENTATIONS:
            assert getattr(owner, name) is python, name


def _state(decoder: LogStreamDecoder | CriDecoder) -> tuple[Any, ...]:
    if isinstance(decoder, CriDecoder):
        lines = decoder._assembler
        own: tuple[Any, ...] = (decoder.invalid_lines, set(decoder._dropping), lines.spans)
    else:
        lines = decoder._lines
        own = (decoder.invalid_timestamps, getattr(decoder, "invalid_lines", None))
    return (
        list(lines.seq.runs),
        *own,
        {k: (v.timestamp_ns, v.last_ns, v.parts, v.kept, v.seen) for k, v in lines._held.items()},
        [getattr(item, "record", item) for item in lines._queue],
        decoder._pending,
    )


def _run(make: Any, data: bytes, cuts: list[int]) -> tuple[list[LogRecord], tuple[Any, ...]]:
    decoder = make()
    out: list[LogRecord] = []
    previous = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        out += decoder.feed(data[previous:cut])
        previous = max(previous, cut)
    state = _state(decoder)
    out += decoder.finish()
    return out, state


def _both_paths(make: Any, data: bytes, cuts: list[int]) -> list[LogRecord]:
    native_result = _run(make, data, cuts)
    with pure_python():
        python_result = _run(make, data, cuts)
    assert native_result == python_result
    for got, want in zip(native_result[0], python_result[0], strict=True):
        assert type(got) is type(want) is LogRecord
    return native_result[0]


# ---- text that exercises escapes, UTF-8 lengths and the characters the C code treats apart

_tricky = st.sampled_from(
    ["\n", "\r", "\t", '"', "\\", "/", "\x00", "\x1f", "\x7f", "é", "€", "😀", "\u2028",
     "İ", "\u212a", "٣", "AKIA", "pass", "KEY", "://", "4111 1111", "12345678", "\ufffd"]
)  # fmt: skip
_text = st.lists(st.one_of(st.text(max_size=8), _tricky), max_size=12).map("".join)


def _times(draw: Any) -> str:
    second = BASE_S + draw(st.integers(0, 3))
    prefix = format_timestamp(second * 1_000_000_000)[:19]
    kind = draw(st.integers(0, 9))
    if kind <= 4:  # json-file's own form: trailing zeros trimmed
        fraction = str(draw(st.integers(0, 999_999_999))).rjust(9, "0").rstrip("0")
        return f"{prefix}.{fraction}Z" if fraction else f"{prefix}Z"
    return draw(
        st.sampled_from(
            [
                f"{prefix}.123456789Z",
                f"{prefix}Z",
                f"{prefix}.1234567891Z",
                f"{prefix}.5+01:00",
                f"{prefix}-02:00",
                "1969-12-31T23:59:59.5Z",
                "2026-02-30T00:00:00.1Z",
                "2026-12-31T23:59:60.1Z",
                "not a time",
                f"{prefix}.12a4Z",
            ]
        )
    )


@st.composite
def jsonfile_lines(draw: Any) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.integers(0, 19))
        log = draw(_text)
        if draw(st.integers(0, 4)):
            log += "\n"  # complete; else a partial (or a stopped container's last piece)
        stream = draw(st.sampled_from(["stdout", "stdout", "stderr", "stdin"]))
        entry: dict[str, Any] = {"log": log, "stream": stream, "time": _times(draw)}
        if kind == 0:
            entry = {
                "log": log,
                "stream": stream,
                "attrs": {"tag": draw(_text)},
                "time": entry["time"],
            }
        if kind == 1:
            entry = {"stream": stream, "time": entry["time"], "log": log}  # another key order
        if kind == 2:
            del entry["stream"]
        if kind == 3:
            lines.append(
                draw(st.sampled_from([b"", b"{", b"1", b'"x"', b"null", b"{}\r", b"\xff\xfe"]))
            )
            continue
        if kind == 4:  # a lone surrogate escape (orjson refuses it) or invalid UTF-8
            text = json.dumps(entry, separators=(",", ":"))
            lines.append(text.replace('"log":"', '"log":"\\ud800', 1).encode())
            continue
        if kind == 5:
            raw = orjson.dumps(entry)
            lines.append(raw.replace(b'"log":"', b'"log":"\xc3(', 1))
            continue
        if kind == 6:  # ASCII-only escapes, as other writers do
            lines.append(json.dumps(entry, separators=(",", ":")).encode())
            continue
        if kind == 7:
            lines.append(json.dumps(entry).encode())  # with spaces
            continue
        lines.append(orjson.dumps(entry))
    return b"".join(line + b"\n" for line in lines)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=jsonfile_lines(),
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
    tty=st.booleans(),
    since_offset=st.integers(-1, 3),
    max_bytes=st.sampled_from([1024 * 1024, 8, 5, 3, 2, 1, 0]),
)
def test_jsonfile_native_matches_python(
    data: bytes, cuts: list[int], tty: bool, since_offset: int, max_bytes: int
) -> None:
    since = 0 if since_offset < 0 else (BASE_S + since_offset) * 1_000_000_000 + 500_000_000

    def make() -> JsonFileDecoder:
        return JsonFileDecoder(CID, tty=tty, since_ns=since, max_line_bytes=max_bytes)

    _both_paths(make, data, cuts)


def test_jsonfile_native_takes_docker_lines_whole() -> None:
    """The common form is really taken by C (not silently handed back line by line)."""
    line = (
        b'{"log":"GET /health 200\\n","stream":"stdout","time":"2026-11-28T04:13:43.517053725Z"}\n'
    )
    decoder = JsonFileDecoder(CID, tty=False)
    state = decoder._lines.seq.runs
    assert native_module.native is not None
    out: list[LogRecord] = []
    end = native_module.native.scan_jsonfile(
        line * 3, 0, out, decoder._lines.native_ctx, 0, 1024, False, state
    )
    assert end == len(line) * 3
    ts = parse_timestamp(b"2026-11-28T04:13:43.517053725Z")
    assert out == [
        LogRecord(CID, ts, "stdout", seq, "GET /health 200", (), None, 15) for seq in range(3)
    ]
    assert state == [ts, 3, -1, 0, ts]


# ---- CRI log files


def _cri_time(draw: Any, *, common: bool) -> bytes:
    """The forms containerd (fraction trimmed, `Z`) and CRI-O (nine digits, offset) write,
    from a few instants so that equal timestamps are common; unless `common`, also anything
    near them."""
    ns = (BASE_S + draw(st.integers(0, 2))) * 1_000_000_000 + draw(
        st.sampled_from([0, 1, 500_000_000, 123_456_789, 999_999_999])
    )
    kind = draw(st.integers(0, 6 if common else 9))
    if kind <= 4:
        text = format_timestamp(ns)
        fraction = text[20:29].rstrip("0")
        return (text[:19] + (f".{fraction}" if fraction else "") + "Z").encode()
    if kind <= 6:  # as CRI-O writes it, in some zone (any two digits: the rule takes them)
        offset = draw(st.sampled_from(["+00:00", "-00:00", "+05:30", "-07:00", "+99:99"]))
        sign = 1 if offset[0] == "+" else -1
        shift = sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60) * 1_000_000_000
        return (format_timestamp(ns + shift)[:29] + offset).encode()
    if kind == 7:
        return draw(rfc3339_times())
    return draw(
        st.sampled_from(
            [b"2026-11-28T04:13:43.Z", b"2026-11-28T04:13:43.1234567891Z",
             b"2026-11-28t04:13:43.5Z", b"2026-11-28T04:13:43.5z", b"2026-11-28T04:13:60Z",
             b"2026-11-28T04:13:43+0530", b"2026-11-28T04:13:43.5+05:3a", b"", b"x",
             b"2026-11-28T04:13:43.5Z\xff", b"1969-12-31T23:59:59.5Z", b"2262-01-01T00:00:00Z"]
        )
    )  # fmt: skip


@st.composite
def cri_lines(draw: Any) -> bytes:
    """Runs of lines in the common form (which the C code takes) between lines of every
    other kind: parts, other tags and streams, odd times, invalid or cut UTF-8, lines over
    the cap, lines that are not CRI lines at all."""
    odd_share = draw(st.integers(1, 8))  # in 8: how many lines are drawn from every kind
    lines = []
    for _ in range(draw(st.integers(0, 30))):
        stream = draw(st.sampled_from([b"stdout", b"stdout", b"stderr", b"stderr", b"stdin"]))
        tag = draw(st.sampled_from([b"F", b"F", b"F", b"P", b"P", b"F:x", b"P:1", b"X"]))
        message = draw(_text).encode("utf-8", "surrogatepass").replace(b"\n", b"")
        kind = draw(st.integers(0, 9))
        if draw(st.integers(1, 8)) > odd_share:  # the common form
            stream, tag, kind = stream.replace(b"stdin", b"stdout"), b"F", 9
        if kind == 0:  # not a CRI line at all, or a torn one
            lines.append(draw(st.sampled_from([b"", b" ", b"garbage", b"\xff\xfe", b"a b c d"])))
            continue
        if kind == 1:
            message += b"\xff"  # invalid UTF-8
        elif kind == 2:
            message = b"x" * draw(st.sampled_from([16383, 16384, 16385, 40000]))
        elif kind == 3:
            message += b"\xc3"  # a character cut in half (as containerd's 16 KiB split does)
        separator = b"" if kind == 4 and not message else b" "  # `F` without its space
        time = _cri_time(draw, common=kind == 9)
        lines.append(time + b" " + stream + b" " + tag + separator + message)
    return b"".join(line + b"\n" for line in lines)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=cri_lines(),
    cuts=st.lists(st.integers(0, 100_000), max_size=6),
    since_offset=st.integers(-1, 3),
    max_bytes=st.sampled_from([1024 * 1024, 16384, 8, 5, 3, 1, 0]),
    continued=st.sets(st.sampled_from(["stdout", "stderr"])),
)
def test_cri_native_matches_python(
    data: bytes, cuts: list[int], since_offset: int, max_bytes: int, continued: set[str]
) -> None:
    # Cuts anywhere: mid-line, mid-timestamp, mid-character; a repeated cut feeds an empty
    # chunk, which says a file ended (a torn last line of it is dropped).
    since = 0 if since_offset < 0 else (BASE_S + since_offset) * 1_000_000_000 + 500_000_000

    def make() -> CriDecoder:
        return CriDecoder(CID, max_line_bytes=max_bytes, since_ns=since, continued=continued)

    _both_paths(make, data, cuts)


def test_cri_native_takes_containerd_and_cri_o_lines_whole() -> None:
    """The common form is really taken by C (not silently handed back line by line), in
    both runtimes' timestamp forms, and a part stops it."""
    lines = [
        b"2026-11-28T04:13:43.517053725Z stdout F GET /health 200\n",
        b"2026-11-28T04:13:43.51705Z stderr F caf\xc3\xa9\n",
        b"2026-11-28T04:13:43Z stdout F \n",
        b"2026-11-28T09:43:43.517053725+05:30 stdout F GET /health 200\n",
        b"2026-11-27T21:13:43.517053725-07:00 stdout F GET /health 200\n",
    ]
    decoder = CriDecoder(CID, max_line_bytes=1024)
    state = decoder._assembler.seq.runs
    assert native_module.native is not None
    out: list[LogRecord] = []
    data = b"".join(lines) + b"2026-11-28T04:13:44Z stdout P part\n"
    end = native_module.native.scan_cri(data, 0, out, decoder._assembler.native_ctx, 0, 1024, state)
    assert end == len(b"".join(lines))
    ts = parse_timestamp(b"2026-11-28T04:13:43.517053725Z")
    second = parse_timestamp(b"2026-11-28T04:13:43Z")
    assert out == [
        LogRecord(CID, ts, "stdout", 0, "GET /health 200", (), None, 15),
        LogRecord(CID, ts - 3725, "stderr", 0, "café", (), None, 5),
        LogRecord(CID, second, "stdout", 0, "", (), None, 0),
        LogRecord(CID, ts, "stdout", 0, "GET /health 200", (), None, 15),
        LogRecord(CID, ts, "stdout", 1, "GET /health 200", (), None, 15),
    ]
    assert state == [ts, 2, ts - 3725, 1, ts]


def test_cri_seq_goes_on_across_lines_c_takes_and_lines_it_hands_back() -> None:
    # One timestamp for every line, so every seq counts on from the line before, whichever
    # path made it: C (plain lines) or Python (invalid UTF-8, long lines, parts, a line
    # before `since`, which counts but is not shipped).
    ts = b"2026-11-28T04:13:43.517053725Z"
    lines = [
        b"stdout F plain", b"stdout F bad \xff", b"stderr F err", b"stdout F plain",
        b"stdout F " + b"x" * 40, b"stderr P part one ", b"stdout F waits behind it",
        b"stderr F part two", b"stderr F err", b"stdout F plain",
    ]  # fmt: skip
    data = b"".join(ts + b" " + line + b"\n" for line in lines)
    for cuts in ([], [100], [50, 51, 300]):
        records = _both_paths(lambda: CriDecoder(CID, max_line_bytes=30), data, cuts)
        stdout = [r.seq for r in records if r.stream == "stdout"]
        stderr = [r.seq for r in records if r.stream == "stderr"]
        assert stdout == [0, 1, 2, 3, 4, 5] and stderr == [0, 1, 2]
        assert [r.message for r in records][5:7] == ["part one part two", "waits behind it"]


# ---- logs API frames


@st.composite
def api_frames(draw: Any) -> bytes:
    body = b""
    for _ in range(draw(st.integers(0, 25))):
        stream = draw(st.sampled_from([1, 1, 2, 0]))
        second = BASE_S + draw(st.integers(0, 2))
        ns = second * 1_000_000_000 + draw(st.sampled_from([0, 1, 999_999_999, 123_456_789]))
        stamp = format_timestamp(ns).encode()
        stamp = draw(
            st.sampled_from(
                [stamp, stamp, stamp, stamp[:-1] + b"+00:00", b"1969-12-31T23:59:59.000000001Z",
                 stamp[:20] + b"12345678xZ", b"2026-12-31T23:59:60.000000001Z", b"garbage"]
            )
        )  # fmt: skip
        text = draw(_text).encode("utf-8", "surrogatepass")
        if draw(st.integers(0, 6)) == 0:
            text += b"\xff"  # invalid UTF-8
        if draw(st.integers(0, 4)):
            text += b"\n"
        payload = stamp + b" " + text
        body += bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload
    return body


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=api_frames(),
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
    max_bytes=st.sampled_from([1024 * 1024, 8, 5, 2, 1, 0]),
)
def test_frames_native_matches_python(data: bytes, cuts: list[int], max_bytes: int) -> None:
    def make() -> LogStreamDecoder:
        return LogStreamDecoder(CID, tty=False, max_line_bytes=max_bytes)

    _both_paths(make, data, cuts)


def test_frames_native_takes_docker_frames_whole() -> None:
    payload = b"2026-11-28T04:13:43.517053725Z caf\xc3\xa9\n"
    frame = bytes([2, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload
    decoder = LogStreamDecoder(CID, tty=False)
    state = decoder._lines.seq.runs
    assert native_module.native is not None
    out: list[LogRecord] = []
    end = native_module.native.scan_frames(
        frame * 2 + frame[:5], 0, out, decoder._lines.native_ctx, 99, state
    )
    assert end == len(frame) * 2  # the incomplete header is left for the next chunk
    ts = parse_timestamp(b"2026-11-28T04:13:43.517053725Z")
    assert out == [LogRecord(CID, ts, "stderr", seq, "café", (), None, 5) for seq in range(2)]


# ---- each per-line rule (shipper/lines) against its C copy, on its own
#
# The C scans copy three rules for the lines they take: the timestamp (RFC 3339 to ns), the
# seq (run counters shared with Python in one list) and the record (decoding, size, the cap
# at max_line_bytes). Joining is Python's alone: the C code hands back every part.


@st.composite
def rfc3339_times(draw: Any) -> bytes:
    """Times in and around the form the C code takes: any year it must refuse (before 1970,
    from 2262 on, where nanoseconds overflow 64 bits), impossible dates, every fraction width,
    other zones and malformed ones."""
    year = draw(st.one_of(st.sampled_from([1969, 1970, 2024, 2261, 2262, 2300, 9999]),
                          st.integers(1700, 9999)))  # fmt: skip
    month, day = draw(st.integers(0, 13)), draw(st.integers(0, 32))
    hour, minute, second = (
        draw(st.integers(0, 24)),
        draw(st.integers(0, 60)),
        draw(st.integers(0, 61)),
    )
    if draw(st.integers(0, 3)):  # mostly real times, where the C parse must be exact
        month, day, hour = month % 12 + 1, day % 28 + 1, hour % 24
        minute, second = minute % 60, second % 60
    digits = draw(st.integers(0, 10))
    fraction = "" if digits == 0 else "." + "".join(draw(st.lists(
        st.sampled_from("0123456789"), min_size=digits, max_size=digits)))  # fmt: skip
    zone = draw(st.sampled_from(["Z", "Z", "Z", "Z", "+00:00", "-07:00", "z", "+ab:cd", ""]))
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    return f"{text}{fraction}{zone}".encode()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    times=st.lists(rfc3339_times(), min_size=1, max_size=12),
    streams=st.lists(st.sampled_from([1, 2]), min_size=12, max_size=12),
)
def test_timestamps_native_match_python(times: list[bytes], streams: list[int]) -> None:
    files = b"".join(
        b'{"log":"m\\n","stream":"%s","time":"%s"}\n'
        % (b"stderr" if stream == 2 else b"stdout", time)
        for time, stream in zip(times, streams, strict=False)
    )
    # (since_ns: keep the lines before 1970 too, which the default since of 0 drops; -2**63
    # is in 1677)
    records = _both_paths(lambda: JsonFileDecoder(CID, tty=False, since_ns=-(2**63)), files, [])
    api = b""
    for time, stream in zip(times, streams, strict=False):
        payload = time + b" m\n"
        api += bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload
    records += _both_paths(lambda: LogStreamDecoder(CID, tty=False), api, [])
    cri = b"".join(
        b"%s %s F %d\n" % (time, b"stderr" if stream == 2 else b"stdout", n)
        for n, (time, stream) in enumerate(zip(times, streams, strict=False))
    )
    cri_records = _both_paths(
        lambda: CriDecoder(CID, max_line_bytes=99, since_ns=-(2**63)), cri, []
    )
    for record in cri_records:  # (a line whose time is not RFC 3339 is not a CRI line)
        assert record.timestamp_ns == parse_timestamp(times[int(record.message)])
    assert len(cri_records) == sum(_parses(time) for time in times)
    # (The API decoder looks for the space after a timestamp within 36 bytes.)
    api_times = [time if len(time) < 36 else b"" for time in times]
    for record, time in zip(records, times + api_times, strict=True):
        with contextlib.suppress(TimestampError):
            assert record.timestamp_ns == parse_timestamp(time)


def _parses(time: bytes) -> bool:
    try:
        parse_timestamp(time)
    except TimestampError:
        return False
    return True


def test_the_c_parse_stops_where_nanoseconds_leave_64_bits() -> None:
    assert native_module.native is not None
    lines = JsonFileDecoder(CID, tty=False)._lines
    out: list[LogRecord] = []
    for time, taken in [
        (b"2261-12-31T23:59:59.999999999Z", True),
        (b"2262-01-01T00:00:00Z", False),
        (b"1969-12-31T23:59:59.999999999Z", False),
    ]:
        line = b'{"log":"m\\n","stream":"stdout","time":"%s"}\n' % time
        end = native_module.native.scan_jsonfile(
            line, 0, out, lines.native_ctx, 0, 99, False, lines.seq.runs
        )
        assert end == (len(line) if taken else 0), time
    assert [r.timestamp_ns for r in out] == [parse_timestamp(b"2261-12-31T23:59:59.999999999Z")]


def test_after_a_time_beyond_64_bits_c_takes_nothing_and_python_goes_on() -> None:
    # The run counters then hold a timestamp the C code cannot load: it must take no line,
    # not raise, and the seqs must go on as Python's.
    lines = [b"2300-01-01T00:00:00.5Z", b"2300-01-01T00:00:00.5Z", b"2026-01-01T00:00:00.5Z"]
    files = b"".join(b'{"log":"m\\n","stream":"stdout","time":"%s"}\n' % time for time in lines * 2)
    records = _both_paths(lambda: JsonFileDecoder(CID, tty=False), files, [len(files) // 2])
    assert [r.seq for r in records] == [0, 1, 0, 0, 1, 0]
    assert records[0].timestamp_ns == 10_413_792_000_500_000_000


def test_seq_goes_on_across_lines_c_takes_and_lines_it_hands_back() -> None:
    # One timestamp for every line, so every seq counts on from the line before, whichever
    # path made it: C (plain lines) or Python (invalid UTF-8, long lines, split lines).
    ts = b"2026-11-28T04:13:43.517053725Z"
    messages = [
        (1, b"plain\n"),
        (1, b"bad \xff\n"),
        (2, b"err\n"),
        (1, b"plain\n"),
        (1, b"x" * 40 + b"\n"),  # over max_line_bytes: truncated by Python
        (2, b"part one "),  # a split line: Python joins it
        (1, b"waits behind it\n"),
        (2, b"part two\n"),
        (2, b"err\n"),
        (1, b"plain\n"),
    ]
    api = b""
    for stream, text in messages:
        payload = ts + b" " + text
        api += bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload
    for cuts in ([], [100], [50, 51, 300]):
        records = _both_paths(
            lambda: LogStreamDecoder(CID, tty=False, max_line_bytes=30), api, cuts
        )
        stdout = [r.seq for r in records if r.stream == "stdout"]
        stderr = [r.seq for r in records if r.stream == "stderr"]
        assert stdout == [0, 1, 2, 3, 4, 5] and stderr == [0, 1, 2]


# ---- the encoder

_records = st.builds(
    LogRecord,
    container_id=st.just(CID),
    timestamp_ns=st.one_of(
        st.integers(BASE_S * 10**9, (BASE_S + 5) * 10**9),
        st.sampled_from([0, -1, 253402300799 * 10**9 + 5, 253402300800 * 10**9, 2**63 - 1]),
    ),
    stream=st.sampled_from(["stdout", "stdout", "stderr", "stdin"]),
    seq=st.one_of(st.integers(0, 3), st.sampled_from([2**40, 2**63 - 1, 2**64, -1])),
    message=st.one_of(_text, st.just("\ud800 lone")),
    flags=st.sampled_from([(), (), (), ("truncated",), ("invalid_utf8", "redacted")]),
    fields=st.sampled_from([None, None, None, {"http.status": 200}]),
    size=st.integers(0, 10),
)


def _encode(
    records: list[LogRecord], encode: str = "encode_records", pipeline: str | None = None
) -> Any:
    meta = ContainerMeta(
        id=CID, name="web%1", image="nginx:1.27", labels={"com.docker.compose.project": "p%s"}
    )
    doc = container_document(meta, index="logs-docker-default", host_name="h", pipeline=pipeline)
    try:
        return getattr(encoder, encode)(records, doc)
    except Exception as exc:
        return type(exc)


@settings(max_examples=300, deadline=None)
@given(st.lists(_records, max_size=20), st.sampled_from([None, None, "parse-%s"]))
def test_encoder_native_matches_python(records: list[LogRecord], pipeline: str | None) -> None:
    native_entries = _encode(records, pipeline=pipeline)
    with pure_python():
        python_entries = _encode(records, pipeline=pipeline)
    assert native_entries == python_entries
    if isinstance(python_entries, list) and records:
        assert all(json.loads(entry.split(b"\n")[1]) for entry in python_entries)


@settings(max_examples=300, deadline=None)
@given(st.lists(_records, max_size=20))
def test_joined_encoding_is_the_python_entries_concatenated(records: list[LogRecord]) -> None:
    # The C path writes runs of plain records into one bytes object, with the records it
    # stops at encoded by Python in between: the same bytes and lengths as the plain
    # Python entries joined, whatever the mix.
    joined = _encode(records, "encode_joined")
    with pure_python():
        python_entries = _encode(records)
    if isinstance(python_entries, type):
        assert joined is python_entries
    else:
        assert joined == JoinedEntries(b"".join(python_entries), list(map(len, python_entries)))


def test_joined_encoding_of_plain_records_is_one_object_from_c() -> None:
    records = [LogRecord(CID, BASE_S * 10**9 + i, "stdout", 0, f"line {i}") for i in range(50)]
    out: list[bytes] = []
    lengths: list[int] = []
    doc = container_document(ContainerMeta(id=CID, name="w", image="i"), index="i", host_name="h")
    assert native_module.native is not None
    end = native_module.native.encode_joined(records, 0, out, lengths, doc.native_parts)
    assert end == 50
    with pure_python():
        entries = encoder.encode_records(records, doc)
    assert out == [b"".join(entries)] and lengths == list(map(len, entries))
    # It stops at a record with flags, and appends nothing when the first one has them.
    records[10] = records[10]._replace(flags=("truncated",))
    out, lengths = [], []
    assert native_module.native.encode_joined(records, 0, out, lengths, doc.native_parts) == 10
    assert out == [b"".join(entries[:10])] and lengths == list(map(len, entries[:10]))
    assert native_module.native.encode_joined(records, 10, out, lengths, doc.native_parts) == 10
    assert len(out) == 1 and len(lengths) == 10


# ---- redaction


@settings(max_examples=400, deadline=None)
@given(st.lists(_text, min_size=2, max_size=15))
def test_redaction_candidates_cover_the_prefilter_and_redaction_matches(
    messages: list[str],
) -> None:
    config = RedactionConfig()
    assert native_module.native is not None
    could_match = _presets_prefilter(config.presets)
    batch = redact._BatchPrefilter(config.presets)
    candidates = set(batch.candidates(messages) or range(len(messages)))
    assert {i for i, message in enumerate(messages) if could_match(message)} <= candidates
    records = [LogRecord(CID, i, "stdout", 0, m, (), None, len(m)) for i, m in enumerate(messages)]
    native_out = Redactor(config, ProcessorStats()).apply(records)
    with pure_python():
        python_out = Redactor(config, ProcessorStats()).apply(records)
    assert native_out == python_out


# Pieces of every needle in both cases, cut anywhere, with digits, separators and filler: the
# C search (two-byte masks, one pass with the card shapes) must find exactly what the Python
# search finds in ASCII text, wherever a needle starts or ends (the last byte included).
_NEEDLE_PIECES = [
    piece
    for needle in (*redact._LOWER_NEEDLES["key_value"], *redact._LOWER_NEEDLES["authorization"],
                   *redact._EXACT_NEEDLES["aws_access_key"], *redact._EXACT_NEEDLES["url_password"])
    for word in (needle, needle.upper(), needle.capitalize())
    for piece in (word, word[:1], word[:2], word[1:], word[:-1])
]  # fmt: skip
_ascii_text = st.lists(
    st.one_of(
        st.sampled_from(_NEEDLE_PIECES),
        st.sampled_from(["1234", "5678", " ", "-", "x", "0", "99999999", ":", "/"]),
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=4),
    ),
    max_size=10,
).map("".join)


@settings(max_examples=600, deadline=None)
@given(st.lists(_ascii_text, min_size=2, max_size=12), st.booleans())
def test_redaction_candidates_equal_the_python_search_for_ascii(
    messages: list[str], cards: bool
) -> None:
    presets = [p for p in RedactionConfig().presets if cards or p != "credit_card"]
    batch = redact._BatchPrefilter(presets)
    native_candidates = batch.candidates(messages)
    with pure_python():
        python_candidates = redact._BatchPrefilter(presets).candidates(messages)
    assert native_candidates == python_candidates


def test_redaction_candidates_are_exact_for_ascii() -> None:
    batch = redact._BatchPrefilter(RedactionConfig().presets)
    messages = ["plain", "my PassWord=x", "id 12345678", "card 4111-1111", "ok", "x://y@z",
                "AKIAXXXX", "akia", "K\u212aey", "İ"]  # fmt: skip
    assert batch.candidates(messages) == [1, 2, 3, 5, 6, 8, 9]


# ---- batch facts

_fact_records = st.lists(
    st.builds(
        LogRecord,
        st.just(CID),
        st.one_of(st.integers(0, 2**63 - 1), st.integers(-(2**70), 2**70)),
        st.sampled_from(["stdout", "stderr", "".join(["std", "err"]), "other"]),
        st.integers(0, 3),
        st.just("m"),
        st.sampled_from([(), ("truncated",), ("invalid_utf8", "multiline")]),
        st.just(None),
        st.one_of(st.integers(0, 10**6), st.integers(0, 2**70)),
    ),
    max_size=12,
)


@settings(max_examples=400, deadline=None)
@given(_fact_records)
def test_batch_facts_equal_the_python_passes(records: list[LogRecord]) -> None:
    assert batch_facts_module.batch_facts(records) == (
        python_batch_facts(records) if records else None
    )


def test_batch_facts_of_the_common_form_are_found_in_c() -> None:
    records = [
        LogRecord(CID, 10 + i % 3, "stderr" if i % 4 == 0 else "stdout", 0, "m", (), None, i)
        for i in range(10)
    ]
    assert native_module.native is not None
    found = native_module.native.batch_facts(records, "stderr")
    assert found is not None
    assert found == tuple(python_batch_facts(records))
    assert found == ([10, 11, 12, 10, 11, 12, 10, 11, 12, 10], 10, 12, 3, 33, 12, False)
    odd = [*records, records[0]._replace(timestamp_ns=2**64)]  # beyond 64 bits: Python answers
    assert native_module.native.batch_facts(odd, "stderr") is None
    assert batch_facts_module.batch_facts(odd) == python_batch_facts(odd)


# ---- eight bytes at a time: every special byte at every place around a word boundary

_SPECIALS = [chr(c) for c in range(0x20)] + ['"', "\\", "\x7f", "é", "€", "𝄞", "/"]


def test_word_at_a_time_scans_find_every_special_character_at_every_position() -> None:
    messages = [
        "a" * before + special + "b" * after
        for special in _SPECIALS
        for before in range(0, 20)
        for after in (0, 1, 7, 8, 9, 17)
    ]
    records = [
        LogRecord(CID, BASE_S * 10**9 + n, "stdout", 0, message, (), None, len(message))
        for n, message in enumerate(messages)
    ]
    native_entries = _encode(records)
    with pure_python():
        python_entries = _encode(records)
    assert native_entries == python_entries
    lines = b"".join(
        orjson.dumps({"log": m + "\n", "stream": "stdout", "time": "2026-12-02T00:00:00Z"}) + b"\n"
        for m in messages
    ) + b"".join(
        json.dumps({"log": m + "\n", "stream": "stdout", "time": "2026-12-02T00:00:00Z"}).encode()
        + b"\n"
        for m in messages
    )

    def make() -> JsonFileDecoder:
        return JsonFileDecoder(CID, tty=False, since_ns=0, max_line_bytes=1 << 20)

    _both_paths(make, lines, [])


def test_word_at_a_time_utf8_checks_find_every_non_ascii_byte_at_every_position() -> None:
    # The C scans of raw messages (CRI lines, API frames) check UTF-8 eight bytes at a time:
    # a valid or invalid non-ASCII byte must be seen wherever it falls in a word.
    specials = [s.encode() for s in _SPECIALS if s != "\n"] + [b"\xff", b"\xc3", b"\xed\xa0\x80"]
    messages = [
        b"a" * before + special + b"b" * after
        for special in specials
        for before in range(0, 20)
        for after in (0, 1, 7, 8, 9, 17)
    ]
    cri = b"".join(b"2026-12-02T00:00:00Z stdout F " + m + b"\n" for m in messages)
    records = _both_paths(lambda: CriDecoder(CID, max_line_bytes=1 << 20), cri, [])
    assert len(records) == len(messages)
    api = b""
    for message in messages:
        payload = b"2026-12-02T00:00:00.000000000Z " + message + b"\n"
        api += bytes([1, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload
    _both_paths(lambda: LogStreamDecoder(CID, tty=False, max_line_bytes=1 << 20), api, [])
