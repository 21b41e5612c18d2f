"""Request body decompression and response compression, done the way Elasticsearch's HTTP layer does.

Elasticsearch puts Netty's ``HttpContentDecompressor`` between the HTTP decoder and the request
aggregator, so:

* ``gzip``/``x-gzip`` and ``deflate``/``x-deflate`` (zlib-wrapped, or raw deflate) bodies are
  inflated before anything else sees them; every other ``Content-Encoding`` (``zstd`` included)
  is passed through untouched and then fails to parse as JSON;
* ``http.max_content_length`` applies to the *inflated* size (the aggregator comes after the
  decompressor, and the decompressor drops the ``Content-Length`` header);
* a body that does not inflate (bad header, bad deflate data, CRC mismatch) makes the decoder
  throw; the exception reaches ``Netty4HttpPipeliningHandler.exceptionCaught`` and
  ``AbstractHttpServerTransport.onException`` closes the connection: **no response at all**;
* only the first gzip member is read (``JdkZlibDecoder`` without ``decompressConcatenated``)
  and a body that ends early yields what was inflated so far.
"""

from __future__ import annotations

import zlib
from typing import Any

try:  # ISA-L inflates several times faster (the shipper depends on it where wheels exist)
    from isal import isal_zlib as _inflate_lib
except ImportError:  # pragma: no cover
    _inflate_lib = zlib  # type: ignore[assignment]
_INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, _inflate_lib.error)

GZIP = frozenset({"gzip", "x-gzip"})
DEFLATE = frozenset({"deflate", "x-deflate"})


class CorruptBody(Exception):
    """The body does not inflate: Elasticsearch closes the connection without answering."""


def is_compressed(encoding: str) -> bool:
    return encoding in GZIP or encoding in DEFLATE


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """The inflated body, at most ``limit + 1`` bytes (more than ``limit`` means: too large)."""
    if not body:
        return body
    if encoding in GZIP:
        wbits = 16 + zlib.MAX_WBITS
    elif len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0:
        wbits = zlib.MAX_WBITS  # ZlibWrapper.ZLIB_OR_NONE: a zlib header...
    else:
        wbits = -zlib.MAX_WBITS  # ...or raw deflate
    inflater: Any = _inflate_lib.decompressobj(wbits)
    try:
        return bytes(inflater.decompress(body, limit + 1))
    except _INFLATE_ERRORS as exc:
        raise CorruptBody(str(exc)) from None


# Response compression: Netty's HttpContentCompressor, as Elasticsearch installs it when
# `http.compression` is on, at `http.compression_level` (default 3).
RESPONSE_COMPRESSION_LEVEL = 3


def response_coding(accept_encoding: str) -> str | None:
    """The coding HttpContentCompressor picks for an ``Accept-Encoding``: gzip if the client
    takes it at least as willingly as deflate, else deflate, else none (``q=0`` refuses a
    coding; ``*`` stands for both)."""
    weights: dict[str, float] = {}
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.partition(";")
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[coding.strip()] = weight
    star = weights.get("*", 0.0)
    gzip_q = weights.get("gzip", weights.get("x-gzip", star))
    deflate_q = weights.get("deflate", weights.get("x-deflate", star))
    if gzip_q > 0 and gzip_q >= deflate_q:
        return "gzip"
    if deflate_q > 0:
        return "deflate"
    return None


def compress_response(payload: bytes, coding: str) -> bytes:
    """``payload`` in ``coding`` (gzip, or zlib-wrapped deflate) at Elasticsearch's level."""
    wbits = 16 + zlib.MAX_WBITS if coding == "gzip" else zlib.MAX_WBITS
    compressor = zlib.compressobj(RESPONSE_COMPRESSION_LEVEL, zlib.DEFLATED, wbits)
    return compressor.compress(payload) + compressor.flush()
