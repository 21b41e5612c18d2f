"""Kubelet's pod log layout: what a path says, and a log's rotations in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipper.cri.paths import (
    LogPath,
    PodDirectory,
    Rotation,
    parse_attempt,
    parse_log_path,
    parse_pod_directory,
    relocate,
    rotations,
)

UID = "6f1c3a2e-1b7d-4c7a-9f1e-0d2b3c4d5e6f"


def test_a_log_path_names_namespace_pod_uid_container_and_attempt() -> None:
    path = f"/var/log/pods/kube-system_coredns-5d78c9869d-abcde_{UID}/coredns/3.log"
    parsed = parse_log_path(path)
    assert parsed == LogPath(
        Path("/var/log/pods"),
        PodDirectory("kube-system", "coredns-5d78c9869d-abcde", UID),
        "coredns",
        3,
    )
    assert parsed.path == Path(path)
    assert (parsed.namespace, parsed.pod_name, parsed.pod_uid) == (
        "kube-system",
        "coredns-5d78c9869d-abcde",
        UID,
    )


def test_a_path_under_another_root_is_refused_when_the_root_is_given() -> None:
    path = f"/var/log/pods/default_web_{UID}/nginx/0.log"
    assert parse_log_path(path, "/var/log/pods") is not None
    assert parse_log_path(path, "/host/var/log/pods") is None


def test_the_runtimes_path_is_relocated_to_where_the_shipper_sees_the_pods() -> None:
    relocated = relocate(f"/var/log/pods/default_web_{UID}/nginx/1.log", "/host/pods")
    assert relocated is not None
    assert relocated.path == Path(f"/host/pods/default_web_{UID}/nginx/1.log")
    assert relocated.attempt == 1


@pytest.mark.parametrize(
    "path",
    [
        f"/var/log/pods/default_web_{UID}/nginx/0.log.20261206-153557",  # a rotation
        f"/var/log/pods/default_web_{UID}/nginx/x.log",
        f"/var/log/pods/default_web_{UID}/nginx/01.log",  # kubelet writes no leading zero
        "/var/log/pods/default_web/nginx/0.log",  # no uid
        f"/var/log/pods/default_web_{UID}_x/nginx/0.log",  # four parts
        f"/var/log/pods/_web_{UID}/nginx/0.log",  # empty namespace
        "0.log",
    ],
)
def test_other_shapes_are_not_log_paths(path: str) -> None:
    assert parse_log_path(path) is None


def test_pod_directory_and_attempt_names() -> None:
    assert parse_pod_directory(f"ns_pod_{UID}") == PodDirectory("ns", "pod", UID)
    assert PodDirectory("ns", "pod", UID).name == f"ns_pod_{UID}"
    assert parse_pod_directory("ns_pod") is None
    assert parse_attempt("0.log") == 0
    assert parse_attempt("12.log") == 12
    assert parse_attempt("12.log.gz") is None
    assert parse_attempt("a.log") is None


def test_rotations_are_oldest_first_and_a_compressed_copy_of_a_plain_one_is_left_out(
    tmp_path: Path,
) -> None:
    log = tmp_path / "0.log"
    names = [
        "0.log",
        "0.log.20261206-153610",  # plain, newest
        "0.log.20261206-153550.gz",
        "0.log.20261206-153600",  # being compressed: plain and .gz both there
        "0.log.20261206-153600.gz",
        "0.log.20261206-153600.tmp",  # kubelet's temporary file: no rotation
        "1.log",
        "1.log.20261206-153540.gz",  # another attempt's
        "0.log.garbage",
    ]
    assert rotations(log, names) == [
        Rotation(tmp_path / "0.log.20261206-153550.gz", "20261206-153550", True),
        Rotation(tmp_path / "0.log.20261206-153600", "20261206-153600", False),
        Rotation(tmp_path / "0.log.20261206-153610", "20261206-153610", False),
    ]


def test_rotations_are_listed_from_the_directory(tmp_path: Path) -> None:
    for name in ("0.log", "0.log.20261206-153557", "0.log.20261206-153547.gz"):
        (tmp_path / name).touch()
    assert [r.stamp for r in rotations(tmp_path / "0.log")] == [
        "20261206-153547",
        "20261206-153557",
    ]
    assert rotations(tmp_path / "gone" / "0.log") == []
