"""The operator's HTTP endpoints on `metrics.listen`.

- `/metrics`: Prometheus text format.
- `/healthz`: 200 while the process loop is alive. It answers from the event loop itself,
  so a blocked or dead loop fails the probe (use it for liveness / Docker HEALTHCHECK).
- `/readyz`: 200 `ready` when the shipper can do its job right now (its source's runtime
  API reachable: Docker's, or the CRI runtime's; the output accepting writes); otherwise 503 `not ready` with one `- reason` line each
  (use it for readiness).
- `/status`: JSON for `shipper status`: buffer, per-container checkpoints and lag, dead
  letters, readiness (see `shipper.commands.status` for the fields).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shipper.telemetry import REGISTRY

ReadinessCheck = Callable[[], list[str]]  # the reasons it is not ready; empty when ready
StatusReport = Callable[[], dict[str, Any]]


def build_app(readiness: ReadinessCheck, status: StatusReport | None = None) -> web.Application:
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

    async def status_json(_: web.Request) -> web.Response:
        report = status() if status is not None else {}
        report = {**report, "ready": not readiness(), "not_ready_reasons": readiness()}
        return web.Response(
            body=orjson.dumps(report, option=orjson.OPT_INDENT_2),
            content_type="application/json",
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", status_json)
    return app


class HttpServer:
    def __init__(
        self, listen: str, readiness: ReadinessCheck, status: StatusReport | None = None
    ) -> None:
        host, _, port = listen.rpartition(":")
        self._host = host.strip("[]") or "0.0.0.0"
        self._port = int(port)
        # Every handler here answers at once; a scrape still in flight at exit gets 2 s,
        # not aiohttp's default 60 s, so `docker stop` is not held up by a slow scraper.
        self._runner = web.AppRunner(
            build_app(readiness, status), access_log=None, shutdown_timeout=2.0
        )
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
