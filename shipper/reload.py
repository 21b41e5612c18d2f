"""SIGHUP: re-reading the config and keeping what may change while running.

Only the `processing` rules (selection, multiline, JSON, drop, redact, rate limits) apply
without a restart. Discovery and followers read the rules in force whenever they open a
container's log stream, so new rules apply to containers started from now on, and to a
followed container when its stream is opened again (it restarts, or the stream reconnects);
until then it keeps the rules it started with (a running container the new selection
excludes is followed until it stops). Positions, buffer and connections are untouched, so
nothing is lost or sent twice. A config that does not validate is logged, naming the key,
and the rules in force stay. Other sections need a restart; a change to them is logged as a
warning.
"""

from __future__ import annotations

from collections.abc import Callable

from shipper import events
from shipper.config import Config, ProcessingConfig, changed_keys
from shipper.errors import ConfigError


def reloaded_processing(
    config: Config, processing: ProcessingConfig, reload_config: Callable[[], Config] | None
) -> ProcessingConfig | None:
    """The new `processing` rules to apply, or None if the rules in force stay.

    `config` is the config the shipper started with, `processing` the rules in force, and
    `reload_config` re-reads the config as it was loaded at start (file, environment, flags);
    None: the shipper was started without one, so a reload is ignored.
    """
    if reload_config is None:
        events.lifecycle.reload_ignored()
        return None
    try:
        new = reload_config()
    except ConfigError as exc:
        events.lifecycle.config_reload_rejected(key=exc.key, problem=exc.problem)
        return None
    changed = changed_keys(processing, new.processing, "processing")
    restart_keys = [
        key
        for key in changed_keys(config, new, "")
        # start_at is read at the first start on a storage only, never again.
        if not key.startswith("processing.") and key not in ("start_at", "docker.start_at")
    ]
    if new.processing.max_line_bytes != processing.max_line_bytes:
        restart_keys.append("processing.max_line_bytes")
    if restart_keys:
        events.lifecycle.config_reload_needs_restart(keys=restart_keys)
    if not changed:
        events.lifecycle.config_reload_unchanged()
        return None
    events.lifecycle.config_reloaded(changed=changed)
    return new.processing
