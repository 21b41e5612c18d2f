"""ISA-L's gzip and crc32 are interchangeable with zlib's: whichever wrote, zlib reads."""

from __future__ import annotations

import platform
import zlib

from hypothesis import given
from hypothesis import strategies as st

from shipper import fastzlib


@given(st.binary(max_size=50_000), st.integers(0, 2**32 - 1))
def test_gzip_and_crc32_match_zlib(data: bytes, seed: int) -> None:
    assert zlib.decompress(fastzlib.gzip_fast(data), 31) == data
    first, second = sorted((seed % 7, seed % 5000))
    parts = [data[:first], data[first:second], data[second:], b""]
    assert zlib.decompress(fastzlib.gzip_parts(parts), 31) == data
    assert fastzlib.crc32(data) == zlib.crc32(data)
    assert fastzlib.crc32(data, seed) == zlib.crc32(data, seed)


def test_the_accelerated_path_is_the_one_in_use_where_wheels_exist() -> None:
    if platform.machine() in ("x86_64", "AMD64", "aarch64", "arm64"):
        assert fastzlib.ACCELERATED  # a dependency there: a missing one would cost 10x CPU
