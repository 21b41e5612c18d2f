# Types of the C hot path (shipper/_native.c); shipper/native.py holds the same as a Protocol,
# which mypy checks this module against.
from typing import Any

def scan_frames(
    data: bytes, pos: int, out: list[Any], ctx: tuple[Any, ...], max_size: int, state: list[int], /
) -> int: ...
def scan_jsonfile(
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
def encode_plain(
    records: list[Any], pos: int, out: list[bytes], parts: tuple[Any, ...], /
) -> int: ...
def redaction_candidates(
    messages: list[str],
    lower_needles: tuple[bytes, ...],
    exact_needles: tuple[bytes, ...],
    cards: bool,
    /,
) -> list[int]: ...
