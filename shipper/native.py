"""The C hot path (`shipper/_native.c`), if it was built, fits this code and is not turned off.

This is the one place that decides between C and Python. Each module with a hot loop binds
its implementation once, at import, to the C-backed one when `native` is loaded here and to
the pure-Python one when it is None, and never asks again:

  docker/frames.py                `_scan_frames`         (C scan, or none: every frame in Python)
  docker/jsonfile.py              `_scan_jsonfile`       (likewise, every line)
  cri/parser.py                   `_scan_cri`            (likewise, every line)
  pipeline/encoder.py             `encode_records`, `encode_joined`
  pipeline/redact.py              `_BatchPrefilter.candidates`
  sources/batch_facts.py          `batch_facts`

The pure-Python path gives the same records and bytes (tests/unit/test_native.py checks that
over random input): it runs where no C compiler was available at install, and with
`SHIPPER_NATIVE=0` in the environment, for debugging and for measuring one against the other.

The C code builds and reads `LogRecord`s and a few other tuples by position. A build of it
that does not match this code (an extension left from an older checkout, or a layout changed
on one side only) would mix up fields silently, so before it is used its declared layout is
compared with this code's and each function runs on a tiny input with a known answer; if
anything disagrees, the shipper warns and runs the pure-Python path.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any, Final, Protocol, cast

from shipper import events
from shipper.lines.assembler import LineAssembler
from shipper.model import STDERR, STDOUT, LogRecord

# The layouts `shipper/_native.c` was written for (its LAYOUT_VERSION): change both together.
LAYOUT_VERSION: Final = 1

# The C functions' signatures (their arguments are documented in shipper/_native.c), for the
# modules that bind them or their Python stand-ins.
# scan_frames(data, pos, out, ctx, max_size, runs) -> where it stopped
ScanFrames = Callable[[bytes, int, list[LogRecord], tuple[Any, ...], int, list[int]], int]
# scan_jsonfile(data, pos, out, ctx, since_ns, max_bytes, tty, runs) -> where it stopped
ScanJsonFile = Callable[
    [bytes, int, list[LogRecord], tuple[Any, ...], int, int, bool, list[int]], int
]
# scan_cri(data, pos, out, ctx, since_ns, max_bytes, runs) -> where it stopped
ScanCri = Callable[[bytes, int, list[LogRecord], tuple[Any, ...], int, int, list[int]], int]
# encode_joined(records, pos, out, lengths, parts) -> the first record not encoded
EncodeJoined = Callable[[list[LogRecord], int, list[bytes], list[int], tuple[Any, ...]], int]
# redaction_candidates(messages, lower_needles, exact_needles, cards) -> indexes
RedactionCandidates = Callable[[list[str], tuple[bytes, ...], tuple[bytes, ...], bool], list[int]]
# batch_facts(records, stderr) -> BatchFacts' fields, or None: Python answers
BatchFactsTuple = tuple[list[int], int, int, int, int, int, bool]
FindBatchFacts = Callable[[list[LogRecord], str], BatchFactsTuple | None]


class NativeHotPath(Protocol):
    """What the C module offers."""

    LAYOUT_VERSION: int
    RECORD_FIELDS: tuple[str, ...]
    scan_frames: ScanFrames
    scan_jsonfile: ScanJsonFile
    scan_cri: ScanCri
    encode_joined: EncodeJoined
    redaction_candidates: RedactionCandidates
    batch_facts: FindBatchFacts


def contract_problem(module: Any) -> str | None:
    """What in a loaded C module does not fit this code; None when it all does."""
    version = getattr(module, "LAYOUT_VERSION", None)
    if version != LAYOUT_VERSION:
        return (
            f"it was built for layout {version} and this code has layout {LAYOUT_VERSION} "
            "(a build from another version: reinstall the shipper to rebuild it)"
        )
    missing = [name for name in _FUNCTIONS if not callable(getattr(module, name, None))]
    if missing:
        return (
            f"it has no {', '.join(missing)} (a build from another version: reinstall the "
            "shipper to rebuild it)"
        )
    fields = getattr(module, "RECORD_FIELDS", None)
    if fields != LogRecord._fields:
        return (
            f"it builds LogRecords with the fields {fields}, "
            f"and shipper/model.py has {LogRecord._fields}"
        )
    for check in _SELF_TESTS:
        try:
            problem = check(module)
        except Exception as exc:  # any failure is a mismatch: nothing of it may run
            problem = f"{check.__name__} raised {exc!r}"
        if problem is not None:
            return problem
    return None


# -- the self-tests: each C function on a tiny input, against the answer this code expects ---

_TIMESTAMP = b"2026-11-28T04:13:43.517053725Z"
_TIMESTAMP_NS = 1_795_839_223_517_053_725


def _expected_records() -> list[LogRecord]:
    # By name, so that a C module writing the fields in another order than model.py's shows.
    return [
        LogRecord(
            container_id="c",
            timestamp_ns=_TIMESTAMP_NS,
            stream=STDERR,
            seq=seq,
            message=message,
            flags=(),
            fields=None,
            size=len(message.encode()),
        )
        for seq, message in enumerate(["café", "x"])
    ]


def _records_problem(
    name: str, out: list[LogRecord], runs: list[int], pos: int, end: int
) -> str | None:
    expected = _expected_records()
    if pos != end or out != expected or any(type(r) is not LogRecord for r in out):
        return f"{name} made {out!r} of a tiny input, this code expects {expected!r}"
    if runs != [-1, 0, _TIMESTAMP_NS, 2, _TIMESTAMP_NS]:
        return f"{name} left the run counters at {runs}, this code expects 2 stderr lines"
    return None


def _scan_frames_check(module: NativeHotPath) -> str | None:
    lines = LineAssembler("c", max_line_bytes=100, tty=False, parts_share_timestamp=True)
    data = b""
    for text in ("café", "x"):
        payload = _TIMESTAMP + b" " + text.encode() + b"\n"
        data += bytes([2, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload
    out: list[LogRecord] = []
    runs = lines.seq.runs
    pos = module.scan_frames(data, 0, out, lines.native_ctx, 1000, runs)
    return _records_problem("scan_frames", out, runs, pos, len(data))


def _scan_jsonfile_check(module: NativeHotPath) -> str | None:
    lines = LineAssembler("c", max_line_bytes=100, tty=False, parts_share_timestamp=True)
    data = b"".join(
        b'{"log":"' + text + b'\\n","stream":"stderr","time":"' + _TIMESTAMP + b'"}\n'
        for text in (b"caf\\u00e9", b"x")
    )
    out: list[LogRecord] = []
    runs = lines.seq.runs
    pos = module.scan_jsonfile(data, 0, out, lines.native_ctx, 0, 100, False, runs)
    return _records_problem("scan_jsonfile", out, runs, pos, len(data))


def _scan_cri_check(module: NativeHotPath) -> str | None:
    lines = LineAssembler("c", max_line_bytes=100, tty=False, parts_share_timestamp=False)
    # A line stamped before `since` (its seq counts, it makes no record), the two lines at
    # one instant written in UTC and with an offset (as CRI-O writes it), then a `P` part,
    # where the C code must stop and leave the rest to the Python code.
    data = (
        b"2026-11-28T04:13:42Z stderr F older\n"
        + _TIMESTAMP + " stderr F café\n".encode()
        + b"2026-11-28T09:43:43.517053725+05:30 stderr F x\n"
    )  # fmt: skip
    end = len(data)
    data += _TIMESTAMP + b" stderr P a part\n"
    out: list[LogRecord] = []
    runs = lines.seq.runs
    pos = module.scan_cri(data, 0, out, lines.native_ctx, _TIMESTAMP_NS, 100, runs)
    return _records_problem("scan_cri", out, runs, pos, end)


def _encode_joined_check(module: NativeHotPath) -> str | None:
    # parts: (action head, id middle stdout, id middle stderr, tail stdout, tail stderr, the
    # stream names), as encoder.py's `container_document` makes them.
    parts = (b"<head>", b"<o>", b"<e>", b"<tail o>", b"<tail e>", STDOUT, STDERR)
    out: list[bytes] = []
    lengths: list[int] = []
    pos = module.encode_joined(_expected_records(), 0, out, lengths, parts)
    entries = [
        b"<head>%016x<e>%x" % (_TIMESTAMP_NS, seq)
        + b'"}}\n{"@timestamp":"2026-11-28T04:13:43.517053725Z","message":"'
        + message
        + b'",<tail e>'
        for seq, message in enumerate(["café".encode(), b"x"])
    ]
    if pos != 2 or out != [b"".join(entries)] or lengths != [len(e) for e in entries]:
        return f"encode_joined wrote {out!r}, this code expects {entries!r} joined"
    return None


def _redaction_candidates_check(module: NativeHotPath) -> str | None:
    found = module.redaction_candidates(
        ["ok", "my PassWord=1", "AKIA"], (b"pass",), (b"AKIA",), False
    )
    if found != [1, 2]:
        return f"redaction_candidates found {found}, this code expects [1, 2]"
    return None


def _batch_facts_check(module: NativeHotPath) -> str | None:
    records = _expected_records()
    records[1] = records[1]._replace(stream=STDOUT, timestamp_ns=5, flags=("truncated",))
    facts = module.batch_facts(records, STDERR)
    # In the order of sources/batch_facts.py's BatchFacts.
    expected = ([_TIMESTAMP_NS, 5], 5, _TIMESTAMP_NS, 1, 1, 5, True)
    if facts != expected:
        return f"batch_facts answered {facts}, this code expects {expected}"
    return None


# Every function the Python code binds (the NativeHotPath protocol's).
_FUNCTIONS: Final = (
    "scan_frames",
    "scan_jsonfile",
    "scan_cri",
    "encode_joined",
    "redaction_candidates",
    "batch_facts",
)
_SELF_TESTS: Final[tuple[Callable[[NativeHotPath], str | None], ...]] = (
    _scan_frames_check,
    _scan_jsonfile_check,
    _scan_cri_check,
    _encode_joined_check,
    _redaction_candidates_check,
    _batch_facts_check,
)


def _load() -> tuple[NativeHotPath | None, str]:
    """The C module, or None and why not."""
    if os.environ.get("SHIPPER_NATIVE", "1").strip().lower() in {"0", "false", "no", "off"}:
        return None, "turned off by SHIPPER_NATIVE"
    try:
        module = importlib.import_module("shipper._native")
    except ImportError:  # built without a C compiler: the Python path does the same work
        return None, "not built (no C compiler at install)"
    problem = contract_problem(module)
    if problem is not None:
        events.lifecycle.native_hot_path_unfit(problem=problem)
        return None, f"does not fit this code: {problem}"
    # The module's functions are the protocol's (a compiled module has no types of its own).
    return cast(NativeHotPath, module), ""


native, WHY_NOT_NATIVE = _load()
ACTIVE: Final = native is not None

__all__ = ["ACTIVE", "WHY_NOT_NATIVE", "native"]
