"""pytest fixtures: an in-process EsTestServer per test, or a real cluster via SHIPPER_TEST_ES_URL.

Import into a conftest: ``from tests.es_server.fixtures import es_server, es_server_8, es_server_9``.
Against a real cluster the fixture yields a ``RealCluster`` with the same ``url`` / ``probe``
surface; tests that need ``faults`` or ``documents()`` call ``require_fault_injection(server)``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from .app import EsTestServer
from .probe import Probe

ENV_URL = "SHIPPER_TEST_ES_URL"


class RealCluster:
    """A real cluster given by URL (credentials may be in the URL's userinfo)."""

    is_real = True

    def __init__(self, url: str) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        auth = (parts.username or "", parts.password or "") if parts.username else None
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        self.url = f"{parts.scheme}://{netloc}"
        self.basic_auth = auth
        self._probe = Probe(self.url, basic_auth=auth, verify_certs=False)

    def probe(self, **kwargs: Any) -> Probe:
        return self._probe

    @property
    def faults(self) -> Any:
        pytest.skip("fault injection needs the in-process test server")


def require_fault_injection(server: Any) -> EsTestServer:
    if getattr(server, "is_real", False):
        pytest.skip("fault injection needs the in-process test server")
    assert isinstance(server, EsTestServer)
    return server


async def _serve(major: int) -> AsyncIterator[Any]:
    real = os.environ.get(ENV_URL)
    if real:
        yield RealCluster(real)
        return
    server = EsTestServer(major)
    await server.start(0)
    try:
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture
async def es_server() -> AsyncIterator[Any]:
    async for server in _serve(int(os.environ.get("SHIPPER_TEST_ES_MAJOR", "9"))):
        yield server


@pytest_asyncio.fixture
async def es_server_8() -> AsyncIterator[Any]:
    async for server in _serve(8):
        yield server


@pytest_asyncio.fixture
async def es_server_9() -> AsyncIterator[Any]:
    async for server in _serve(9):
        yield server
