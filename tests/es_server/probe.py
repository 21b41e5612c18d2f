"""Inspect a cluster over plain HTTP, identically against the test server and real Elasticsearch.

``fetch_all`` pages with a point in time, ``sort: [_shard_doc]`` and ``search_after`` (≤10000
per page), which is the only exhaustive, stable ordering real ES offers without sorting on _id.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDictProxy

PAGE_SIZE = 10000
JSON_TYPES = {
    "application/json",
    "application/vnd.elasticsearch+json",
}


@dataclass(frozen=True)
class Response:
    status: int
    body: Any  # parsed JSON, raw bytes for anything else, None when empty
    headers: CIMultiDictProxy[str]  # case-insensitive, like HTTP: real ES sends lowercase names
    raw: bytes = b""  # the body as it came (inflated)


class ProbeError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class Probe:
    def __init__(
        self,
        url: str,
        *,
        basic_auth: tuple[str, str] | None = None,
        api_key: tuple[str, str] | str | None = None,
        ca_file: str | None = None,
        verify_certs: bool = True,
        client_cert: str | None = None,
    ) -> None:
        """`client_cert`: a PEM file with the certificate and its key, for servers that
        require one (mutual TLS)."""
        self.url = url.rstrip("/")
        self.headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if basic_auth is not None:
            token = base64.b64encode(f"{basic_auth[0]}:{basic_auth[1]}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"
        if isinstance(api_key, str):  # the "encoded" form the create API key API returns
            self.headers["Authorization"] = f"ApiKey {api_key}"
        elif api_key is not None:
            token = base64.b64encode(f"{api_key[0]}:{api_key[1]}".encode()).decode()
            self.headers["Authorization"] = f"ApiKey {token}"
        self._ssl: ssl.SSLContext | bool = True
        if ca_file is not None:
            self._ssl = ssl.create_default_context(cafile=ca_file)
        elif not verify_certs:
            self._ssl = False
        if client_cert is not None:
            if not isinstance(self._ssl, ssl.SSLContext):
                self._ssl = ssl.create_default_context()
            self._ssl.load_cert_chain(client_cert)

    async def __aenter__(self) -> Probe:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def request(
        self, method: str, path: str, body: Any = None, *, ok: tuple[int, ...] = (200,)
    ) -> tuple[int, Any]:
        data = None if body is None else orjson.dumps(body)
        async with (
            aiohttp.ClientSession(headers=self.headers) as session,
            session.request(method, self.url + path, data=data, ssl=self._ssl) as resp,
        ):
            raw = await resp.read()
            parsed = orjson.loads(raw) if raw else None
            if resp.status not in ok:
                raise ProbeError(resp.status, parsed)
            return resp.status, parsed

    async def send(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """A raw request (bytes in, any status out) with this probe's credentials and TLS."""
        async with (
            aiohttp.ClientSession(headers=self.headers, auto_decompress=True) as session,
            session.request(
                method, self.url + path, data=data, headers=headers, ssl=self._ssl
            ) as resp,
        ):
            raw = await resp.read()
            body: Any = raw
            if raw and resp.content_type in JSON_TYPES:
                body = orjson.loads(raw)
            elif not raw:
                body = None
            return Response(resp.status, body, resp.headers, raw)

    async def refresh(self, index: str) -> None:
        await self.request("POST", f"/{index}/_refresh?ignore_unavailable=true")

    async def count(self, index: str, query: dict[str, Any] | None = None) -> int:
        """Documents in ``index`` after a refresh (0 if it does not exist)."""
        await self.refresh(index)
        _, body = await self.request(
            "POST", f"/{index}/_count?ignore_unavailable=true", {"query": query} if query else None
        )
        return int(body["count"])

    async def search_hits(
        self, index: str, query: dict[str, Any], size: int
    ) -> list[dict[str, Any]]:
        """Up to ``size`` (≤10000) matching documents after a refresh: two requests, where
        ``fetch_all`` needs five and a snapshot of the whole index (cheap polling)."""
        await self.refresh(index)
        _, body = await self.request(
            "POST",
            f"/{index}/_search?ignore_unavailable=true",
            {"query": query, "size": size, "track_total_hits": False},
        )
        return [
            {"_index": h["_index"], "_id": h["_id"], "_source": h["_source"]}
            for h in body["hits"]["hits"]
        ]

    async def fetch_all(
        self, index: str, query: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Every document as ``{"_index", "_id", "_source"}``, in a stable order."""
        await self.refresh(index)
        status, _ = await self.request("HEAD", f"/{index}", ok=(200, 404))
        if status == 404:
            return []
        _, pit = await self.request("POST", f"/{index}/_pit?keep_alive=1m")
        pit_id = pit["id"]
        out: list[dict[str, Any]] = []
        after: list[Any] | None = None
        try:
            while True:
                body: dict[str, Any] = {
                    "size": PAGE_SIZE,
                    "pit": {"id": pit_id, "keep_alive": "1m"},
                    "sort": [{"_shard_doc": "asc"}],
                    "track_total_hits": False,
                }
                if query:
                    body["query"] = query
                if after is not None:
                    body["search_after"] = after
                _, page = await self.request("POST", "/_search", body)
                pit_id = page.get("pit_id", pit_id)
                hits = page["hits"]["hits"]
                out += [
                    {"_index": h["_index"], "_id": h["_id"], "_source": h["_source"]} for h in hits
                ]
                if len(hits) < PAGE_SIZE:
                    break
                after = hits[-1]["sort"]
        finally:
            await self.request("DELETE", "/_pit", {"id": pit_id}, ok=(200, 404))
        return out

    async def delete_data_stream(self, name: str) -> None:
        await self.request("DELETE", f"/_data_stream/{name}", ok=(200, 404))

    async def wait_for_count(self, index: str, n: int, timeout_s: float = 30.0) -> int:
        """Poll until ``index`` holds at least ``n`` documents; returns the last count seen."""
        deadline = time.monotonic() + timeout_s
        last = -1
        while True:
            last = await self.count(index)
            if last >= n:
                return last
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{index} has {last} documents, expected {n}")
            await asyncio.sleep(0.1)
