"""Choosing the Engine API version: the rule Docker's clients follow, within our range."""

from __future__ import annotations

import pytest

from shipper.config import load_config
from shipper.docker.versions import (
    NEWEST,
    OLDEST,
    ApiVersion,
    EngineVersions,
    VersionMismatch,
    choose,
    refused_version,
)
from shipper.errors import ConfigError

V = ApiVersion.parse

# GET /version of the engines CI runs (fields trimmed to the ones read).
DEBIAN_20_10 = {"Version": "20.10.24+dfsg1", "ApiVersion": "1.41", "MinAPIVersion": "1.12"}
SID_28_MIN_144 = {"Version": "28.5.2+dfsg4", "ApiVersion": "1.51", "MinAPIVersion": "1.44"}


def engine(newest: str, oldest: str | None = None, version: str = "x") -> EngineVersions:
    return EngineVersions(version, V(newest), V(oldest) if oldest else None)


def test_versions_compare_as_numbers_not_strings() -> None:
    assert V("1.9") < V("1.10") < V("1.41") < V("1.100")
    assert V("v1.44") == V("1.44") and str(V("v1.44")) == "1.44"
    for bad in ("", "1", "1.x", "latest", "1.44.0", " v"):
        with pytest.raises(ValueError):
            V(bad)


def test_the_engines_in_ci_get_their_newest_version() -> None:
    assert choose(EngineVersions.from_version(DEBIAN_20_10), None, "k") == V("1.41")
    assert choose(EngineVersions.from_version(SID_28_MIN_144), None, "k") == V("1.51")


def test_an_engine_newer_than_the_shipper_is_spoken_to_at_the_shippers_newest() -> None:
    # Docker 29: API 1.52, minimum 1.44.
    assert choose(engine("1.52", "1.44"), None, "k") == NEWEST


def test_an_engine_whose_minimum_is_above_our_newest_is_a_clear_error() -> None:
    with pytest.raises(VersionMismatch) as caught:
        choose(engine("1.60", "1.52", "31.0.0"), None, "k")
    message = str(caught.value)
    # Both sides' versions, and what to do.
    assert "31.0.0" in message and "1.52" in message and f"{OLDEST} to {NEWEST}" in message
    assert "Upgrade the shipper" in message and f"DOCKER_MIN_API_VERSION={NEWEST}" in message


def test_an_engine_older_than_our_oldest_is_a_clear_error_unless_pinned() -> None:
    old = engine("1.40", "1.12", "19.03.15")
    with pytest.raises(VersionMismatch, match=r"19\.03\.15.*older than this shipper supports"):
        choose(old, None, "k")
    assert choose(old, V("1.40"), "docker.api_version") == V("1.40")


def test_a_pinned_version_is_kept_when_the_engine_accepts_it() -> None:
    assert choose(engine("1.51", "1.44"), V("1.44"), "k") == V("1.44")
    assert choose(engine("1.41"), V("1.24"), "k") == V("1.24")  # no MinAPIVersion: trusted


@pytest.mark.parametrize("pinned", ["1.41", "1.52"], ids=["too_old", "too_new"])
def test_a_pinned_version_the_engine_refuses_is_a_clear_error(pinned: str) -> None:
    with pytest.raises(VersionMismatch) as caught:
        choose(engine("1.51", "1.44", "28.5.2"), V(pinned), "DOCKER_API_VERSION")
    message = str(caught.value)
    assert f"refuses API {pinned}, which DOCKER_API_VERSION pins" in message
    assert "28.5.2" in message and "1.44 to 1.51" in message and "auto" in message


def test_an_engine_without_an_api_version_is_not_guessed() -> None:
    with pytest.raises(ValueError):
        EngineVersions.from_version({"Version": "x"})


def test_the_engines_refusal_messages_are_recognised() -> None:
    # Verbatim from dockerd 28.5.2 with DOCKER_MIN_API_VERSION=1.44, and its "too new" twin.
    assert refused_version(
        "client version 1.41 is too old. Minimum supported API version is 1.44, please "
        "upgrade your client to a newer version"
    ) == ("1.41", "old")
    assert refused_version(
        "client version 1.52 is too new. Maximum supported API version is 1.51"
    ) == ("1.52", "new")
    assert refused_version("No such container: abc") is None


def test_config_api_version_auto_by_default_docker_api_version_and_pins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DOCKER_API_VERSION", raising=False)
    assert load_config(None, environ={}).docker.api_version == "auto"
    monkeypatch.setenv("DOCKER_API_VERSION", "1.44")
    docker = load_config(None).docker
    assert (docker.api_version, docker.api_version_source) == ("1.44", "DOCKER_API_VERSION")
    docker = load_config(None, {"docker.api_version": "v1.45"}).docker
    assert (docker.api_version, docker.api_version_source) == ("1.45", "docker.api_version")
    docker = load_config(None, {"docker.api_version": "auto"}).docker
    assert docker.api_version == "auto"  # the file wins over the variable
    monkeypatch.setenv("DOCKER_API_VERSION", "latest")
    with pytest.raises(ConfigError, match="DOCKER_API_VERSION"):
        load_config(None)
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"docker.api_version": "1"})
    assert caught.value.key == "docker.api_version"


def test_containers_path_default_depends_on_where_the_shipper_runs() -> None:
    docker = load_config(None, environ={}).docker
    assert docker.containers_path is None
    assert docker.containers_path_here(in_container=True) == "/var/lib/docker/containers"
    assert docker.containers_path_here(in_container=False) is None  # the engine says
    pinned = load_config(None, {"docker.containers_path": "/mnt/c"}, environ={}).docker
    assert pinned.containers_path_here(in_container=True) == "/mnt/c"
    assert pinned.containers_path_here(in_container=False) == "/mnt/c"
