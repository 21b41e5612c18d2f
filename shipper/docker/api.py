"""Async, read-only client of the Docker Engine API over the unix socket or TCP (+TLS).

Only GET requests exist here, on purpose: the shipper must never change anything on the
host it watches, and keeping write calls out of the client makes that easy to audit.

The connector has no connection limit: every followed container holds one streaming
request open for as long as it runs, so a pool cap would silently cap how many containers
are followed.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from shipper.docker.engine import DOCKER, keeps_no_logs, logs_request
from shipper.docker.versions import (
    AUTO,
    ApiVersion,
    EngineVersions,
    VersionMismatch,
    choose,
    refused_version,
)
from shipper.errors import ConfigError, PermanentError, TransientError
from shipper.model import ContainerMeta

CHUNK_BYTES = 256 * 1024
# After a chunk smaller than this, a log stream's socket is not read for COALESCE_PAUSE_S.
# dockerd writes every message of a followed container to the socket by itself, so reading
# whatever has arrived takes a few messages per read, and each read (an event-loop wakeup,
# a chunk through aiohttp and the follower) costs more than parsing them: measured with a
# container writing 2 M lines, 4.7 CPU-s per million lines for a reader that does nothing
# else, 1.5 with the pause, and the shipper's CPU per line fell by a fifth. 1 ms (libuv's
# timer step) lets ~100-200 messages gather; several ms let the socket fill (a unix socket
# charges each small write a whole buffer) and dockerd waits: slower, not cheaper. A chunk
# this large says the reader is behind: it goes on reading at once.
COALESCE_PAUSE_S = 0.001
COALESCE_BELOW_BYTES = 32 * 1024


class DockerError(TransientError):
    """The Docker API could not do what was asked, for now: retried with backoff."""


class DockerUnavailable(DockerError):
    """The daemon cannot be reached (socket missing, refused, restarting)."""


class DockerRequestFailed(DockerError):
    """The daemon answered, with an error status: it is there, but did not do it."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ApiVersionRefused(DockerRequestFailed):
    """No Engine API version both sides accept, or the engine refused the one spoken: an
    error to fix (upgrade, or docker.api_version), not a lost daemon. The message says which
    versions and what to do."""


class ContainerGone(PermanentError):
    """The container no longer exists (404)."""


class LogsNotReadable(PermanentError):
    """The container's log driver keeps no readable logs (e.g. `none`, or no dual logging)."""


@dataclass(frozen=True, slots=True)
class ContainerEvent:
    action: str  # start, die, destroy, rename, ...
    container_id: str
    time_ns: int
    attributes: Mapping[str, str]


def parse_container(inspect: Mapping[str, Any], runtime: str = DOCKER) -> ContainerMeta:
    """`GET /containers/{id}/json` → ContainerMeta of a container of `runtime` (docker, podman)."""
    config = inspect.get("Config") or {}
    host_config = inspect.get("HostConfig") or {}
    log_config = host_config.get("LogConfig") or {}
    state = inspect.get("State") or {}
    env: dict[str, str] = {}
    for item in config.get("Env") or ():
        key, _, value = str(item).partition("=")
        env[key] = value
    return ContainerMeta(
        id=inspect["Id"],
        name=str(inspect.get("Name") or "").lstrip("/"),
        image=str(config.get("Image") or ""),
        image_id=str(inspect.get("Image") or ""),
        labels={str(k): str(v) for k, v in (config.get("Labels") or {}).items()},
        tty=bool(config.get("Tty")),
        log_driver=str(log_config.get("Type") or ""),
        log_path=str(inspect.get("LogPath") or ""),
        log_opts={str(k): str(v) for k, v in (log_config.get("Config") or {}).items()},
        env=env,
        created=str(inspect.get("Created") or ""),
        running=bool(state.get("Running")),
        started_at=str(state.get("StartedAt") or ""),
        runtime=runtime,
    )


class DockerClient:
    """The few read-only Engine API calls the shipper needs."""

    def __init__(
        self,
        host: str,
        *,
        api_version: str = AUTO,
        pinned_by: str = "docker.api_version",
        tls_verify: bool = False,
        cert_path: str | None = None,
    ) -> None:
        """`api_version`: `auto` (negotiate, see shipper.docker.versions) or one to pin;
        `pinned_by` names where a pinned one came from, for the error messages."""
        self._host = host
        self._pinned = None if api_version == AUTO else ApiVersion.parse(api_version)
        self._pinned_by = pinned_by
        # The version spoken; None until negotiated, and again after the engine refused it.
        self._version: ApiVersion | None = None
        self._negotiating: asyncio.Lock | None = None
        # What the engine said at negotiation, which engine it is (Docker, Podman) included.
        self.engine: EngineVersions | None = None
        connector: aiohttp.BaseConnector
        if host.startswith("unix://"):
            self._base_url = "http://docker"
            connector = aiohttp.UnixConnector(path=host[len("unix://") :], limit=0)
        else:
            address = host.split("://", 1)[1].rstrip("/")
            use_tls = tls_verify or bool(cert_path) or host.startswith("https://")
            self._base_url = f"{'https' if use_tls else 'http'}://{address}"
            ssl_context = tls_context(tls_verify, cert_path) if use_tls else False
            connector = aiohttp.TCPConnector(limit=0, ssl=ssl_context)
        # No total timeout: log and event streams stay open for as long as containers run.
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
        )
        # Log streams are asked for over HTTP/1.0. Over 1.1 dockerd sends every log message
        # as a chunk of its own (it flushes per message), and undoing that framing was the
        # costliest part of reading a busy container; over 1.0 the body is the bare stream,
        # ended by the connection's close (a stream holds its connection anyway).
        self._stream_session = aiohttp.ClientSession(
            connector=connector,
            connector_owner=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
            version=aiohttp.HttpVersion10,
        )

    async def close(self) -> None:
        await self._stream_session.close()
        await self._session.close()

    async def ping(self) -> bool:
        try:
            async with self._get("/_ping", timeout_s=5, versioned=False) as response:
                return response.status == 200
        except DockerUnavailable:
            return False

    async def version(self) -> dict[str, Any]:
        return await self._get_json("/version", versioned=False)  # type: ignore[no-any-return]

    @property
    def api_version(self) -> ApiVersion | None:
        """The version spoken, None while not (yet) negotiated."""
        return self._version

    async def negotiate(self) -> ApiVersion:
        """Asks the engine (`GET /version`, unversioned) which API versions it serves, and
        picks the one to speak from now on. Called at every (re)connection (a daemon
        restart is often an upgrade), and by the first request that finds none chosen.

        Raises ApiVersionRefused when no version fits (the message says what to do), and
        DockerUnavailable / DockerRequestFailed when the engine cannot be asked."""
        body = await self.version()
        try:
            engine = EngineVersions.from_version(body)
        except ValueError as exc:
            raise DockerRequestFailed(f"GET /version: {exc}", 200) from None
        self.engine = engine
        try:
            self._version = choose(engine, self._pinned, self._pinned_by)
        except VersionMismatch as exc:
            self._version = None
            raise ApiVersionRefused(str(exc), 400) from None
        return self._version

    async def _prefix(self) -> str:
        # A pinned version is spoken without asking, as the docker CLI does with
        # DOCKER_API_VERSION; discovery still checks it against the engine at each connection.
        version = self._version or self._pinned
        if version is None:
            if self._negotiating is None:
                self._negotiating = asyncio.Lock()
            async with self._negotiating:  # many followers may ask at once: one asks Docker
                version = self._version or await self.negotiate()
        return f"/v{version}"

    def _refused(self, status: int, body: bytes, what: str) -> ApiVersionRefused | None:
        """The engine's own refusal of the version spoken (400 "client version 1.41 is too
        old ..."), as an error that says what to do; forgets the version, so that the next
        request negotiates again (the engine may have been upgraded under us)."""
        if status != 400:
            return None
        message = body[:500].decode("utf-8", "replace")
        refusal = refused_version(message)
        if refusal is None:
            return None
        spoken = self._version
        self._version = None
        if self._pinned is not None:
            advice = f"it is pinned by {self._pinned_by}; set docker.api_version to auto"
        else:
            advice = "the engine changed since the version was negotiated; negotiating again"
        return ApiVersionRefused(
            f"{what}: the Docker Engine refused API {spoken or refusal[0]} ({advice}). "
            f"The engine said: {message.strip()}",
            status,
        )

    async def _runtime(self) -> str:
        """Which engine serves the API (docker, podman), as the last negotiation found it;
        asked now if nothing has been asked yet (a pinned version is spoken unasked)."""
        engine = self.engine
        if engine is None:
            if self._negotiating is None:
                self._negotiating = asyncio.Lock()
            async with self._negotiating:
                if self.engine is None:
                    await self.negotiate()
            engine = self.engine
            assert engine is not None
        return engine.runtime

    async def info(self) -> dict[str, Any]:
        return await self._get_json("/info")  # type: ignore[no-any-return]

    async def list_containers(self, *, all_containers: bool = True) -> list[dict[str, Any]]:
        result = await self._get_json("/containers/json", {"all": "1" if all_containers else "0"})
        return list(result)

    async def inspect(self, container_id: str) -> ContainerMeta:
        runtime = await self._runtime()
        data = await self._get_json(f"/containers/{quote(container_id)}/json")
        return parse_container(data, runtime)

    def event_stream(self, *, since_s: float | None = None) -> EventStream:
        """`async with client.event_stream() as events: async for event in events: ...`

        Entering returns once the daemon has answered, i.e. once we are subscribed, so a
        listing made inside the block cannot miss a container started just before it.
        """
        params = {"filters": orjson.dumps({"type": ["container"]}).decode()}
        if since_s is not None:
            params["since"] = f"{since_s:.9f}"
        return EventStream(self, self._get("/events", params, timeout_s=None))

    async def logs(
        self,
        container_id: str,
        *,
        since_ns: int = 0,
        follow: bool = True,
    ) -> AsyncGenerator[bytes, None]:
        """Raw body chunks of the logs API, starting at `since_ns` (inclusive).

        After a small chunk the socket is left unread for `COALESCE_PAUSE_S` (see there),
        counted from its arrival: the consumer's work on the chunk is part of the pause.
        """
        request = logs_request(
            await self._runtime(), container_id, since_ns=since_ns, follow=follow
        )
        path, params = request.path, request.params
        async with self._get(
            path, params, timeout_s=None, stream=True, versioned=request.versioned
        ) as response:
            if response.status == 404:
                raise ContainerGone(f"container {container_id} no longer exists")
            if response.status == 409:
                # "can not get logs from container which is dead or marked for removal":
                # its logs are going away with it; there is nothing more to follow.
                text = (await response.read())[:300].decode("utf-8", "replace")
                raise ContainerGone(f"container {container_id} is being removed: {text}")
            if response.status != 200:
                body = await response.read()
                what = f"logs of {container_id}"
                text = body[:500].decode("utf-8", "replace")
                if keeps_no_logs(response.status, text):
                    raise LogsNotReadable(f"{what} cannot be read: {text}")
                refused = self._refused(response.status, body, what)
                if refused is not None:
                    raise refused
                raise DockerRequestFailed(f"{what}: HTTP {response.status} {text}", response.status)
            content = response.content
            connection = response.connection
            transport = connection.transport if connection is not None else None
            loop = asyncio.get_running_loop()
            try:
                while chunk := await content.read(CHUNK_BYTES):
                    paused = None
                    if (
                        COALESCE_PAUSE_S
                        and len(chunk) < COALESCE_BELOW_BYTES
                        and transport is not None
                        and transport.is_reading()  # not paused by aiohttp's flow control
                    ):
                        transport.pause_reading()
                        paused = transport
                        resume_at = loop.time() + COALESCE_PAUSE_S
                    try:
                        yield chunk
                        if paused is not None and (remaining := resume_at - loop.time()) > 0:
                            await asyncio.sleep(remaining)
                    finally:
                        if paused is not None and not paused.is_closing():
                            paused.resume_reading()
            except (aiohttp.ClientError, OSError) as exc:
                raise DockerUnavailable(f"log stream of {container_id} broke: {exc}") from exc

    # -- plumbing ------------------------------------------------------------------------------

    async def _get_json(
        self, path: str, params: Mapping[str, str] | None = None, *, versioned: bool = True
    ) -> Any:
        async with self._get(path, params, timeout_s=30, versioned=versioned) as response:
            body = await response.read()
            if response.status == 404:
                raise ContainerGone(f"{path}: not found")
            if response.status != 200:
                refused = self._refused(response.status, body, f"GET {path}")
                if refused is not None:
                    raise refused
                raise DockerRequestFailed(
                    f"GET {path}: HTTP {response.status} {body[:300]!r}", response.status
                )
            return orjson.loads(body)

    def _get(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        timeout_s: float | None,
        stream: bool = False,
        versioned: bool = True,
    ) -> _Request:
        return _Request(self, path, params, timeout_s, stream, versioned)


class EventStream:
    def __init__(self, client: DockerClient, request: _Request) -> None:
        self._client = client
        self._request = request
        self._response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> EventStream:
        self._response = response = await self._request.__aenter__()
        if response.status != 200:
            try:
                body = await response.read()
            except (aiohttp.ClientError, OSError):
                body = b""
            finally:
                await self._request.__aexit__(None, None, None)
            refused = self._client._refused(response.status, body, "GET /events")
            if refused is not None:
                raise refused
            text = body[:300].decode("utf-8", "replace")
            raise DockerRequestFailed(
                f"GET /events: HTTP {response.status} {text}", response.status
            )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._request.__aexit__(*exc_info)

    def __aiter__(self) -> AsyncIterator[ContainerEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[ContainerEvent]:
        assert self._response is not None
        buffer = b""
        try:
            async for chunk in self._response.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        event = _parse_event(orjson.loads(line))
                        if event is not None:
                            yield event
        except (aiohttp.ClientError, OSError) as exc:
            raise DockerUnavailable(f"event stream broke: {exc}") from exc


class _Request:
    """`async with` around one GET that turns connection failures into DockerUnavailable."""

    def __init__(
        self,
        client: DockerClient,
        path: str,
        params: Mapping[str, str] | None,
        timeout_s: float | None,
        stream: bool = False,
        versioned: bool = True,
    ) -> None:
        self._client = client
        self._stream = stream
        self._versioned = versioned
        self._path = path
        self._params = params
        self._timeout_s = timeout_s
        self._response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        client = self._client
        prefix = await client._prefix() if self._versioned else ""
        url = client._base_url + prefix + self._path
        timeout = aiohttp.ClientTimeout(
            total=self._timeout_s,
            sock_connect=10,
            sock_read=None if self._timeout_s is None else self._timeout_s,
        )
        try:
            session = client._stream_session if self._stream else client._session
            self._response = await session.get(url, params=self._params, timeout=timeout)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise DockerUnavailable(f"Docker API at {client._host} unreachable: {exc}") from exc
        return self._response

    async def __aexit__(self, *exc_info: object) -> None:
        if self._response is not None:
            self._response.release()
            self._response.close()


def _parse_event(raw: Mapping[str, Any]) -> ContainerEvent | None:
    if raw.get("Type") != "container":
        return None
    actor = raw.get("Actor") or {}
    container_id = actor.get("ID") or raw.get("id")
    if not container_id:
        return None
    action = str(raw.get("Action") or raw.get("status") or "")
    time_ns = int(raw.get("timeNano") or int(raw.get("time") or 0) * 1_000_000_000)
    attributes = {str(k): str(v) for k, v in (actor.get("Attributes") or {}).items()}
    return ContainerEvent(action, str(container_id), time_ns, attributes)


def tls_context(verify: bool, cert_path: str | None) -> ssl.SSLContext:
    """TLS as the docker CLI does it: ca.pem, cert.pem, key.pem in DOCKER_CERT_PATH."""
    context = ssl.create_default_context()
    if cert_path:
        ca = os.path.join(cert_path, "ca.pem")
        cert = os.path.join(cert_path, "cert.pem")
        key = os.path.join(cert_path, "key.pem")
        try:
            if os.path.exists(ca):
                context.load_verify_locations(cafile=ca)
            if os.path.exists(cert):
                context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("docker.cert_path", f"cannot load TLS files: {exc}") from None
    if not verify:
        # DOCKER_TLS_VERIFY unset with a cert path: TLS without checking the daemon's
        # certificate, exactly what the docker CLI does in that case.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
