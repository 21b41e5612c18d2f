"""The bench's containerd: the CRI source's scenarios run against a private one, as the tests do.

Kubelet cannot run here, so the bench plays its part with the test bed
(tests/support/containerd.py): a separate containerd with its CRI plugin (own sockets, root
and cgroup parent under /tmp), whose CRI plugin writes each container's log file in kubelet's
layout under a log root of its own. A scenario runs one pod with one container that writes
the same lines as the Docker scenarios' containers; the shipper reads them with `source: cri`.

Which processes do what, for the CPU columns: the containerd process itself writes the log
files (its CRI plugin reads the container's output from FIFOs and writes the CRI lines), the
part dockerd plays for the json-file; each pod's runc shim holds the FIFOs and waits on the
container, as Docker's shims do.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

from shipper.cri import runtime_v1_pb2 as api
from tests.support.containerd import Container, Pod, PrivateContainerd, containerd_missing


class BenchContainerd:
    """A private containerd with the busybox image, started for the CRI scenarios."""

    def __init__(self) -> None:
        reason = containerd_missing()
        if reason is not None:
            raise RuntimeError(f"the cri mode needs a private containerd: {reason}")
        # Short: unix socket paths are limited to 107 bytes.
        self.daemon = PrivateContainerd(Path(tempfile.mkdtemp(prefix="shipper-bctrd-", dir="/tmp")))
        try:
            self.daemon.start()
            self.daemon.import_image()
        except BaseException:
            self.daemon.teardown()
            raise

    @property
    def socket(self) -> Path:
        return self.daemon.socket

    @property
    def log_root(self) -> Path:
        return self.daemon.log_root

    def pod(self, labels: dict[str, str]) -> Pod:
        """A pod sandbox with `labels` (its shim starts with it)."""
        return self.daemon.run_pod(labels=labels)

    def start(self, pod: Pod, command: str) -> Container:
        """A container in `pod` running `sh -c command`, started."""
        return self.daemon.create_container(pod, "writer", ["sh", "-c", command])

    def daemon_pids(self) -> list[int]:
        """The containerd process: it writes the CRI log files."""
        assert self.daemon.process is not None
        return [self.daemon.process.pid]

    def shim_pids(self) -> list[int]:
        """This containerd's runc shims (one per pod; they name its socket)."""
        marker = str(self.daemon.socket).encode()
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                    if argv[0].endswith(b"containerd-shim-runc-v2") and marker in argv:
                        found.append(int(entry))
        return found

    def times(self, container: Container) -> tuple[float, float]:
        """When the container started and (0.0 while it runs) finished, in epoch seconds."""
        status = self.daemon.status(container)
        finished = status.finished_at / 1e9 if status.state == api.CONTAINER_EXITED else 0.0
        return status.started_at / 1e9, finished

    def remove(self, container: Container) -> None:
        with contextlib.suppress(Exception):
            self.daemon.remove_pod(container.pod.id)

    def wait_for(self, container: Container, marker: bytes, timeout_s: float) -> None:
        """Until `marker` ends the container's log file (it wrote everything before it)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(OSError), container.log_path.open("rb") as file:
                file.seek(max(0, file.seek(0, os.SEEK_END) - 200))
                if marker in file.read():
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("the CRI backlog writer did not finish")
            time.sleep(0.2)

    def stop(self) -> None:
        """Removes every pod, stops containerd, removes its directory and cgroup parent."""
        self.daemon.teardown()
