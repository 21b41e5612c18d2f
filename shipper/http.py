"""The operator's HTTP endpoints: /metrics (Prometheus), /healthz (alive), /readyz (useful).

/healthz answers from the event loop itself, so a blocked or dead loop fails the probe.
/readyz says whether the shipper can do its job right now: Docker API reachable and the
output accepting writes, with the reason in the body when not.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shipper.telemetry import REGISTRY

ReadinessCheck = Callable[[], list[str]]  # the reasons it is not ready; empty when ready


def build_app(readiness: ReadinessCheck) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        problems = readiness()
        if problems:
            return web.Response(
                status=503, text="not ready\n" + "".join(f"- {p}\n" for p in problems)
            )
        return web.Response(text="ready\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


class HttpServer:
    def __init__(self, listen: str, readiness: ReadinessCheck) -> None:
        host, _, port = listen.rpartition(":")
        self._host = host.strip("[]") or "0.0.0.0"
        self._port = int(port)
        self._runner = web.AppRunner(build_app(readiness), access_log=None)
        self.port: int | None = None

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._port

    async def stop(self) -> None:
        await self._runner.cleanup()
