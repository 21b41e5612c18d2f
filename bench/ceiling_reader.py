"""Minimal logs API reader: reads one container's whole log and discards it.

`python -m bench.ceiling_reader <docker-socket> <container-id> [--follow]` prints
`<bytes> <seconds> <cpu seconds> <peak RSS MB> <end time>` (its own CPU: user + system; the
end as a Unix time, for measuring from the container's start).

It is the ceiling the shipper's API mode is compared with: the same request the shipper
makes (timestamps, both streams), as fast as aiohttp can take it, with no parsing. Without
`--follow` it reads a finished container's log (what dockerd can serve from its file); with
it, it follows a container while the container writes, as the shipper does in the noisy
scenario, and reads the socket as the shipper does then: after a small chunk it leaves the
socket unread for a millisecond (`shipper.docker.api.COALESCE_PAUSE_S`), because dockerd
writes every message of a followed container by itself and a reader that takes each as it
comes spends more on the reads than a reader can save anywhere else.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time

import aiohttp

from shipper.docker.api import COALESCE_BELOW_BYTES, COALESCE_PAUSE_S


async def read_all(socket_path: str, container_id: str, *, follow: bool) -> tuple[int, float]:
    connector = aiohttp.UnixConnector(path=socket_path)
    version = aiohttp.HttpVersion10 if follow else aiohttp.HttpVersion11
    async with aiohttp.ClientSession(connector=connector, version=version) as session:
        started = time.perf_counter()
        url = f"http://docker/v1.41/containers/{container_id}/logs"
        params = {
            "stdout": "1",
            "stderr": "1",
            "timestamps": "1",
            "follow": "1" if follow else "0",
        }
        total = 0
        async with session.get(url, params=params) as response:
            response.raise_for_status()
            transport = response.connection.transport if response.connection else None
            while chunk := await response.content.read(256 * 1024):
                total += len(chunk)
                if follow and transport is not None and len(chunk) < COALESCE_BELOW_BYTES:
                    transport.pause_reading()
                    await asyncio.sleep(COALESCE_PAUSE_S)
                    if not transport.is_closing():
                        transport.resume_reading()
        return total, time.perf_counter() - started


def main() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    follow = "--follow" in sys.argv[3:]
    total, seconds = asyncio.run(read_all(sys.argv[1], sys.argv[2], follow=follow))
    ended = time.time()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    print(total, seconds, cpu, usage.ru_maxrss / 1024, ended, flush=True)


if __name__ == "__main__":
    main()
