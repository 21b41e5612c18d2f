"""The C hot path (`shipper/_native.c`), if it was built and is not turned off.

`SHIPPER_NATIVE=0` in the environment runs the pure-Python path instead: the same records and
bytes (tests/unit/test_native.py checks that over random input), for debugging and for
measuring one against the other. Imports nothing of ours but the C module.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Final, Protocol, cast


class NativeHotPath(Protocol):
    """What the C module offers (each function is documented in shipper/_native.c)."""

    def scan_frames(
        self,
        data: bytes,
        pos: int,
        out: list[Any],
        ctx: tuple[Any, ...],
        max_size: int,
        state: list[int],
        /,
    ) -> int: ...

    def scan_jsonfile(
        self,
        data: bytes,
        pos: int,
        out: list[Any],
        ctx: tuple[Any, ...],
        since_ns: int,
        max_bytes: int,
        tty: bool,
        state: list[int],
        /,
    ) -> int: ...

    def encode_joined(
        self,
        records: list[Any],
        pos: int,
        out: list[bytes],
        lengths: list[int],
        parts: tuple[Any, ...],
        /,
    ) -> int: ...

    def redaction_candidates(
        self,
        messages: list[str],
        lower_needles: tuple[bytes, ...],
        exact_needles: tuple[bytes, ...],
        cards: bool,
        /,
    ) -> list[int]: ...

    def batch_facts(
        self, records: list[Any], stderr: str, /
    ) -> tuple[list[int], int, int, int, int, int, bool] | None: ...


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
