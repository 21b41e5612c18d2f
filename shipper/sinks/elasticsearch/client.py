"""Connection to Elasticsearch through the official async client, speaking the server's major.

The client stamps every request with `compatible-with=<its own major>`, and an 8.x server
rejects `compatible-with=9`. So we ask the server its version first (with `compatible-with=8`,
which both 8.x and 9.x accept) and from then on send the media types of the server's own
major on every request. The client still does what it is good at: the node pool with
failover, auth, TLS, gzip, the product check.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout, TlsError
from elasticsearch import ApiError, AsyncElasticsearch, UnsupportedProductError

from shipper import events
from shipper.config import ElasticsearchConfig
from shipper.errors import ConfigError, PermanentError, TransientError
from shipper.fastzlib import gzip_parts
from shipper.sinks.elasticsearch.response import ResponseSerializer
from shipper.sinks.elasticsearch.secrets import read_secret
from shipper.sinks.elasticsearch.tls import client_tls_context

SUPPORTED_MAJORS = (8, 9)
# A bulk response names every item's index, id, version, shards, seq_no...: ten times what we
# use. Keep only `errors` and each item's status and error (what Beats asks for too); every
# item keeps its place in `items` because every item has a status. And `failure_store`
# (Elasticsearch 8.19/9.1 and later): "used" on a 201 says the document went to the data
# stream's failure store, not to its indices; it is absent on a plain success.
BULK_PARAMS = {"filter_path": "errors,items.*.error,items.*.status,items.*.failure_store"}


class RequestFailed(TransientError):
    """The whole request failed; `status` is None when no HTTP answer came back."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


class UnsupportedCluster(PermanentError):
    pass


def _media_type(kind: str, major: int) -> str:
    return f"application/vnd.elasticsearch+{kind}; compatible-with={major}"


class ElasticsearchConnection:
    def __init__(self, config: ElasticsearchConfig) -> None:
        self._config = config
        basic_auth = None
        password = read_secret(config.password, config.password_file, "elasticsearch.password_file")
        if config.username is not None:
            basic_auth = (config.username, password or "")
        api_key = read_secret(config.api_key, config.api_key_file, "elasticsearch.api_key_file")
        bearer = read_secret(
            config.bearer_token, config.bearer_token_file, "elasticsearch.bearer_token_file"
        )
        tls: dict[str, Any] = {"ca_certs": config.ca_certs} if config.ca_certs else {}
        if config.ssl_assert_fingerprint:
            tls["ssl_assert_fingerprint"] = config.ssl_assert_fingerprint
        if config.ca_certs and not os.access(config.ca_certs, os.R_OK):
            raise ConfigError("elasticsearch.ca_certs", f"cannot read {config.ca_certs!r}")
        client_context = client_tls_context(config)  # ConfigError on a bad file
        if client_context is not None:
            # It carries verification and the CA too: the client takes it as it is.
            tls = {"ssl_context": client_context}
        uses_tls = any(host.startswith("https://") for host in config.hosts)
        self._uses_tls = uses_tls
        if uses_tls and not config.verify_certs and not config.ssl_assert_fingerprint:
            events.elasticsearch.tls_verification_off(hosts=config.hosts)
        self._client = AsyncElasticsearch(
            hosts=list(config.hosts),
            basic_auth=basic_auth,
            api_key=api_key,
            bearer_auth=bearer,
            verify_certs=config.verify_certs,
            **tls,
            ssl_show_warn=False,  # we warn once ourselves, in words an operator can act on
            # Bulk bodies are gzipped by `bulk` itself (fast level, off the event loop); the
            # transport would use gzip's slowest level on the loop's thread.
            http_compress=False,
            # Bulk responses hold one item per document: orjson parses them ~5x faster, and
            # the usual all-created answer is recognised without parsing (see `response`).
            serializers={
                "application/json": ResponseSerializer(),
                "application/vnd.elasticsearch+json": ResponseSerializer(),
            },
            request_timeout=config.request_timeout_s,
            # One attempt per host: a refused connection moves on to the next host at once;
            # everything else (429, 503, timeouts) is retried by the sink's own policy.
            max_retries=max(0, len(config.hosts) - 1),
            retry_on_status=(),
            retry_on_timeout=False,
        )
        self.major: int | None = None
        self.version = ""

    async def close(self) -> None:
        await self._client.close()

    async def connect(self) -> int:
        """Reads the cluster's version; raises RequestFailed or UnsupportedCluster."""
        body = await self.request("GET", "/", major=8)
        version = str(((body or {}).get("version") or {}).get("number", ""))
        try:
            major = int(version.split(".")[0])
        except ValueError:
            raise UnsupportedCluster(f"the cluster reports no version ({version!r})") from None
        if major not in SUPPORTED_MAJORS:
            raise UnsupportedCluster(f"Elasticsearch {version} is not supported (8.x or 9.x)")
        self.major = major
        self.version = version
        return major

    async def bulk(self, parts: Sequence[bytes]) -> Mapping[str, Any]:
        """POST /_bulk of the parts concatenated (whole entries: blocks from the buffer)."""
        encoding = None
        if self._config.compression:
            # zlib releases the GIL: in a thread, compression runs beside the event loop.
            body = await asyncio.to_thread(gzip_parts, parts)
            encoding = "gzip"
        else:
            body = parts[0] if len(parts) == 1 else b"".join(parts)
        result = await self.request(
            "POST",
            "/_bulk",
            body=body,
            content_type="x-ndjson",
            timeout_s=None,
            content_encoding=encoding,
            params=BULK_PARAMS,
        )
        return result  # type: ignore[no-any-return]

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "json",
        major: int | None = None,
        timeout_s: float | None = None,
        content_encoding: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        major = major or self.major or 8
        headers = {"accept": _media_type("json", major)}
        if self._config.compression:
            headers["accept-encoding"] = "gzip"
        if body is not None:
            headers["content-type"] = _media_type(content_type, major)
        if content_encoding is not None:
            headers["content-encoding"] = content_encoding
        try:
            response = await self._client.perform_request(
                method, path, params=params, headers=headers, body=body
            )
        except ApiError as exc:
            raise RequestFailed(_describe_api_error(exc), exc.meta.status) from exc
        except UnsupportedProductError as exc:
            raise UnsupportedCluster(
                f"the server at {self._config.hosts} is not Elasticsearch"
            ) from exc
        except TlsError as exc:
            raise RequestFailed(f"TLS failure talking to Elasticsearch: {exc}", None) from exc
        except (TimeoutError, TransportConnectionError, ConnectionTimeout) as exc:
            cause = exc.__context__
            if isinstance(cause, aiohttp.ServerFingerprintMismatch):
                # The transport reports only "Connection error"; say what really happened.
                got = cause.got.hex(":").upper()
                raise RequestFailed(
                    "TLS failure talking to Elasticsearch: the server's certificate does not "
                    "match elasticsearch.ssl_assert_fingerprint (the server's SHA-256 "
                    f"fingerprint is {got})",
                    None,
                ) from exc
            hint = ""
            if (
                isinstance(cause, aiohttp.ServerDisconnectedError)
                and self._uses_tls
                and self._config.client_cert is None
            ):
                # A cluster that requires client certificates hangs up right after the TLS
                # handshake (TLS 1.3 sends the refusal after it): say so, as one possible cause.
                hint = (
                    " (the server closed the connection; a cluster that requires client "
                    "certificates does that: see elasticsearch.client_cert)"
                )
            raise RequestFailed(f"Elasticsearch unreachable: {exc}{hint}", None) from exc
        return response.body


def _describe_api_error(exc: ApiError) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            return f"HTTP {exc.meta.status} {error.get('type')}: {error.get('reason')}"
    return f"HTTP {exc.meta.status}: {str(body)[:300]}"
