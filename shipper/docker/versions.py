"""Engine API versions: the range the shipper is tested against, and the choice of one.

Every Engine API path carries a version (`/v1.51/containers/json`). An engine serves a range
of them, from `MinAPIVersion` up to `ApiVersion` (both in the unversioned `GET /version`),
and answers anything outside it with `400 client version 1.41 is too old. Minimum supported
API version is 1.44, ...` (Docker 29 refuses everything below 1.44; dockerd 25-28 do so
when started with DOCKER_MIN_API_VERSION=1.44). Docker's own clients negotiate (the Go
client's `NegotiateAPIVersion`): they speak the lower of the engine's newest and their own
newest version, unless the version is pinned (`DOCKER_API_VERSION`, or `WithVersion`), in
which case nothing is negotiated. The shipper does the same, within the range it is tested
against (`OLDEST`..`NEWEST`, CI runs both ends; see the README's engine table), and says
clearly when no version fits instead of guessing one the engine will refuse.

Pure: no I/O. `shipper.docker.api` asks the engine and applies the choice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shipper.docker.engine import DOCKER, PODMAN, runtime_of

AUTO = "auto"
_VERSION = re.compile(r"v?(\d+)\.(\d+)")
# The engine's refusal, e.g. "client version 1.41 is too old. Minimum supported API version
# is 1.44, please upgrade your client to a newer version" (and "... is too new. Maximum
# supported API version is 1.51").
_REFUSAL = re.compile(r"client version (\S+) is too (old|new)", re.IGNORECASE)


@dataclass(frozen=True, order=True, slots=True)
class ApiVersion:
    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> ApiVersion:
        """`1.44` (or `v1.44`, as the Docker CLI accepts it); ValueError otherwise."""
        match = _VERSION.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"not an Engine API version: {text!r} (expected e.g. 1.44)")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


# The range the shipper is tested against: Docker 20.10 (Debian bookworm's docker.io) up to
# the newest engine in CI (Debian sid's docker.io 28.5). A newer engine is spoken to at
# NEWEST, which it serves as long as its minimum is not above it.
OLDEST = ApiVersion(1, 41)
NEWEST = ApiVersion(1, 51)


@dataclass(frozen=True, slots=True)
class EngineVersions:
    """What an engine says of itself in `GET /version`."""

    engine: str  # the engine's own version, e.g. "28.5.2"
    newest: ApiVersion  # ApiVersion
    oldest: ApiVersion | None  # MinAPIVersion; absent in engines older than API 1.24
    runtime: str = DOCKER  # which engine: docker, or podman (see shipper.docker.engine)

    @classmethod
    def from_version(cls, body: Mapping[str, Any]) -> EngineVersions:
        """From `GET /version`'s body; ValueError if it names no API version."""
        newest = ApiVersion.parse(str(body.get("ApiVersion") or ""))
        minimum = body.get("MinAPIVersion")
        oldest = ApiVersion.parse(str(minimum)) if minimum else None
        return cls(str(body.get("Version") or "unknown"), newest, oldest, runtime_of(body))

    def accepts(self, version: ApiVersion) -> bool:
        return version <= self.newest and (self.oldest is None or version >= self.oldest)

    def describe(self) -> str:
        low = f"{self.oldest}" if self.oldest is not None else "?"
        name = "Podman" if self.runtime == PODMAN else "Docker Engine"
        return f"{name} {self.engine} (API {low} to {self.newest})"


class VersionMismatch(ValueError):
    """No API version that both sides support; the message says which and what to do."""


def choose(engine: EngineVersions, pinned: ApiVersion | None, pinned_by: str) -> ApiVersion:
    """The version to speak: `pinned` if given and accepted, else the highest both support.

    `pinned_by` names what pinned it, for the message (the config key, or the variable).
    """
    ours = f"{OLDEST} to {NEWEST}"
    if pinned is not None:
        if not engine.accepts(pinned):
            raise VersionMismatch(
                f"{engine.describe()} refuses API {pinned}, which {pinned_by} pins. Set "
                f"docker.api_version to auto (this shipper supports API {ours}) or to a "
                "version the engine accepts."
            )
        return pinned
    best = min(engine.newest, NEWEST)
    if engine.oldest is not None and best < engine.oldest:
        raise VersionMismatch(
            f"{engine.describe()} accepts no API version this shipper supports ({ours}): "
            "the engine is newer than this shipper. Upgrade the shipper; meanwhile the engine "
            f"accepts API {NEWEST} if dockerd runs with DOCKER_MIN_API_VERSION={NEWEST}."
        )
    if best < OLDEST:
        raise VersionMismatch(
            f"{engine.describe()} is older than this shipper supports (API {ours}): upgrade "
            f"Docker Engine to 20.10 or later, or pin docker.api_version: {engine.newest} "
            "(untested)."
        )
    return best


def refused_version(message: str) -> tuple[str, str] | None:
    """(version, "old" or "new") if an engine's error message refuses the client's version."""
    match = _REFUSAL.search(message)
    return (match.group(1), match.group(2).lower()) if match else None
