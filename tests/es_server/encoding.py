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
    """The coding Netty's ``HttpContentCompressor.determineWrapper`` picks for an
    ``Accept-Encoding`` (Elasticsearch builds the compressor with a level only, so gzip and
    deflate are all it offers): the highest q of each token that names gzip or deflate (a
    substring test, as Netty's), gzip when its q is at least deflate's, and ``*`` only for a
    coding the header does not name."""
    star_q = gzip_q = deflate_q = -1.0
    for token in accept_encoding.split(","):
        q = 1.0
        _, equals, value = token.partition("=")
        if equals:
            try:
                q = float(value)
            except ValueError:
                q = 0.0
        if "*" in token:
            star_q = q
        elif "gzip" in token and q > gzip_q:
            gzip_q = q
        elif "deflate" in token and q > deflate_q:
            deflate_q = q
    if gzip_q > 0 or deflate_q > 0:
        return "gzip" if gzip_q >= deflate_q else "deflate"
    if star_q > 0:
        if gzip_q == -1:
            return "gzip"
        if deflate_q == -1:
            return "deflate"
    return None


def compress_response(payload: bytes, coding: str) -> bytes:
    """``payload`` in ``coding`` (gzip, or zlib-wrapped deflate) at Elasticsearch's level."""
    wbits = 16 + zlib.MAX_WBITS if coding == "gzip" else zlib.MAX_WBITS
    compressor = zlib.compressobj(RESPONSE_COMPRESSION_LEVEL, zlib.DEFLATED, wbits)
    return compressor.compress(payload) + compressor.flush()
