"""shipper: ships every Docker container's logs into Elasticsearch exactly once."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("shipper")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
