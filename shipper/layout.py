"""Where the shipper keeps its state under `storage.path`: the one module that spells the names.

    <storage.path>/
      buffer/                          the disk buffer: segments, ack ledger, corrupt/ (buffer/)
      checkpoints.json                 each container's read position (sources/checkpoint.py)
      first-start.json                 where containers without a position begin, decided at
                                       the first start on this storage (sources/first_start.py)
      dead-letter/dead-letter.ndjson   records neither Elasticsearch nor its dead-letter stream
                                       took (sinks/elasticsearch/dead_letter.py)
      backfill-<pid>/buffer/           a running `shipper backfill`'s temporary buffer

The agent, `shipper status` (reading the files while an agent runs) and `shipper backfill`
all find these through `StorageLayout`, so a name can only ever be spelled here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shipper.errors import ConfigError


@dataclass(frozen=True, slots=True)
class StorageLayout:
    root: Path

    @property
    def buffer_dir(self) -> Path:
        return self.root / "buffer"

    @property
    def checkpoints_file(self) -> Path:
        return self.root / "checkpoints.json"

    @property
    def first_start_file(self) -> Path:
        return self.root / "first-start.json"

    def holds_positions(self) -> bool:
        """Whether an agent ran on this storage before: it left checkpoints or a buffer."""
        return self.checkpoints_file.exists() or self.buffer_dir.exists()

    @property
    def dead_letter_file(self) -> Path:
        return self.root / "dead-letter" / "dead-letter.ndjson"

    def backfill(self, pid: int) -> StorageLayout:
        """The private state of the backfill run by process `pid` (removed when it ends)."""
        return StorageLayout(self.root / f"backfill-{pid}")

    def prepare(self) -> None:
        """Creates the root and checks it is writable: a ConfigError naming storage.path if not."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(
                "storage.path", f"{str(self.root)!r} is not writable: {exc.strerror}"
            ) from None
