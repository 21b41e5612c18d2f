"""Runs the shipper with one fsync failing once a trigger file exists, as Linux does it.

`python -m tests.support.failing_fsync TRIGGER run --config F` is `python -m shipper run
--config F`, except that the first `os.fsync` of a buffer segment or the checkpoints after
TRIGGER appears raises EIO and every later one succeeds (the buffer's acks file is left alone:
losing it costs resends, never lines, so the shipper only warns about it): Linux reports a writeback error to fsync once, and the pages it lost stay lost
(so a shipper that retried would see success). The failure's time (ns since the epoch) is
written to `TRIGGER.failed`, so a test can tell what the shipper wrote after it.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from pathlib import Path


def _fails(fd: int) -> bool:
    name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
    return name.endswith(".seg") or name.startswith("checkpoints")


def main() -> int:
    trigger = Path(sys.argv[1])
    first_failure = trigger.with_name(trigger.name + ".failed")
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if trigger.exists() and not first_failure.exists() and _fails(fd):
            first_failure.write_text(str(time.time_ns()))
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    os.fsync = fsync
    from shipper.cli import main as shipper_main

    return shipper_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
