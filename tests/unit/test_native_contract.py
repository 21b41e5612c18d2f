"""shipper/native.py refuses a C module that does not fit the Python code, and falls back.

The C code builds `LogRecord`s by position; a build that disagrees with shipper/model.py (or
with the other layouts) must never run. These tests give `contract_problem` modules that
disagree in each way it checks, and import the shipper in a fresh interpreter with a stale
module in place of the real one, to see the fallback happen at import.
"""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from shipper import native
from shipper.model import LogRecord

ROOT = Path(__file__).resolve().parents[2]


def _real_module() -> Any:
    try:
        return importlib.import_module("shipper._native")
    except ImportError:
        pytest.skip("the C extension is not built")


def _copy(module: Any, **changes: Any) -> types.ModuleType:
    fake = types.ModuleType("shipper._native")
    # The functions native.py binds, from its own list: a function added there is copied too.
    for name in ("LAYOUT_VERSION", "RECORD_FIELDS", *native._FUNCTIONS):
        setattr(fake, name, getattr(module, name))
    for name, value in changes.items():
        setattr(fake, name, value)
    return fake


def test_the_built_module_fits_this_code() -> None:
    assert native.contract_problem(_real_module()) is None


def test_a_build_for_another_layout_is_refused() -> None:
    problem = native.contract_problem(_copy(_real_module(), LAYOUT_VERSION=0))
    assert problem is not None and "layout 0" in problem and "rebuild" in problem
    stale = types.ModuleType("shipper._native")  # a build from before layouts were numbered
    assert "layout None" in (native.contract_problem(stale) or "")


class _ReorderedRecord(NamedTuple):
    # model.py changed (a field moved) while the C code was not: what the check must catch.
    container_id: str
    timestamp_ns: int
    seq: int
    stream: str
    message: str
    flags: tuple[str, ...] = ()
    fields: Any = None
    size: int = 0


def test_a_module_that_builds_records_in_another_field_order_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(native, "LogRecord", _ReorderedRecord)
    problem = native.contract_problem(_real_module())
    assert problem is not None and "shipper/model.py has" in problem
    assert "'seq', 'stream'" in problem


def test_a_module_that_names_the_fields_right_but_writes_them_wrong_is_refused() -> None:
    # The declared layout can lie (or drift from the code); the self-tests run the functions.
    module = _real_module()

    def swapped_scan(*args: Any) -> int:
        pos: int = module.scan_frames(*args)
        out = args[2]
        out[:] = [LogRecord(*r[:2], r[3], r[2], *r[4:]) for r in out]  # stream <-> seq
        return pos

    problem = native.contract_problem(_copy(module, scan_frames=swapped_scan))
    assert problem is not None and problem.startswith("scan_frames made")


def test_a_build_without_a_function_this_code_binds_is_refused() -> None:
    # A build from before scan_cri: its layout is the same, but the CRI parser needs it.
    stale = _copy(_real_module())
    del stale.scan_cri
    problem = native.contract_problem(stale)
    assert problem is not None and problem.startswith("it has no scan_cri") and "rebuild" in problem


def test_a_cri_scan_that_ignores_the_offset_or_since_is_refused() -> None:
    # The self-test's lines: one before `since`, one instant in UTC and with +05:30, a `P`.
    module = _real_module()

    def offset_ignored(data: bytes, *args: Any) -> int:
        pos: int = module.scan_cri(data.replace(b"+05:30", b"Z"), *args)
        return pos

    def since_ignored(data: bytes, pos: int, out: Any, ctx: Any, since: int, *rest: Any) -> int:
        taken: int = module.scan_cri(data, pos, out, ctx, 0, *rest)
        return taken

    def takes_parts(data: bytes, *args: Any) -> int:
        return len(data) if module.scan_cri(data, *args) else 0

    for wrong in (offset_ignored, since_ignored, takes_parts):
        problem = native.contract_problem(_copy(module, scan_cri=wrong))
        assert problem is not None and problem.startswith("scan_cri made"), wrong.__name__


def test_a_function_that_raises_is_a_problem_not_a_crash() -> None:
    def broken(*args: Any) -> Any:
        raise TypeError("batch_facts(records, stderr, extra)")

    problem = native.contract_problem(_copy(_real_module(), batch_facts=broken))
    assert problem is not None and "_batch_facts_check raised TypeError" in problem


def test_the_load_warns_and_gives_the_python_path(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SHIPPER_NATIVE", "1")
    monkeypatch.setitem(sys.modules, "shipper._native", _copy(_real_module(), LAYOUT_VERSION=0))
    with caplog.at_level(logging.WARNING, logger="shipper.native"):
        loaded, why = native._load()
    assert loaded is None and why.startswith("does not fit this code: it was built for layout 0")
    (warning,) = caplog.records
    assert "pure-Python path runs instead" in warning.getMessage()


def test_a_stale_module_at_import_means_every_hot_loop_runs_python() -> None:
    # A fresh interpreter, as `shipper run` starts: a stale build takes the real one's place
    # before anything imports shipper.native.
    script = textwrap.dedent(
        """
        import sys, types
        stale = types.ModuleType("shipper._native")
        stale.LAYOUT_VERSION = 0
        sys.modules["shipper._native"] = stale

        from shipper import native
        from shipper.cri import parser
        from shipper.docker import frames, jsonfile
        from shipper.pipeline import redact
        from shipper.pipeline import encoder
        from shipper.sources import batch_facts

        assert native.native is None and not native.ACTIVE, native.WHY_NOT_NATIVE
        assert frames._scan_frames is frames._scan_no_frames
        assert jsonfile._scan_jsonfile is jsonfile._scan_no_lines
        assert parser._scan_cri is parser._scan_no_lines
        assert encoder.encode_records is encoder.python_encode_records
        assert encoder.encode_joined is encoder.python_encode_joined
        assert redact._BatchPrefilter.candidates is redact._BatchPrefilter.python_candidates
        assert batch_facts.batch_facts is batch_facts._python_batch_facts_or_none
        payload = b"2026-11-28T04:13:43.517053725Z hello\\n"
        frame = bytes([1, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload
        (record,) = frames.LogStreamDecoder("c", tty=False).feed(frame)
        assert record.message == "hello", record
        print("python path")
        """
    )
    env = {**os.environ, "SHIPPER_NATIVE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "python path\n"
    assert "The C hot path (shipper/_native) does not fit this code" in done.stderr
    assert f"built for layout 0 and this code has layout {native.LAYOUT_VERSION}" in done.stderr
