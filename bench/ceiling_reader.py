"""Minimal logs API reader: reads one container's whole log and discards it.

`python -m bench.ceiling_reader <docker-socket> <container-id>` prints
`<bytes> <seconds> <cpu seconds> <peak RSS MB>` (its own CPU: user + system).
It is the ceiling the shipper's API mode is compared with: the same request the shipper
makes (timestamps, both streams), as fast as aiohttp can take it, with no parsing.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time

import aiohttp


async def read_all(socket_path: str, container_id: str) -> tuple[int, float]:
    connector = aiohttp.UnixConnector(path=socket_path)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        url = f"http://docker/v1.41/containers/{container_id}/logs"
        params = {"stdout": "1", "stderr": "1", "timestamps": "1", "follow": "0"}
        total = 0
        async with session.get(url, params=params) as response:
            response.raise_for_status()
            async for chunk in response.content.iter_chunked(256 * 1024):
                total += len(chunk)
        return total, time.perf_counter() - started


def main() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    total, seconds = asyncio.run(read_all(sys.argv[1], sys.argv[2]))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(total, seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, flush=True)


if __name__ == "__main__":
    main()
