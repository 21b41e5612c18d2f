"""One container's processing: multiline → JSON → drop → redact, over whole batches.

Built once per container start from the config and the container's labels (labels win over
config rules), so nothing is resolved or compiled per line. Stages that do not apply to the
container are left out; with none, `process` hands back the very list it was given.

How the caller drives it (the follower task of the container):
  - `process(records, now)` for every batch read, in order; send what it returns;
  - `flush_due(now)` when `next_flush_deadline()` has passed (or on a ~0.25 s tick);
  - `flush_all()` when the container stops or the shipper shuts down;
  - never checkpoint at or past `oldest_pending()`: those lines are held in memory, and
    after a crash they must be read again to rebuild the same event with the same `_id`;
  - `stats.take()` now and then, adding the deltas to the Prometheus counters;
  - log `warnings` once (bad shipper.* labels, each named with the reason).
Output order: records leave in the order their events complete, so while a stdout trace is
pending, later stderr lines may leave first; each stream stays in order.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shipper.config import ProcessingConfig
from shipper.model import ContainerMeta, LogRecord
from shipper.pipeline import labels
from shipper.pipeline.drop import Dropper, DropSpec
from shipper.pipeline.jsonlogs import JsonDecoder, JsonSpec
from shipper.pipeline.metadata import label_field_paths
from shipper.pipeline.multiline import PRESETS, MultilineJoiner, MultilineSpec
from shipper.pipeline.redact import Redactor
from shipper.pipeline.stats import ProcessorStats

Stage = Callable[[list[LogRecord]], list[LogRecord]]


@dataclass(slots=True)
class ContainerProcessor:
    multiline: MultilineJoiner | None
    stages: tuple[Stage, ...]
    stats: ProcessorStats
    warnings: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.multiline is not None or bool(self.stages)

    def process(
        self, records: list[LogRecord], now_monotonic_s: float | None = None
    ) -> list[LogRecord]:
        """Processed records ready to buffer; multiline may hold some back (see flush_*)."""
        if self.multiline is not None:
            now = time.monotonic() if now_monotonic_s is None else now_monotonic_s
            records = self.multiline.push(records, now)
        for stage in self.stages:
            records = stage(records)
        return records

    def flush_due(self, now_monotonic_s: float) -> list[LogRecord]:
        """Events idle for flush_timeout_s, processed like `process` output."""
        if self.multiline is None:
            return []
        return self._finish(self.multiline.flush_due(now_monotonic_s))

    def flush_all(self) -> list[LogRecord]:
        """Every held event (the container stopped, or shutdown)."""
        if self.multiline is None:
            return []
        return self._finish(self.multiline.flush_all())

    def next_flush_deadline(self) -> float | None:
        """Monotonic time at which `flush_due` will release something, if anything is held."""
        return None if self.multiline is None else self.multiline.next_deadline()

    def pending_heads(self) -> list[tuple[int, str, int]]:
        """(timestamp_ns, stream, seq) of each stream's first held line: exact identities, for
        a caller that must find them in stream order (timestamps may cross between streams)."""
        return [] if self.multiline is None else self.multiline.pending_heads()

    def oldest_pending(self) -> tuple[int, int] | None:
        """(timestamp_ns, seq) of the earliest line held in memory; checkpoint before it."""
        return None if self.multiline is None else self.multiline.oldest_pending()

    def held_lines(self) -> int:
        """Lines held in memory by events not complete yet (for accounting)."""
        return 0 if self.multiline is None else self.multiline.held_lines()

    def held_identities(self) -> list[tuple[int, str, int]]:
        """(timestamp_ns, stream, seq) of every line held in memory."""
        return [] if self.multiline is None else self.multiline.held_identities()

    def _finish(self, records: list[LogRecord]) -> list[LogRecord]:
        for stage in self.stages:
            if not records:
                break
            records = stage(records)
        return records


def build_processor(cfg: ProcessingConfig, meta: ContainerMeta) -> ContainerProcessor:
    stats = ProcessorStats()
    warnings: list[str] = []
    stages: list[Stage] = []
    ml_spec = resolve_multiline(cfg, meta, warnings)
    json_spec = resolve_json(cfg, meta, warnings)
    if json_spec is not None:
        stages.append(JsonDecoder(json_spec, stats).apply)
    drops = [
        DropSpec(
            rule.id,
            None if rule.message_pattern is None else re.compile(rule.message_pattern),
            rule.stream,
        )
        for rule in cfg.drop
        if labels.rule_applies(rule, meta)
    ]
    if drops:
        stages.append(Dropper(drops, stats).apply)
    redactor = Redactor(cfg.redaction, stats)
    redactor.fields_possible = json_spec is not None
    if redactor.active:
        stages.append(redactor.apply)
    warnings.extend(
        f"label {name} ignored: not a dotted path, or a field the shipper sets itself"
        for name in label_field_paths(meta)[1]
    )
    return ContainerProcessor(
        multiline=None if ml_spec is None else MultilineJoiner(ml_spec, stats),
        stages=tuple(stages),
        stats=stats,
        warnings=warnings,
    )


def resolve_multiline(
    cfg: ProcessingConfig, meta: ContainerMeta, warnings: list[str]
) -> MultilineSpec | None:
    """Labels first (`shipper.multiline.preset=none` turns joining off), then config rules."""
    ml = cfg.multiline
    limits = (ml.max_lines, ml.max_bytes, ml.flush_timeout_s)
    preset = meta.hints.get(labels.MULTILINE_PRESET)
    pattern = meta.hints.get(labels.MULTILINE_PATTERN)
    if preset is not None:
        preset = preset.strip().lower()
        if preset in ("none", "off", "false"):
            return None
        if preset in PRESETS:
            if pattern is not None:
                warnings.append(f"label {labels.MULTILINE_PATTERN} ignored: a preset is set")
            return MultilineSpec(preset, None, False, "after", *limits)
        warnings.append(
            f"label {labels.MULTILINE_PRESET}={preset!r} ignored: not one of {', '.join(PRESETS)}"
        )
    elif pattern is not None:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            warnings.append(f"label {labels.MULTILINE_PATTERN} ignored: invalid regex ({exc})")
        else:
            negate_label = meta.hints.get(labels.MULTILINE_NEGATE)
            negate = labels.parse_bool(negate_label)
            if negate_label is not None and negate is None:
                warnings.append(f"label {labels.MULTILINE_NEGATE} ignored: not true or false")
            match = meta.hints.get(labels.MULTILINE_MATCH, "after").strip().lower()
            if match not in ("after", "before"):
                warnings.append(f"label {labels.MULTILINE_MATCH} ignored: not after or before")
                match = "after"
            return MultilineSpec(
                None, compiled, bool(negate), "after" if match == "after" else "before", *limits
            )
    for rule in ml.rules:
        if labels.rule_applies(rule, meta):
            compiled_rule = None if rule.pattern is None else re.compile(rule.pattern)
            return MultilineSpec(rule.preset, compiled_rule, rule.negate, rule.match, *limits)
    return None


def resolve_json(
    cfg: ProcessingConfig, meta: ContainerMeta, warnings: list[str]
) -> JsonSpec | None:
    """Label `shipper.json` (true | false | auto), else the first matching rule, else mode."""
    jc = cfg.json_logs
    mode: str = jc.mode
    for rule in jc.rules:
        if labels.rule_applies(rule, meta):
            mode = rule.mode
            break
    label = meta.hints.get(labels.JSON)
    if label is not None:
        if label.strip().lower() == "auto":
            mode = "auto"
        else:
            enabled = labels.parse_bool(label)
            if enabled is None:
                warnings.append(f"label {labels.JSON}={label!r} ignored: not true, false or auto")
            else:
                mode = "on" if enabled else "off"
    if mode == "off":
        return None
    return JsonSpec(mode == "auto", jc.target, jc.max_depth, jc.max_fields, jc.keep_original)
