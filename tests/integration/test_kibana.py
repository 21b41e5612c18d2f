"""Kibana setup against a tiny fake Kibana: the exact requests, idempotence, retries."""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from shipper import telemetry
from shipper.config import KibanaConfig
from shipper.errors import ConfigError
from shipper.sinks.kibana import KibanaSetup


class FakeKibana:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.views: dict[str, Any] = {}
        self.unavailable = 0  # answer 503 this many times first
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        self.requests.append((request.method, request.path, dict(request.headers), body))
        if self.unavailable:
            self.unavailable -= 1
            return web.json_response({"message": "Kibana server is not ready yet"}, status=503)
        if (
            request.headers.get("Authorization")
            != "Basic " + base64.b64encode(b"elastic:pw").decode()
        ):
            return web.json_response({"statusCode": 401}, status=401)
        if request.method == "GET":
            view_id = request.match_info["id"]
            if view_id in self.views:
                return web.json_response({"data_view": self.views[view_id]})
            return web.json_response({"statusCode": 404}, status=404)
        if request.headers.get("kbn-xsrf") is None:
            return web.json_response({"message": "Request must contain a kbn-xsrf header."}, 400)
        view = body["data_view"]
        self.views[view["id"]] = view
        return web.json_response({"data_view": view})

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        app = web.Application()
        app.router.add_get("/api/data_views/data_view/{id}", self.handle)
        app.router.add_post("/api/data_views/data_view", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest_asyncio.fixture
async def kibana() -> AsyncIterator[FakeKibana]:
    fake = FakeKibana()
    await fake.start()
    yield fake
    await fake.stop()


def config(url: str, **extra: Any) -> KibanaConfig:
    return KibanaConfig(url=url, username="elastic", password="pw", **extra)


async def test_creates_the_data_view_once(kibana: FakeKibana) -> None:
    setup = KibanaSetup(config(kibana.url))
    await asyncio.wait_for(setup.run(), 10)
    assert setup.done
    (get, post) = kibana.requests
    assert (get[0], get[1]) == ("GET", "/api/data_views/data_view/shipper-logs")
    assert (post[0], post[1]) == ("POST", "/api/data_views/data_view")
    assert post[2]["kbn-xsrf"]
    assert post[2]["Content-Type"].startswith("application/json")
    assert post[3] == {
        "data_view": {
            "id": "shipper-logs",
            "name": "Docker logs (shipper)",
            "title": "logs-*",
            "timeFieldName": "@timestamp",
        }
    }
    # A second start (or another node) finds it and changes nothing.
    await asyncio.wait_for(KibanaSetup(config(kibana.url)).run(), 10)
    assert [r[0] for r in kibana.requests] == ["GET", "POST", "GET"]


async def test_waits_for_kibana_to_come_up(kibana: FakeKibana) -> None:
    kibana.unavailable = 2
    setup = KibanaSetup(config(kibana.url, data_view_pattern="logs-docker-*"), max_backoff_s=0.1)
    await asyncio.wait_for(setup.run(), 10)
    assert setup.done
    assert kibana.views["shipper-logs"]["title"] == "logs-docker-*"


async def test_refusal_is_logged_not_retried(
    kibana: FakeKibana, caplog: pytest.LogCaptureFixture
) -> None:
    setup = KibanaSetup(KibanaConfig(url=kibana.url, username="elastic", password="wrong"))
    await asyncio.wait_for(setup.run(), 10)
    assert not setup.done
    assert len(kibana.requests) == 1
    assert "Kibana refused" in caplog.text


TLS_OFF = (
    "TLS CERTIFICATE VERIFICATION IS OFF (kibana.verify_certs: false): anyone between the "
    "shipper and Kibana can read and change the requests and the credentials. Use "
    "kibana.ca_certs instead."
)


@pytest_asyncio.fixture
async def tls_kibana(tmp_path: Path) -> AsyncIterator[tuple[FakeKibana, str]]:
    """A fake Kibana on https with a certificate of a test CA; yields it and the CA file."""
    import trustme

    ca = trustme.CA()
    ca_file = tmp_path / "kibana-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    fake = FakeKibana()
    await fake.start(context)
    yield fake, str(ca_file)
    await fake.stop()


@pytest.fixture
def fresh_log_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    # Errors are logged once per kind per 30 s in a process: start each test with none seen.
    monkeypatch.setattr(telemetry, "rate_limited", telemetry.RateLimitedLog())


def _tls_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "TLS CERTIFICATE VERIFICATION" in r.getMessage()]


async def test_verification_off_works_and_is_logged_as_an_error(
    tls_kibana: tuple[FakeKibana, str],
    caplog: pytest.LogCaptureFixture,
    fresh_log_limits: None,
) -> None:
    kibana, _ = tls_kibana
    setup = KibanaSetup(config(kibana.url, verify_certs=False))
    (warning,) = _tls_warnings(caplog)  # at construction, i.e. at every start
    assert (warning.levelno, warning.getMessage()) == (logging.ERROR, TLS_OFF)
    assert warning.fields == {"url": kibana.url}  # type: ignore[attr-defined]
    await asyncio.wait_for(setup.run(), 10)
    assert setup.done
    assert list(kibana.views) == ["shipper-logs"]


async def test_a_ca_bundle_verifies_kibana_without_a_warning(
    tls_kibana: tuple[FakeKibana, str],
    caplog: pytest.LogCaptureFixture,
    fresh_log_limits: None,
) -> None:
    kibana, ca_file = tls_kibana
    setup = KibanaSetup(config(kibana.url, ca_certs=ca_file))
    await asyncio.wait_for(setup.run(), 10)
    assert setup.done
    assert _tls_warnings(caplog) == []


def test_verification_off_over_plain_http_warns_about_nothing(
    caplog: pytest.LogCaptureFixture, fresh_log_limits: None
) -> None:
    KibanaSetup(config("http://kibana:5601", verify_certs=False))
    assert _tls_warnings(caplog) == []


def test_an_unusable_ca_bundle_fails_the_start_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        KibanaSetup(config("https://kibana:5601", ca_certs=str(tmp_path / "missing.pem")))
    assert str(caught.value) == (
        f"kibana.ca_certs: cannot read '{tmp_path / 'missing.pem'}': No such file or directory"
    )
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError) as caught:
        KibanaSetup(config("https://kibana:5601", ca_certs=str(garbage)))
    assert str(caught.value) == (
        f"kibana.ca_certs: '{garbage}' holds no PEM certificate (NO_CERTIFICATE_OR_CRL_FOUND)"
    )
