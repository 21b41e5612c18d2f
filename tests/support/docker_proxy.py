"""A recording reverse proxy in front of the Docker socket, to audit what the shipper asks."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
from aiohttp import web

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"}


class RecordingDockerProxy:
    def __init__(
        self,
        socket_path: Path | None,
        upstream: str = "/var/run/docker.sock",
        *,
        tcp_port: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Listens on a unix socket, or on 127.0.0.1:tcp_port (with TLS if given a context)."""
        self.socket_path = socket_path
        self.tcp_port = tcp_port
        self.ssl_context = ssl_context
        self.upstream = upstream
        self.requests: list[tuple[str, str]] = []  # (method, path without query)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        if self.tcp_port is not None:
            return f"tcp://127.0.0.1:{self.tcp_port}"
        return f"unix://{self.socket_path}"

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=self.upstream, limit=0),
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=False,
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        # A forwarded event stream only notices its client left when dockerd next sends
        # something; do not let cleanup wait aiohttp's default 60 s for it.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        if self.tcp_port is not None:
            site: web.BaseSite = web.TCPSite(
                self._runner, "127.0.0.1", self.tcp_port, ssl_context=self.ssl_context
            )
        else:
            site = web.UnixSite(self._runner, str(self.socket_path))
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self._session.request(
            request.method,
            "http://docker" + request.path_qs,
            headers=headers,
            data=body or None,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status)
            for key, value in upstream.headers.items():
                if key.lower() not in _HOP_BY_HOP:
                    response.headers[key] = value
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (ConnectionResetError, aiohttp.ClientError):
                pass
            return response
