"""``python -m tests.es_server``: run the test server in its own process.

Prints one line, the server's URL, once it accepts connections, then serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from .app import EsTestServer


def _pair(text: str) -> tuple[str, str]:
    left, sep, right = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError("expected name:secret")
    return left, right


async def _serve(args: argparse.Namespace) -> None:
    server = EsTestServer(
        args.major,
        count_only=args.count_only,
        count_containers=args.count_by_container,
        users=dict(args.user or []),
        api_keys=dict(args.api_key or []),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
    )
    if args.max_content_length:
        server.faults.max_content_length = args.max_content_length
    url = await server.start(args.port, args.host)
    print(url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.es_server", description=__doc__)
    parser.add_argument("--port", type=int, default=9200, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--major", type=int, choices=(8, 9), default=9)
    parser.add_argument("--count-only", action="store_true", help="count items, keep no sources")
    parser.add_argument(
        "--count-by-container",
        action="store_true",
        help="count-only: also count items per container.id (GET /_test/stats)",
    )
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--tls-client-ca", help="require client certificates signed by this CA")
    parser.add_argument("--user", type=_pair, action="append", help="name:password (repeatable)")
    parser.add_argument("--api-key", type=_pair, action="append", help="id:key (repeatable)")
    parser.add_argument("--max-content-length", type=int, default=0, help="bytes")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        parser.error("--tls-client-ca needs --tls-cert and --tls-key")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
