"""pytest fixtures: the Elasticsearch every test talks to, in process or a real cluster.

By default each test gets its own in-process ``EsTestServer`` (empty, with fault injection).
With ``SHIPPER_TEST_ES_URL`` set, the same tests run against that cluster instead::

    SHIPPER_TEST_ES_URL=https://elastic:secret@localhost:9200  # user:password@ is optional;
                                                               # percent-encode special characters
    SHIPPER_TEST_ES_API_KEY=<encoded>   # instead of user:password: the "encoded" value that
                                        # POST /_security/api_key returns
    SHIPPER_TEST_ES_CA=/path/http_ca.crt  # CA bundle (PEM) for https, e.g. the docker image's
                                          # config/certs/http_ca.crt
    SHIPPER_TEST_ES_VERIFY=0            # https without certificate verification (default: verify)
    SHIPPER_TEST_ES_MAJOR=8             # in process only: the major ``es_server`` emulates (9)

What a test may use:

* on both: ``url``, ``probe()`` (HTTP with the right credentials and TLS), ``shipper_config()``
  (the shipper's ``elasticsearch:`` section: ``hosts``, credentials, ``ca_certs`` or
  ``verify_certs``), ``major``, ``is_real``. ``shipper_es_config(url)`` gives the same section from
  just a URL, for code that only has ``es_server.url``.
* in process only: everything else (``faults``, ``stats``, ``store``, ``documents()``,
  ``stop()``/``start()``, ``refuse_connections()``, ``running``, ...). A test that needs them is
  marked ``@pytest.mark.es_in_process`` (skipped before it starts when a real cluster is used) or
  calls ``require_fault_injection(es_server)`` before it does anything. As a safety net, touching
  such an attribute on a real cluster skips the test at that point.
* ``es_server_8`` / ``es_server_9`` use the real cluster only when its major version matches, and
  skip otherwise; ``es_server`` takes the real cluster whatever its version.

Against a real cluster the data streams (with their failure stores), indices, index and component
templates, ILM policies and ingest pipelines a test created are deleted after it; nothing that
existed before the test is touched. The tests
assume a single-node cluster, like the official docker image (``_shards.successful`` is 1).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import pytest_asyncio

from .app import EsTestServer
from .probe import Probe, ProbeError

ENV_URL = "SHIPPER_TEST_ES_URL"
ENV_API_KEY = "SHIPPER_TEST_ES_API_KEY"
ENV_CA = "SHIPPER_TEST_ES_CA"
ENV_VERIFY = "SHIPPER_TEST_ES_VERIFY"
ENV_MAJOR = "SHIPPER_TEST_ES_MAJOR"
IN_PROCESS_MARK = "es_in_process"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{IN_PROCESS_MARK}: needs the in-process Elasticsearch test server (fault injection, "
        f"stats, stored documents); skipped when {ENV_URL} points at a real cluster",
    )


@dataclass(frozen=True)
class Connection:
    """How to reach the cluster named by the environment (see the module docstring)."""

    url: str
    username: str | None = None
    password: str | None = None
    api_key: str | None = None
    ca_certs: str | None = None
    verify_certs: bool = True

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Connection | None:
        env = dict(os.environ) if env is None else env
        raw = env.get(ENV_URL)
        if not raw:
            return None
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise pytest.UsageError(f"{ENV_URL}={raw!r} is not an http:// or https:// URL")
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if parts.port:
            netloc += f":{parts.port}"
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        api_key = env.get(ENV_API_KEY) or None
        if api_key and username:
            raise pytest.UsageError(f"give user:password in {ENV_URL} or {ENV_API_KEY}, not both")
        verify = env.get(ENV_VERIFY, "1").strip().lower() not in ("0", "false", "no")
        return cls(
            url=f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}",
            username=username,
            password=password if username else None,
            api_key=api_key,
            ca_certs=env.get(ENV_CA) or None,
            verify_certs=verify,
        )

    def shipper_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"hosts": [self.url]}
        if self.username is not None:
            config["username"] = self.username
            config["password"] = self.password or ""
        if self.api_key is not None:
            config["api_key"] = self.api_key
        if self.url.startswith("https:"):
            if not self.verify_certs:
                config["verify_certs"] = False
            elif self.ca_certs is not None:
                config["ca_certs"] = self.ca_certs
        return config

    def probe(self) -> Probe:
        auth = (self.username, self.password or "") if self.username is not None else None
        return Probe(
            self.url,
            basic_auth=auth,
            api_key=self.api_key,
            ca_file=self.ca_certs if self.verify_certs else None,
            verify_certs=self.verify_certs,
        )


def shipper_es_config(url: str) -> dict[str, Any]:
    """The shipper's ``elasticsearch:`` section for writing to ``url``.

    ``{"hosts": [url]}``, plus the credentials and TLS settings from the environment when ``url``
    is the ``SHIPPER_TEST_ES_URL`` cluster (the URL tests get as ``es_server.url``).
    """
    connection = Connection.from_env()
    if connection is not None and url.rstrip("/") == connection.url:
        return connection.shipper_config()
    return {"hosts": [url]}


@dataclass(frozen=True)
class Inventory:
    data_streams: frozenset[str]
    indices: frozenset[str]
    index_templates: frozenset[str]
    component_templates: frozenset[str]
    ilm_policies: frozenset[str]
    pipelines: frozenset[str] = frozenset()


class RealCluster:
    """A real cluster given by the environment, with the part of EsTestServer's surface that
    plain HTTP can offer."""

    is_real = True

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.url = connection.url
        self.version: dict[str, Any] = {}
        self.major = 0

    async def connect(self) -> None:
        try:
            _, info = await self.probe().request("GET", "/")
        except ProbeError as exc:
            hint = " (credentials: user:password@ in the URL, or the API key)" * (exc.status == 401)
            pytest.fail(f"{ENV_URL}={self.url} answers HTTP {exc.status}{hint}: {exc.body}")
        except OSError as exc:  # aiohttp's connection and TLS errors are OSErrors
            pytest.fail(f"{ENV_URL}={self.url} cannot be reached: {exc}")
        self.version = info["version"]
        self.major = int(str(self.version["number"]).split(".")[0])

    def probe(self, **kwargs: Any) -> Probe:
        return self.connection.probe()

    def shipper_config(self) -> dict[str, Any]:
        return self.connection.shipper_config()

    async def inventory(self) -> Inventory:
        probe = self.probe()
        _, resolved = await probe.request("GET", "/_resolve/index/*")
        _, templates = await probe.request("GET", "/_index_template")
        _, components = await probe.request("GET", "/_component_template")
        _, policies = await probe.request("GET", "/_ilm/policy")
        _, pipelines = await probe.request("GET", "/_ingest/pipeline", ok=(200, 404))
        return Inventory(
            data_streams=frozenset(d["name"] for d in resolved["data_streams"]),
            indices=frozenset(i["name"] for i in resolved["indices"] if "data_stream" not in i),
            index_templates=frozenset(t["name"] for t in templates["index_templates"]),
            component_templates=frozenset(c["name"] for c in components["component_templates"]),
            ilm_policies=frozenset(policies),
            pipelines=frozenset(pipelines or ()),
        )

    async def cleanup(self, before: Inventory) -> None:
        """Delete what the test created, in dependency order; what existed before stays."""
        after = await self.inventory()
        probe = self.probe()
        for name in sorted(after.data_streams - before.data_streams):
            await probe.request("DELETE", f"/_data_stream/{name}", ok=(200, 404))
        for name in sorted(after.indices - before.indices):
            await probe.request("DELETE", f"/{name}", ok=(200, 404))
        for name in sorted(after.index_templates - before.index_templates):
            await probe.request("DELETE", f"/_index_template/{name}", ok=(200, 404))
        for name in sorted(after.component_templates - before.component_templates):
            await probe.request("DELETE", f"/_component_template/{name}", ok=(200, 404))
        for name in sorted(after.ilm_policies - before.ilm_policies):
            await probe.request("DELETE", f"/_ilm/policy/{name}", ok=(200, 404))
        # Last: a pipeline that an index names as its default cannot be deleted.
        for name in sorted(after.pipelines - before.pipelines):
            await probe.request("DELETE", f"/_ingest/pipeline/{name}", ok=(200, 404))

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes RealCluster lacks: EsTestServer's in-process surface.
        if name.startswith("_"):
            raise AttributeError(name)
        pytest.skip(f"es_server.{name} needs the in-process test server ({ENV_URL} is set)")


def require_fault_injection(server: Any) -> EsTestServer:
    """Skip unless ``server`` is the in-process test server; returns it, typed."""
    if getattr(server, "is_real", False):
        pytest.skip(f"needs the in-process test server ({ENV_URL} is set)")
    assert isinstance(server, EsTestServer)
    return server


require_in_process = require_fault_injection


async def _serve(request: pytest.FixtureRequest, major: int | None) -> AsyncIterator[Any]:
    connection = Connection.from_env()
    if connection is None:
        server = EsTestServer(major or int(os.environ.get(ENV_MAJOR, "9")))
        await server.start(0)
        try:
            yield server
        finally:
            await server.stop()
        return
    if request.node.get_closest_marker(IN_PROCESS_MARK) is not None:
        pytest.skip(
            f"marked {IN_PROCESS_MARK}: needs the in-process test server ({ENV_URL} is set)"
        )
    cluster = RealCluster(connection)
    await cluster.connect()
    if major is not None and cluster.major != major:
        pytest.skip(f"needs Elasticsearch {major}.x; {ENV_URL} is {cluster.version['number']}")
    before = await cluster.inventory()
    try:
        yield cluster
    finally:
        await cluster.cleanup(before)


@pytest_asyncio.fixture
async def es_server(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    async for server in _serve(request, None):
        yield server


@pytest_asyncio.fixture
async def es_server_8(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    async for server in _serve(request, 8):
        yield server


@pytest_asyncio.fixture
async def es_server_9(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    async for server in _serve(request, 9):
        yield server
