"""Per-container series exist only when enabled, one per followed container, and go with it."""

from __future__ import annotations

from prometheus_client import generate_latest

from shipper import telemetry


def test_series_follow_the_containers_being_followed() -> None:
    assert b"shipper_container_checkpoint_lag_seconds{" not in generate_latest(telemetry.REGISTRY)
    followed = [
        telemetry.ContainerSample("web-1", 1.5, 0.2),
        telemetry.ContainerSample("db-1", 30.0, None),
    ]
    collector = telemetry.enable_per_container(lambda: list(followed))
    try:
        text = generate_latest(telemetry.REGISTRY).decode()
        assert 'shipper_container_checkpoint_lag_seconds{container_name="web-1"} 1.5' in text
        assert 'shipper_container_checkpoint_lag_seconds{container_name="db-1"} 30.0' in text
        assert 'shipper_container_last_read_age_seconds{container_name="web-1"} 0.2' in text
        assert 'shipper_container_last_read_age_seconds{container_name="db-1"}' not in text
        followed.pop()  # db-1 stopped: its series are gone
        assert 'container_name="db-1"' not in generate_latest(telemetry.REGISTRY).decode()
    finally:
        telemetry.REGISTRY.unregister(collector)
