"""What writing through the page cache costs this machine: a fact to read the buffer's figures by.

The disk buffer appends every bulk entry (~670 bytes per 100-byte line) to segment files. On
some VMs the first touch of memory the guest has not used lately is slow: with free page
reporting on (`page_reporting.min_free_ms=0`), every page the guest frees is handed back to the
hypervisor at once and costs a fault in the host when used again. On such a VM appending to new
files cost 4.2 CPU-s per GiB where rewriting pages already cached cost 0.07, and the buffer's
writes became a third of the shipper's CPU. The bench records both costs and the reporting
settings with its results, so that runs on different machines compare. The append figure
depends on what was freed just before (0.25 right after another probe freed its pages).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

PROBE_BYTES = 256 * 1024 * 1024
_WRITE_BYTES = 256 * 1024  # per pwrite, about what the buffer writes per batch


def _write(fd: int, block: bytes) -> float:
    """Process CPU seconds to write PROBE_BYTES from offset 0 (each byte once, in order)."""
    started = time.process_time()
    offset = 0
    while offset < PROBE_BYTES:
        offset += os.pwrite(fd, block, offset)
    return time.process_time() - started


def cpu_s_per_gib(directory: Path) -> dict[str, float]:
    """CPU seconds per GiB for appending to a new file in `directory`, and for rewriting the
    same bytes while they are cached. The file is removed afterwards."""
    block = os.urandom(_WRITE_BYTES)
    path = directory / "pagecache-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        appending = _write(fd, block)
        rewriting = _write(fd, block)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    per_gib = (1 << 30) / PROBE_BYTES
    return {
        "append_new_file": round(appending * per_gib, 2),
        "rewrite_cached": round(rewriting * per_gib, 2),
    }


def free_page_reporting() -> dict[str, str] | None:
    """The kernel's free page reporting parameters, or None where it is not built in."""
    parameters = Path("/sys/module/page_reporting/parameters")
    if not parameters.is_dir():
        return None
    found = {}
    for name in ("page_reporting_order", "min_free_ms"):
        with contextlib.suppress(OSError):
            found[name] = (parameters / name).read_text().strip()
    return found
