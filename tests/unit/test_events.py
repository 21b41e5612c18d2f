"""The notable events: only `shipper/events/` logs, and each event logs and counts together.

The rules are in `shipper/events/__init__.py`; these tests keep them true as events are added.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import logging
import os
import re
import subprocess
import sys
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import pytest

from shipper import events, telemetry

ROOT = Path(__file__).parents[2]
SHIPPER = ROOT / "shipper"
EVENTS = SHIPPER / "events"
OPERATIONS = ROOT / "docs" / "operations.md"

# What logs or counts-and-logs: only the events may call these.
PRIMITIVES = frozenset(
    {
        "error",
        "warning",
        "warning_per",
        "every_time",
        "info",
        "info_per",
        "debug",
        "rate_limited",
        "RateLimitedLog",
        "log",
    }
)
# telemetry defines the primitives; logsetup configures the handlers (it logs nothing).
MAY_IMPORT_LOGGING = {SHIPPER / "telemetry.py", SHIPPER / "logsetup.py"}


def _modules_outside_events() -> Iterator[Path]:
    for path in sorted(SHIPPER.rglob("*.py")):
        if EVENTS not in path.parents and path != SHIPPER / "telemetry.py":
            yield path


def _logging_uses(path: Path) -> list[str]:
    found = []
    shown = path.relative_to(ROOT) if ROOT in path.parents else path.name
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        where = f"{shown}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import) and path not in MAY_IMPORT_LOGGING:
            found += [f"{where} import {a.name}" for a in node.names if a.name == "logging"]
        elif isinstance(node, ast.ImportFrom):
            if node.module == "logging" and path not in MAY_IMPORT_LOGGING:
                found.append(f"{where} from logging import ...")
            if node.module == "shipper.telemetry":
                found += [
                    f"{where} from shipper.telemetry import {a.name}"
                    for a in node.names
                    if a.name in PRIMITIVES
                ]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "telemetry"
            and node.attr in PRIMITIVES
        ):
            found.append(f"{where} telemetry.{node.attr}")
    return found


def test_only_the_events_package_logs() -> None:
    """A log line written inline could drift from its counter: every line is an event."""
    found = [use for path in _modules_outside_events() for use in _logging_uses(path)]
    assert found == [], "log through shipper/events/, not inline:\n" + "\n".join(found)


def test_the_scan_sees_an_inline_log_call(tmp_path: Path) -> None:
    # The scan must fail on what it forbids, or it proves nothing.
    module = tmp_path / "inline.py"
    module.write_text(
        "import logging\n"
        "from shipper import telemetry\n"
        "from shipper.telemetry import rate_limited\n"
        "telemetry.warning('kind', 'Something happened.')\n"
        "telemetry.errors.labels('kind').inc()\n"
    )
    found = _logging_uses(module)
    uses = [use.split(" ", 1)[1] for use in found]
    assert uses == [
        "import logging",
        "from shipper.telemetry import rate_limited",
        "telemetry.warning",
    ]


def test_the_events_import_nothing_that_imports_them() -> None:
    """`shipper.native` reports through the events while it is being imported (by the
    parsers, which `shipper.config` imports): the events can import none of those."""
    script = (
        "import sys, shipper.events\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('shipper'))))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    ours = {m for m in done.stdout.split() if not m.startswith("shipper.events")}
    allowed = {"shipper", "shipper.telemetry", "shipper.lines", "shipper.lines.timestamps"}
    assert ours <= allowed | {"shipper.sizes"}  # (which imports nothing of ours)


# -- every event, called with made-up values ---------------------------------------------------

EventFunction = Callable[..., None]


def _event_functions() -> list[tuple[str, EventFunction]]:
    found = []
    for area_name in events.__all__:
        area = getattr(events, area_name)
        for name, value in vars(area).items():
            if (
                inspect.isfunction(value)
                and value.__module__ == area.__name__
                and not name.startswith("_")
            ):
                found.append((f"{area_name}.{name}", value))
    return found


EVENT_FUNCTIONS = _event_functions()


def _values_of(hint: Any) -> list[Any]:
    """Values of the type `hint` to call an event with (each of a Literal's)."""
    origin = get_origin(hint)
    if origin is Literal:
        return list(get_args(hint))
    if origin in (Union, types.UnionType):
        return _values_of(next(arg for arg in get_args(hint) if arg is not type(None)))
    if hint is str:
        return ["0123456789abcdef0123"]  # long enough to show an id cut to 12
    if hint is bool:
        return [True, False]
    if hint is int:
        return [3]
    if hint is float:
        return [1.23456]
    if hint is Path:
        return [Path("/var/lib/shipper/buffer/00000001.seg")]
    if hint is BaseException:
        return [OSError(28, "No space left on device")]
    if origin in (Sequence, list):
        return [["a.key", "b.key"]]
    if origin in (Mapping, dict):
        return [{"docker_host": "unix:///var/run/docker.sock"}]
    raise AssertionError(f"no made-up value for {hint!r}: add one here")


def _calls() -> list[Any]:
    params = []
    for name, function in EVENT_FUNCTIONS:
        module = sys.modules[function.__module__]
        hints = get_type_hints(function, vars(module))
        hints.pop("return", None)
        names = list(hints)
        for values in itertools.product(*(_values_of(hints[n]) for n in names)):
            kwargs = dict(zip(names, values, strict=True))
            params.append(pytest.param(function, kwargs, id=f"{name}-{len(params)}"))
    return params


def _errors_by_kind() -> dict[str, float]:
    return {
        sample.labels["kind"]: sample.value
        for metric in telemetry.errors.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


@pytest.fixture
def fresh_log_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry, "rate_limited", telemetry.RateLimitedLog())


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The lines of `shipper.*` loggers at every level (`.records` of the test's call)."""
    with caplog.at_level(logging.DEBUG, logger="shipper"):
        yield caplog


def _moved(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


@pytest.mark.parametrize(("function", "kwargs"), _calls())
def test_every_event_logs_one_line_and_counts_a_warning_under_its_kind(
    function: EventFunction,
    kwargs: dict[str, Any],
    fresh_log_limits: None,
    logged: pytest.LogCaptureFixture,
) -> None:
    assert (function.__doc__ or "").strip(), "an event says in its docstring what happened"
    before = _errors_by_kind()
    function(**kwargs)
    moved = _moved(before, _errors_by_kind())
    (line,) = logged.records
    assert line.getMessage().strip()
    if line.levelno >= logging.WARNING:
        # Exactly one occurrence, under one kind, and the kind in the line's own terms.
        assert list(moved.values()) == [1.0]
        (kind,) = moved
        assert kind == kind.lower() and " " not in kind
    else:
        assert moved == {}, "info and debug lines count no error"


def test_every_event_is_used() -> None:
    """As Vector's check-events: an event nothing emits is dead code, or a call that went
    back to an inline log line."""
    used = set()
    for path in _modules_outside_events():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Name)
                and node.value.value.id == "events"
            ):
                used.add(f"{node.value.attr}.{node.attr}")
    assert {name for name, _ in EVENT_FUNCTIONS} - used == set()


def test_every_kind_is_documented_for_operators(
    fresh_log_limits: None, logged: pytest.LogCaptureFixture
) -> None:
    """Operators alert on the kinds: docs/operations.md lists each, and only those."""
    counted: set[str] = set()
    for call in _calls():
        function, kwargs = call.values
        before = _errors_by_kind()
        function(**kwargs)
        counted |= set(_moved(before, _errors_by_kind()))
    table = OPERATIONS.read_text().split("### Errors and warnings by kind", 1)[1]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.MULTILINE))
    assert counted - documented == set(), "kinds missing from docs/operations.md"
    assert documented - counted == set(), "docs/operations.md lists kinds nothing counts"


# -- a few events in detail: the line and its counters together --------------------------------


def _value(counter: Any, *labels: str) -> float:
    child = counter.labels(*labels) if labels else counter
    return float(child._value.get())


def test_a_full_buffer_counts_the_disk_and_the_error_and_says_reading_is_paused(
    fresh_log_limits: None, logged: pytest.LogCaptureFixture
) -> None:
    disk, kind = _value(telemetry.disk_full, "buffer"), _value(telemetry.errors, "disk_full")
    error = OSError(28, "No space left on device")
    events.storage.disk_full(container_id="4f1c2a9b7d3e5f60718293a4b5c6d7e8", error=error)
    events.storage.disk_full(container_id="4f1c2a9b7d3e5f60718293a4b5c6d7e8", error=error)
    assert _value(telemetry.disk_full, "buffer") - disk == 2
    assert _value(telemetry.errors, "disk_full") - kind == 2
    (line,) = logged.records  # the second within 30 s is counted, not logged
    assert line.levelno == logging.ERROR
    assert line.getMessage() == (
        "The disk buffer is full (no space left on device); reading is paused."
    )
    assert line.fields == {  # type: ignore[attr-defined]
        "container_id": "4f1c2a9b7d3e",
        "error": "[Errno 28] No space left on device",
    }


def test_rotation_risk_is_logged_per_container_and_counted_every_time(
    fresh_log_limits: None, logged: pytest.LogCaptureFixture
) -> None:
    risks, kind = _value(telemetry.rotation_risks), _value(telemetry.errors, "rotation_risk")
    for container in ("a" * 64, "a" * 64, "b" * 64):
        events.sources.rotation_risk(
            container_id=container,
            container_name="web",
            backlog_bytes=9_000_000,
            capacity_bytes=10_000_000,
            behind_s=42.5,
            held_by_rate_limit=False,
        )
    assert _value(telemetry.rotation_risks) - risks == 3
    assert _value(telemetry.errors, "rotation_risk") - kind == 3
    # One container's repeat is held back; another container's line is not hidden by it.
    assert [line.fields["container_id"] for line in logged.records] == ["a" * 12, "b" * 12]  # type: ignore[attr-defined]
    assert all(line.levelno == logging.WARNING for line in logged.records)
    first = logged.records[0].getMessage()
    assert first.startswith("A container writes faster than its logs are shipped")


def test_a_dead_letter_counts_its_error_type_or_else_its_status(
    fresh_log_limits: None, logged: pytest.LogCaptureFixture
) -> None:
    typed = _value(telemetry.dead_lettered, "mapper_parsing_exception")
    untyped = _value(telemetry.dead_lettered, "400")
    kind = _value(telemetry.errors, "dead_letter")
    for error_type in ("mapper_parsing_exception", ""):
        events.elasticsearch.dead_lettered(
            error_type=error_type,
            reason="x" * 1000,
            status=400,
            target_index="logs-docker-default",
            destination="logs-shipper.deadletter-default",
        )
    assert _value(telemetry.dead_lettered, "mapper_parsing_exception") - typed == 1
    assert _value(telemetry.dead_lettered, "400") - untyped == 1
    assert _value(telemetry.errors, "dead_letter") - kind == 2
    line = logged.records[0]
    assert line.getMessage() == (
        "Elasticsearch can never index a record; it was dead-lettered with the reason."
    )
    assert line.fields["reason"] == "x" * 300  # type: ignore[attr-defined]


def test_items_retried_counts_each_item_as_a_retry(
    fresh_log_limits: None, logged: pytest.LogCaptureFixture
) -> None:
    retried = _value(telemetry.retries, "item_rejected")
    events.elasticsearch.items_retried(items=7, retry_queue=12)
    assert _value(telemetry.retries, "item_rejected") - retried == 7
    (line,) = logged.records
    assert line.fields == {"items": 7, "retry_queue": 12}  # type: ignore[attr-defined]


def test_a_rejected_reload_counts_the_reload_and_the_error(
    fresh_log_limits: None, logged: pytest.LogCaptureFixture
) -> None:
    rejected = _value(telemetry.config_reloads, "rejected")
    kind = _value(telemetry.errors, "config_reload_rejected")
    events.lifecycle.config_reload_rejected(key="processing.drop", problem="not a list")
    assert _value(telemetry.config_reloads, "rejected") - rejected == 1
    assert _value(telemetry.errors, "config_reload_rejected") - kind == 1
    (line,) = logged.records
    assert line.getMessage() == "The reloaded config is not valid; the rules in force stay."


def test_a_buffer_file_set_aside_is_logged_every_time_on_the_buffers_logger(
    fresh_log_limits: None, logged: pytest.LogCaptureFixture
) -> None:
    kind = _value(telemetry.errors, "buffer_file_set_aside")
    for number in (1, 2):
        events.storage.buffer_file_set_aside(
            path=Path(f"/s/buffer/{number:08d}.seg"),
            target=Path(f"/s/buffer/corrupt/{number:08d}.seg"),
            reason="bad header",
        )
    assert _value(telemetry.errors, "buffer_file_set_aside") - kind == 2
    assert [(line.name, line.getMessage()) for line in logged.records] == [
        (
            "shipper.buffer.recovery",
            f"Set aside the corrupt disk buffer file /s/buffer/{n:08d}.seg as "
            f"/s/buffer/corrupt/{n:08d}.seg: bad header.",
        )
        for n in (1, 2)
    ]


def test_a_failed_read_is_counted_under_the_kind_its_error_gives(
    fresh_log_limits: None, logged: pytest.LogCaptureFixture
) -> None:
    refused = _value(telemetry.errors, "docker_api_version_refused")
    broken = _value(telemetry.errors, "log_stream_broken")
    for kind in ("docker_api_version_refused", "log_stream_broken"):
        events.docker.read_failed(
            kind=kind, container_id="c" * 64, error=OSError("reset"), delay_s=0.123456
        )
    assert _value(telemetry.errors, "docker_api_version_refused") - refused == 1
    assert _value(telemetry.errors, "log_stream_broken") - broken == 1
    # Rate-limited per kind: the second kind's line is not hidden by the first's.
    assert [line.fields["delay_s"] for line in logged.records] == [0.12, 0.12]  # type: ignore[attr-defined]
