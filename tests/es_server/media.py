"""Media types and REST API compatibility headers, as RestCompatibleVersionHelper checks them.

Elasticsearch accepts ``application/json`` and ``application/x-ndjson`` plus the vendor forms
``application/vnd.elasticsearch+json; compatible-with=N``. A server of major M accepts N in
{M-1, M}; Accept and Content-Type must then carry the same version (or none). A failure is a
``media_type_header_exception`` caused by a ``status_exception`` whose reason names the header.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import EsError, PlainError

_KNOWN_SUBTYPES = {"json", "x-ndjson", "vnd.elasticsearch+json", "vnd.elasticsearch+x-ndjson"}


@dataclass(frozen=True)
class MediaType:
    original: str
    type: str
    subtype: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def compatible_with(self) -> int | None:
        raw = self.params.get("compatible-with")
        return int(raw) if raw is not None and raw.isdigit() else None

    @property
    def known(self) -> bool:
        return self.type == "application" and self.subtype in _KNOWN_SUBTYPES

    def response_content_type(self) -> str:
        # ParsedMediaType.responseContentTypeHeader(): parameters joined with ';' and no space.
        base = f"{self.type}/{self.subtype}".replace("x-ndjson", "json")
        params = "".join(f";{k}={v}" for k, v in self.params.items())
        return base + params


def parse(header: str | None) -> MediaType | None:
    if not header:
        return None
    # Accept may list alternatives; Elasticsearch parses the header as one media type, which
    # in practice means clients send a single one. Take the first known one we can find.
    for candidate in header.split(","):
        parts = [p.strip() for p in candidate.split(";")]
        if "/" not in parts[0]:
            continue
        type_, _, subtype = parts[0].lower().partition("/")
        params: dict[str, str] = {}
        for p in parts[1:]:
            if "=" in p:
                k, _, v = p.partition("=")
                params[k.strip().lower()] = v.strip()
        mt = MediaType(header, type_, subtype, params)
        if mt.known or type_ == "*":
            return mt
    type_, _, subtype = header.split(";")[0].strip().lower().partition("/")
    return MediaType(header, type_, subtype, {})


def check_compatibility(
    major: int, accept: MediaType | None, content_type: MediaType | None, has_content: bool
) -> int:
    """Returns the REST API version the request asked for, or raises like Elasticsearch."""
    minimum = major - 1
    a_version = accept.compatible_with if accept is not None and accept.known else None
    c_version = (
        content_type.compatible_with if content_type is not None and content_type.known else None
    )
    accept_version = a_version if a_version is not None else major
    content_version = c_version if c_version is not None else major
    accept_text = accept.original if accept is not None else "null"
    content_text = content_type.original if content_type is not None else "null"

    def fail(reason: str) -> EsError:
        return EsError(
            400,
            "media_type_header_exception",
            # Java's Set.of() order is unspecified; this is one of the two orders real nodes print.
            "Invalid media-type value on headers [Content-Type, Accept]",
            caused_by={"type": "status_exception", "reason": reason},
        )

    if accept_version > major or accept_version < minimum:
        raise fail(
            f"Accept version must be either version {major} or {minimum}, "
            f"but found {accept_version}. Accept={accept_text}"
        )
    if has_content:
        if content_version > major or content_version < minimum:
            raise fail(
                f"Content-Type version must be either version {major} or {minimum}, "
                f"but found {content_version}. Content-Type={content_text}"
            )
        if content_version != accept_version:
            raise fail(
                "A compatible version is required on both Content-Type and Accept headers if "
                "either one has requested a compatible version and the compatible versions must "
                f"match. Accept={accept_text}, Content-Type={content_text}"
            )
        if (c_version is None) != (a_version is None):
            raise fail(
                "A compatible version is required on both Content-Type and Accept headers if "
                f"either one has requested a compatible version. Accept={accept_text}, "
                f"Content-Type={content_text}"
            )
        return content_version
    return accept_version


def check_content_type(content_type: MediaType | None, has_content: bool) -> None:
    if not has_content or content_type is None:
        return
    if not content_type.known:
        # RestController answers an unsupported Content-Type with a bare-string 406.
        raise PlainError(406, f"Content-Type header [{content_type.original}] is not supported")


def response_content_type(accept: MediaType | None, content_type: MediaType | None) -> str:
    if accept is not None and accept.known:
        return accept.response_content_type()
    if content_type is not None and content_type.known and content_type.compatible_with:
        return content_type.response_content_type()
    return "application/json"
