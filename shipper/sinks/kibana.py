"""Optional Kibana setup: a data view over the shipper's data streams, so logs show at once.

Idempotent: the data view has a fixed id (`kibana.data_view_id`); if Kibana already has it
(made by an earlier start, another shipper node, or a user), nothing is changed. Kibana is
often still starting when the shipper starts, so this retries in the background with capped
backoff until it succeeds or Kibana answers with an error no retry can fix; it never stops
the shipper and never delays shipping.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from typing import Any

import aiohttp

from shipper import events
from shipper.backoff import Backoff
from shipper.config import KibanaConfig
from shipper.errors import ConfigError
from shipper.sinks.elasticsearch.secrets import read_secret


class KibanaRefused(Exception):
    """Kibana answered with an error that a retry will not fix."""


def data_view_request(config: KibanaConfig) -> dict[str, Any]:
    return {
        "data_view": {
            "id": config.data_view_id,
            "name": config.data_view_name,
            "title": config.data_view_pattern,
            "timeFieldName": "@timestamp",
        }
    }


def _headers(config: KibanaConfig) -> dict[str, str]:
    headers = {"kbn-xsrf": "shipper", "Content-Type": "application/json"}
    api_key = read_secret(config.api_key, config.api_key_file, "kibana.api_key_file")
    password = read_secret(config.password, config.password_file, "kibana.password_file")
    if api_key:
        headers["Authorization"] = f"ApiKey {api_key}"
    elif config.username is not None:
        pair = f"{config.username}:{password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    return headers


def _ssl(config: KibanaConfig) -> ssl.SSLContext | bool:
    if not config.verify_certs:
        return False
    if not config.ca_certs:
        return True
    try:
        return ssl.create_default_context(cafile=config.ca_certs)
    except ssl.SSLError as exc:  # before OSError: it is one
        raise ConfigError(
            "kibana.ca_certs", f"{config.ca_certs!r} holds no PEM certificate ({exc.reason or exc})"
        ) from None
    except OSError as exc:
        # Checked here, not at the first request: there an OSError is retried for ever as
        # "Kibana is not reachable yet".
        raise ConfigError(
            "kibana.ca_certs", f"cannot read {config.ca_certs!r}: {exc.strerror or exc}"
        ) from None


class KibanaSetup:
    """Reads credentials and the CA bundle at construction (so a bad file fails the start,
    exit 2), and warns then if certificate verification is off."""

    def __init__(self, config: KibanaConfig, *, max_backoff_s: float = 30.0) -> None:
        assert config.url is not None
        self._config = config
        self._base = config.url.rstrip("/")
        self._headers = _headers(config)
        self._ssl = _ssl(config)
        self._max_backoff_s = max_backoff_s
        self.done = False
        if self._base.startswith("https://") and not config.verify_certs:
            # As loud as the Elasticsearch side: the Kibana credentials travel on this link.
            events.kibana.tls_verification_off(url=self._base)

    async def ensure_data_view(self) -> bool:
        """One attempt: True if the data view exists now (created or already there)."""
        config = self._config
        connector = aiohttp.TCPConnector(ssl=self._ssl)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=self._headers
        ) as session:
            url = f"{self._base}/api/data_views/data_view/{config.data_view_id}"
            async with session.get(url) as response:
                if response.status == 200:
                    return False
                if response.status != 404:
                    await self._raise(response, "GET")
            async with session.post(
                f"{self._base}/api/data_views/data_view", json=data_view_request(config)
            ) as response:
                if response.status == 200:
                    return True
                text = await response.text()
                if response.status in (400, 409) and "Duplicate" in text:
                    return False  # another shipper made it in the meantime
                await self._raise(response, "POST", text)
        return False  # pragma: no cover - _raise always raises

    async def run(self) -> None:
        """Retries until done; logs the outcome. Never raises (but on cancellation)."""
        backoff = Backoff(base_s=1.0, cap_s=self._max_backoff_s)
        while True:
            try:
                created = await self.ensure_data_view()
            except KibanaRefused as exc:
                events.kibana.refused(error=exc)
                return
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                delay = backoff.next_delay_s()
                events.kibana.unavailable(error=exc, delay_s=delay)
                await asyncio.sleep(delay)
                continue
            self.done = True
            events.kibana.data_view_ready(
                created=created,
                data_view=self._config.data_view_id,
                pattern=self._config.data_view_pattern,
            )
            return

    async def _raise(self, response: aiohttp.ClientResponse, method: str, text: str = "") -> None:
        text = text or await response.text()
        if response.status in (408, 429) or response.status >= 500:
            raise aiohttp.ClientResponseError(
                response.request_info, (), status=response.status, message=text[:200]
            )
        raise KibanaRefused(f"{method} {response.url.path}: HTTP {response.status} {text[:300]}")
