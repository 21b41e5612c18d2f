"""Command line: `shipper run | check-config | status | backfill`, `shipper --version`.

Parsing and config loading live here; each subcommand is one module in `shipper.commands`.
Exit codes: 0 done, 1 the command failed (e.g. Elasticsearch unreachable for a backfill),
2 wrong configuration or usage (the message names the key), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from shipper import __version__
from shipper.config import Config, load_config
from shipper.errors import ConfigError

EXIT_CONFIG = 2  # the other codes are the commands' own (module docstring)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shipper",
        description="Ships every container's logs (Docker, Podman, Kubernetes) into "
        "Elasticsearch, exactly once.",
        epilog="Every config key can also be set as SHIPPER_<SECTION>_<KEY> (see the README).",
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
    run.add_argument(
        "--start-at",
        metavar="WHEN",
        help="overrides start_at: beginning, now or a duration (10m, 2h, 7d): where "
        "containers begin at the first start on this storage (ignored afterwards)",
    )

    check = commands.add_parser(
        "check-config",
        help="validate the config and print it as it takes effect (secrets masked)",
        description="Validates the config file together with the SHIPPER_* environment "
        "and prints the effective config as YAML, secrets masked. Exit 2 on an error, "
        "naming the key.",
    )
    _add_config_option(check)

    status = commands.add_parser(
        "status",
        help="buffer, per-container checkpoints and lag, dead letters",
        description="Asks the running agent (GET /status on metrics.listen, or --url); "
        "without one, reads storage.path directly (read-only, safe while an agent runs).",
    )
    _add_config_option(status)
    status.add_argument("--url", help="the agent's HTTP address, e.g. http://127.0.0.1:9108")
    status.add_argument(
        "--offline", action="store_true", help="read storage.path, do not ask an agent"
    )
    status.add_argument("--json", action="store_true", help="print the report as JSON")
    status.add_argument("--storage-path", help="overrides storage.path")

    backfill = commands.add_parser(
        "backfill",
        help="ship the history of existing containers (same document ids as the agent)",
        description="Reads what existing containers logged in the last DURATION and ships "
        "it through the Elasticsearch output. Lines already shipped are recognised by their "
        "ids and stored once. Interrupted? Run it again: nothing is stored twice.",
    )
    _add_config_option(backfill)
    backfill.add_argument(
        "--since",
        required=True,
        metavar="DURATION",
        help="how far back: e.g. 90s, 15m, 2h, 7d, 1h30m (a plain number: seconds)",
    )
    backfill.add_argument(
        "--container",
        action="append",
        default=[],
        metavar="NAME",
        help="only this container (name or id prefix); repeat for more. Default: every "
        "container the selection rules ship",
    )
    backfill.add_argument("--storage-path", help="overrides storage.path")
    backfill.add_argument(
        "--no-progress", action="store_true", help="no progress bar, only the summary"
    )
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
        config = load_from_args(args)
        if args.command == "run":
            from shipper.commands import run

            return run.main(
                config,
                reload_config=lambda: load_from_args(args),
                start_at_from_flag=args.start_at is not None,
            )
        if args.command == "check-config":
            from shipper.commands import check_config

            return check_config.main(config, args.config)
        if args.command == "status":
            from shipper.commands import status

            return status.main(config, url=args.url, offline=args.offline, as_json=args.json)
        if args.command == "backfill":
            from shipper.commands import backfill

            return backfill.main(
                config, since=args.since, names=args.container, progress=not args.no_progress
            )
    except ConfigError as exc:
        print(f"shipper: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    return EXIT_CONFIG


def load_from_args(args: argparse.Namespace) -> Config:
    """The config as the command sees it: file, then SHIPPER_* environment, then flags."""
    overrides: dict[str, Any] = {}
    if getattr(args, "output", None):
        overrides["output"] = args.output
    if getattr(args, "storage_path", None):
        overrides["storage.path"] = args.storage_path
    if getattr(args, "start_at", None) is not None:
        overrides["start_at"] = args.start_at
    config = load_config(args.config, overrides)
    if (
        args.config is None
        and "storage.path" not in overrides
        and "SHIPPER_STORAGE_PATH" not in os.environ
        and os.geteuid() != 0
    ):
        # Without a config, a non-root user cannot write /var/lib: use the XDG state dir.
        state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        overrides["storage.path"] = str(Path(state_home) / "shipper")
        config = load_config(None, overrides)
    return config
