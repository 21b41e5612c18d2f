"""What a first start measures as history: each source's log files, rotations included."""

from __future__ import annotations

from pathlib import Path

from shipper.sizes import size_text
from shipper.sources.cri.history import log_files_size


def test_a_cri_containers_history_is_its_attempts_file_and_kubelets_rotations(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "shop_web-7d9_0d1e2f30" / "app"
    directory.mkdir(parents=True)
    sizes = {
        "0.log": 100,
        "0.log.20261206-101010": 30,  # rotated
        "0.log.20261206-090909.gz": 7,  # rotated and compressed
        "0.log.20261206-101010.gz": 5,  # being compressed: the plain one holds the lines
        "0.log.20261206-111111.tmp": 11,  # kubelet's leftover, not a rotation
        "1.log": 1000,  # the next attempt: another container
    }
    for name, size in sizes.items():
        (directory / name).write_bytes(b"x" * size)
    assert log_files_size(directory / "0.log") == 100 + 30 + 7
    # The attempt's file is gone (the container was removed), its rotations are still there.
    (directory / "0.log").unlink()
    assert log_files_size(directory / "0.log") == 30 + 7
    assert log_files_size(directory / "2.log") is None  # nothing visible


def test_byte_counts_read_the_same_in_the_history_line_and_in_status() -> None:
    assert [size_text(n) for n in (0, 1023, 1024, 1536, 3 * 1024**2, 5 * 1024**3)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "1.5 KiB",
        "3.0 MiB",
        "5.0 GiB",
    ]
    assert size_text(5000 * 1024**3) == "5000.0 GiB"  # GiB is the largest unit
