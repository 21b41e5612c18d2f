"""Command line: `shipper run`, `shipper --version`. Exit code 2 for a wrong config."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from shipper import __version__
from shipper.config import Config, load_config
from shipper.errors import ConfigError

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shipper",
        description="Ships every Docker container's logs into Elasticsearch, exactly once.",
    )
    parser.add_argument("--version", action="version", version=f"shipper {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="follow every container and ship its logs")
    _add_config_option(run)
    run.add_argument(
        "--output",
        choices=("elasticsearch", "console"),
        help="where records go (overrides `output`); console prints NDJSON on stdout",
    )
    run.add_argument("--storage-path", help="overrides storage.path")
    return parser


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=os.environ.get("SHIPPER_CONFIG"),
        help="YAML config file (default: $SHIPPER_CONFIG; built-in defaults without one)",
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        build_parser().print_help(sys.stderr)
        return EXIT_CONFIG
    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"shipper: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "run":
        return _run(config)
    return EXIT_CONFIG


def _load(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {}
    if getattr(args, "output", None):
        overrides["output"] = args.output
    if getattr(args, "storage_path", None):
        overrides["storage.path"] = args.storage_path
    config = load_config(args.config, overrides)
    if args.config is None and "storage.path" not in overrides and os.geteuid() != 0:
        # Without a config, a non-root user cannot write /var/lib: use the XDG state dir.
        state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        overrides["storage.path"] = str(Path(state_home) / "shipper")
        config = load_config(None, overrides)
    return config


def _run(config: Config) -> int:
    from shipper import logsetup
    from shipper.app import Shipper

    logsetup.configure(config.log.level, config.log.format)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        return int(runner(Shipper(config).run()))
    except ConfigError as exc:
        print(f"shipper: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
