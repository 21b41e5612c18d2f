"""Error classes, classified once: transient errors are retried, permanent ones are not.

Imports nothing of ours so every module may raise these.
"""

from __future__ import annotations


class ShipperError(Exception):
    """Base class of every error the shipper raises on purpose."""


class ConfigError(ShipperError):
    """The configuration is wrong; names the key and what is wrong with it (exit code 2)."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}" if key else problem)


class TransientError(ShipperError):
    """Worth retrying: the same call may succeed later (connection lost, 429, 503, disk full)."""


class PermanentError(ShipperError):
    """Retrying cannot help: the input or the request itself is wrong."""


class DiskFullError(TransientError):
    """ENOSPC while writing state; reading pauses until space is back."""
