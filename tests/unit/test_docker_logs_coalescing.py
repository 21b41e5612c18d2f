"""`DockerClient.logs` lets a busy stream's small writes gather in the socket before reading.

dockerd writes every log message to a followed stream by itself, so a reader that takes
whatever has arrived gets a few messages per read, and each read (a wakeup of the event
loop, a chunk through aiohttp, a pass of the follower) costs more than the messages in it.
After a small chunk the client stops reading the socket for a moment: what dockerd writes
meanwhile arrives as one chunk.

The test talks to a stand-in for the logs endpoint on a unix socket that writes exactly
when the test says, so what arrives in which chunk is decided by the pause, not by timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import client_proto, web

from shipper.docker import api
from shipper.docker.api import DockerClient

pytestmark = pytest.mark.asyncio


class LogsEndpoint:
    """`GET /containers/{id}/logs` whose body is written piece by piece on request."""

    def __init__(self) -> None:
        self.pieces: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.written = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.force_close()  # as dockerd does: the body of an HTTP/1.0 stream ends with it
        await response.prepare(request)
        while (piece := await self.pieces.get()) is not None:
            await response.write(piece)
            self.written.set()
        await response.write_eof()
        return response

    async def write(self, *pieces: bytes) -> None:
        """Writes each piece by itself, with event-loop turns in between (in which a client
        that is reading the socket takes what has arrived)."""
        for piece in pieces:
            self.written.clear()
            await self.pieces.put(piece)
            await self.written.wait()
            for _ in range(20):
                await asyncio.sleep(0)


@pytest.fixture
async def endpoint(tmp_path: Path) -> AsyncIterator[tuple[LogsEndpoint, str]]:
    logs = LogsEndpoint()
    app = web.Application()
    app.router.add_get("/v1.41/containers/{id}/logs", logs.handle)

    async def version(request: web.Request) -> web.Response:
        # The client asks which engine answers before its first logs request.
        return web.json_response({"Version": "20.10.24", "ApiVersion": "1.41"})

    for path in ("/version", "/v1.41/version"):
        app.router.add_get(path, version)
    runner = web.AppRunner(app)
    await runner.setup()
    socket_path = tmp_path / "docker.sock"
    site = web.UnixSite(runner, str(socket_path))
    await site.start()
    try:
        yield logs, f"unix://{socket_path}"
    finally:
        await logs.pieces.put(None)
        await runner.cleanup()


@pytest.fixture
def socket_reads(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """What each read of the client's socket delivered (aiohttp's protocol gets one
    `data_received` per read): the pause must keep the data in the socket, not merely
    delay handing on what was read."""
    reads: list[bytes] = []
    original = client_proto.ResponseHandler.data_received

    def data_received(self: client_proto.ResponseHandler, data: bytes) -> None:
        if data:  # aiohttp calls it with b"" itself, to resume its parser
            reads.append(bytes(data))
        original(self, data)

    monkeypatch.setattr(client_proto.ResponseHandler, "data_received", data_received)
    return reads


async def _chunks_while_writing(
    logs: LogsEndpoint, host: str, groups: list[list[bytes]]
) -> list[bytes]:
    """The chunks a consumer that always waits on `logs()` gets while the endpoint writes
    each group of pieces once the consumer has received everything written before."""
    client = DockerClient(host)
    chunks: list[bytes] = []
    received = asyncio.Event()

    async def consume() -> None:
        async for chunk in client.logs("c1"):
            chunks.append(chunk)
            received.set()

    consumer = asyncio.create_task(consume())
    try:
        expected = b""
        for group in groups:
            await logs.write(*group)
            expected += b"".join(group)
            while b"".join(chunks) != expected:
                received.clear()
                await asyncio.wait_for(received.wait(), timeout=10)
        await logs.pieces.put(None)
        await asyncio.wait_for(consumer, timeout=10)
    finally:
        consumer.cancel()
        await client.close()
    return chunks


async def test_small_writes_after_a_small_chunk_arrive_as_one_chunk(
    endpoint: tuple[LogsEndpoint, str], socket_reads: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    logs, host = endpoint
    # Long enough that the endpoint's writes all land inside it, even on a loaded machine.
    monkeypatch.setattr(api, "COALESCE_PAUSE_S", 0.2)
    chunks = await _chunks_while_writing(logs, host, [[b"first"], [b"a", b"b", b"c"], [b"d", b"e"]])
    assert chunks == [b"first", b"abc", b"de"]
    assert socket_reads[-2:] == [b"abc", b"de"]


async def test_without_the_pause_each_write_is_its_own_chunk(
    endpoint: tuple[LogsEndpoint, str], socket_reads: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: what the stand-in delivers to a client that reads all the time."""
    logs, host = endpoint
    monkeypatch.setattr(api, "COALESCE_PAUSE_S", 0.0)
    chunks = await _chunks_while_writing(logs, host, [[b"first"], [b"a", b"b", b"c"]])
    assert chunks == [b"first", b"a", b"b", b"c"]
    assert socket_reads[-3:] == [b"a", b"b", b"c"]


async def test_a_large_chunk_is_followed_by_reading_at_once(
    endpoint: tuple[LogsEndpoint, str], socket_reads: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that is behind (its socket full) must not stop: that would stall dockerd."""
    logs, host = endpoint
    monkeypatch.setattr(api, "COALESCE_PAUSE_S", 0.2)
    large = b"x" * 2 * api.COALESCE_BELOW_BYTES
    chunks = await _chunks_while_writing(logs, host, [[large], [b"a", b"b", b"c"]])
    # "a" is read at once after the large chunk; "b" and "c" arrive in the pause after "a".
    assert chunks == [large, b"a", b"bc"]
    assert socket_reads[-2:] == [b"a", b"bc"]
