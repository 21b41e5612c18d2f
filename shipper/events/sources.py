"""Events every source shares: followers, container hints, rate limits, rotation risk."""

from __future__ import annotations

from shipper import telemetry


def follower_crashed(*, container_id: str, error: BaseException, delay_s: float) -> None:
    """A follower raised something unexpected; it starts again from its checkpoint."""
    telemetry.error(
        "follower_crashed",
        "A container follower failed unexpectedly; it starts again from its checkpoint.",
        container_id=container_id[:12],
        error=repr(error),
        delay_s=round(delay_s, 2),
    )


def container_label_ignored(*, container_id: str, reason: str) -> None:
    """A container's `shipper.rate_limit` label (or annotation) does not parse: ignored."""
    telemetry.warning(
        "bad_container_label",
        "A shipper.* label of a container was ignored.",
        container_id=container_id[:12],
        reason=reason,
    )


def container_hint_ignored(*, container_id: str, reason: str) -> None:
    """A `shipper.*` processing hint of a container (label, or its pod's annotation) does
    not parse: ignored (said once per follower)."""
    telemetry.warning(
        "bad_container_label",
        "A shipper.* hint of a container (its label, or its pod's annotation) was ignored.",
        container_id=container_id[:12],
        reason=reason,
    )


def rate_limit_applies(
    *, container_id: str, container_name: str, rate_limit: str, action: str
) -> None:
    """A rate limit is in force for a container (from the config or its label)."""
    telemetry.info(
        "A rate limit applies to a container.",
        container_id=container_id[:12],
        container_name=container_name,
        rate_limit=rate_limit,
        action=action,
    )


def rate_limit_pause(*, container_id: str, container_name: str, rate_limit: str) -> None:
    """A container over its rate limit (action pause) is held back; rate-limited per
    container. The seconds it is held are summed in shipper_rate_limit_pause_seconds."""
    telemetry.info_per(
        "rate_limit_pause",
        container_id,
        "A container is over its rate limit: reading it pauses until the quota allows "
        "more (its lines wait in the runtime's log).",
        container_id=container_id[:12],
        container_name=container_name,
        rate_limit=rate_limit,
    )


def rate_limit_dropped(
    *, container_id: str, container_name: str, dropped: int, reason: str
) -> None:
    """Lines of a container over its rate limit (action drop) were dropped: counted under
    `shipper_records_dropped_total{reason}` (`reason`: the config's RATE_LIMIT_DROP_REASON),
    logged rate-limited per container."""
    telemetry.records_dropped.labels(reason).inc(dropped)
    telemetry.info_per(
        "rate_limit_drop",
        container_id,
        "Lines of a container over its rate limit were dropped (a summary record in its "
        "stream says how many).",
        container_id=container_id[:12],
        container_name=container_name,
        dropped=dropped,
    )


def rotation_risk(
    *,
    container_id: str,
    container_name: str,
    backlog_bytes: int,
    capacity_bytes: int,
    behind_s: float,
    held_by_rate_limit: bool,
) -> None:
    """A container's unread backlog came close to what Docker's rotation keeps: counted once
    per episode; the log is rate-limited per container, not for all."""
    telemetry.rotation_risks.inc()
    if held_by_rate_limit:
        message = (
            "A container's rate limit (action pause) holds it back for so long that Docker's "
            "log rotation may delete lines before they are read (raise its quota, use action "
            "drop, or raise the driver's max-size/max-file)."
        )
    else:
        message = (
            "A container writes faster than its logs are shipped: Docker's log rotation may "
            "delete lines before they are read (raise the driver's max-size/max-file, or make "
            "room in the buffer and the output)."
        )
    telemetry.warning_per(
        "rotation_risk",
        container_id,
        message,
        container_id=container_id[:12],
        container_name=container_name,
        estimated_backlog_bytes=backlog_bytes,
        rotation_keeps_bytes=capacity_bytes,
        behind_s=behind_s,
        held_by_rate_limit=held_by_rate_limit,
    )
