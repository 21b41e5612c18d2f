"""Byte counts as people read them: `512 B`, `3.4 KiB`, `1.2 GiB`.

One definition for every place that shows one (the first start's history, `shipper status`),
so the same count reads the same everywhere. Imports nothing of ours (the events use it).
"""

from __future__ import annotations


def size_text(size: int) -> str:
    """`size` bytes in the largest binary unit under 1024 of it, up to GiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
