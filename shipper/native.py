"""The C hot path (`shipper/_native.c`), if it was built and is not turned off.

`SHIPPER_NATIVE=0` in the environment runs the pure-Python path instead: the same records and
bytes (tests/unit/test_native.py checks that over random input), for debugging and for
measuring one against the other.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any, Final, Protocol, cast

from shipper.model import LogRecord

# The C functions' signatures (their arguments are documented in shipper/_native.c), for the
# modules that bind them or their Python stand-ins.
# scan_frames(data, pos, out, ctx, max_size, runs) -> where it stopped
ScanFrames = Callable[[bytes, int, list[LogRecord], tuple[Any, ...], int, list[int]], int]
# scan_jsonfile(data, pos, out, ctx, since_ns, max_bytes, tty, runs) -> where it stopped
ScanJsonFile = Callable[
    [bytes, int, list[LogRecord], tuple[Any, ...], int, int, bool, list[int]], int
]
# encode_joined(records, pos, out, lengths, parts) -> the first record not encoded
EncodeJoined = Callable[[list[LogRecord], int, list[bytes], list[int], tuple[Any, ...]], int]
# redaction_candidates(messages, lower_needles, exact_needles, cards) -> indexes
RedactionCandidates = Callable[[list[str], tuple[bytes, ...], tuple[bytes, ...], bool], list[int]]
# batch_facts(records, stderr) -> BatchFacts' fields, or None: Python answers
BatchFactsTuple = tuple[list[int], int, int, int, int, int, bool]
FindBatchFacts = Callable[[list[LogRecord], str], BatchFactsTuple | None]


class NativeHotPath(Protocol):
    """What the C module offers."""

    scan_frames: ScanFrames
    scan_jsonfile: ScanJsonFile
    encode_joined: EncodeJoined
    redaction_candidates: RedactionCandidates
    batch_facts: FindBatchFacts


def _load() -> NativeHotPath | None:
    if os.environ.get("SHIPPER_NATIVE", "1").strip().lower() in {"0", "false", "no", "off"}:
        return None
    try:
        module = importlib.import_module("shipper._native")
    except ImportError:  # built without a C compiler: the Python path does the same work
        return None
    # The module's functions are the protocol's (a compiled module has no types of its own).
    return cast(NativeHotPath, module)


native: Final = _load()
ACTIVE: Final = native is not None

__all__ = ["ACTIVE", "native"]
