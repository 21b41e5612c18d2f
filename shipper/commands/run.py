"""`shipper run`: the agent. Sets up logging (secrets registered first), runs `Shipper`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

from shipper import events, logsetup
from shipper.commands import preflight
from shipper.commands.secrets import config_secrets
from shipper.config import Config, masked
from shipper.errors import ConfigError


def main(
    config: Config,
    reload_config: Callable[[], Config] | None = None,
    *,
    start_at_from_flag: bool = False,
) -> int:
    from shipper.app import Shipper

    # The checks check-config makes, before anything starts: a bad file is exit 2 here.
    preflight.check(config)  # ConfigError → exit 2 in cli
    logsetup.register_secrets(config_secrets(config))
    logsetup.configure(config.log.level, config.log.format)
    events.lifecycle.effective_config(masked_config=masked(config))
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    _tune_gc()
    try:
        shipper = Shipper(
            config, reload_config=reload_config, start_at_from_flag=start_at_from_flag
        )
        return int(runner(shipper.run()))
    except ConfigError as exc:
        print(f"shipper: configuration error: {exc}", file=sys.stderr)
        return 2


def _tune_gc() -> None:
    """Fewer, cheaper garbage collections on the hot path.

    Every log line makes a few tuples that die young and never form cycles, yet each 700
    allocations set off a collection that walks the young objects, and now and then every
    object: a few percent of the CPU for nothing. Objects made at start (modules, config)
    are frozen out of collections, and the young generation is collected 70 times less
    often. Memory stays bounded: cycles are still collected, only less often.
    """
    import gc

    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(50_000, second, third)
