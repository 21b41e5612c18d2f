"""Which reader a container gets: Docker's json-file logs as files where visible, the API
otherwise, and for Podman always the API (its inspect says json-file whatever the driver, and
its k8s-file log is another format), even with `read_mode: files` and a path that would do."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest

from shipper.docker.frames import LogStreamDecoder
from shipper.docker.jsonfile import JsonFileDecoder
from shipper.model import ContainerMeta
from shipper.sources.docker.follower import ContainerFollower, FollowerSettings

CID = "c" * 64


class _Docker:
    """Only what `_log_source` touches: a logs stream it does not start."""

    def logs(self, container_id: str, **kwargs: Any) -> AsyncGenerator[bytes, None]:
        async def chunks() -> AsyncGenerator[bytes, None]:
            yield b""

        return chunks()


@pytest.mark.parametrize(("runtime", "files"), [("docker", True), ("podman", False)])
async def test_only_dockers_json_file_logs_are_read_as_files(
    tmp_path: Path, runtime: str, files: bool
) -> None:
    log = tmp_path / CID / f"{CID}-json.log"  # Docker's layout, readable here
    log.parent.mkdir()
    log.write_bytes(b"")
    meta = ContainerMeta(
        id=CID,
        name="x",
        image="i",
        log_driver="json-file",
        log_path=str(log),
        running=False,
        runtime=runtime,
    )
    settings = FollowerSettings(read_mode="files", containers_path=str(tmp_path))
    follower = ContainerFollower(CID, _Docker(), None, None, settings)  # type: ignore[arg-type]
    decoder, chunks = follower._log_source(meta, 0)
    await chunks.aclose()
    assert isinstance(decoder, JsonFileDecoder) is files
    assert isinstance(decoder, LogStreamDecoder)
