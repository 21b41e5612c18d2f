"""shipper: ships every container's logs (Docker Engine, Podman, Kubernetes on containerd or CRI-O)
into Elasticsearch, exactly once. The map of the code: docs/architecture.md."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("shipper")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
