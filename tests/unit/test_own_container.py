"""Own-container detection on sample /proc/self/{cgroup,mountinfo} contents: cgroup v1 and v2,
Docker's cgroupfs and systemd drivers, Kubernetes, and a shared network namespace, where the
network files name another container and the cgroup must win."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipper.docker.own_container import (
    OwnContainer,
    detect_own_container,
    id_from_cgroup,
    id_from_cgroup_mounts,
    id_from_network_files,
    own_container_id,
    own_pod_uid,
)

OWN = "2b781127ad821adbf059c125a3d1caa210d566a8b28cee9cd6acb0835518799f"
# The container whose network namespace ours joined (`--network container:X`, a pod's pause).
OTHER = "10ec23508d5d5280b2eb5513f517214de5d1150fed3c8fa8f6f0109d9da122b4"
OUTER = "a" * 64
POD = "5f3c2f9e-7a1b-4c55-9d2e-0b8e6f1a2c3d"

# Docker 20.10, cgroup v1, cgroupfs driver (captured from a container on the CI machine).
CGROUP_V1 = "".join(
    f"{n}:{controllers}:/docker/{OWN}\n"
    for n, controllers in [
        (9, "name=systemd"), (8, "pids"), (4, "memory"), (1, "cpu"), (0, ""),
    ]
)  # fmt: skip


def network_files(container_id: str) -> str:
    return "".join(
        f"{91 + i} 74 254:0 /var/lib/docker/containers/{container_id}/{name} /etc/{name} "
        "rw,relatime - ext4 /dev/vda rw,discard\n"
        for i, name in enumerate(["resolv.conf", "hostname", "hosts"])
    )


ROOT_AND_PROC = (
    "74 48 0:39 / / rw,relatime master:2 - overlay overlay rw,lowerdir=/var/lib/docker/"
    "overlay2/l/EWNH7:/var/lib/docker/overlay2/l/UFVSP,upperdir=/var/lib/docker/overlay2/"
    "39539be5/diff,workdir=/var/lib/docker/overlay2/39539be5/work\n"
    "75 74 0:42 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n"
    # The shipper's own read-only mount of the json-file directory holds every container's
    # id below it, but its root is the directory itself: it must not be mistaken for ours.
    "96 74 254:0 /var/lib/docker/containers /var/lib/docker/containers ro,relatime - ext4 "
    "/dev/vda rw\n"
)


def v1_mounts(cgroup_root: str) -> str:
    return "79 74 0:46 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755\n" + "".join(
        f"{80 + i} 79 0:{29 + i} {cgroup_root} /sys/fs/cgroup/{c} ro,nosuid,nodev,noexec,"
        f"relatime - cgroup cgroup rw,{c}\n"
        for i, c in enumerate(["cpu", "cpuacct", "memory", "pids"])
    )


# cgroup v2 with a private cgroup namespace (Docker's default on v2): no id anywhere but the
# network files.
V2_PRIVATE_CGROUP = "0::/\n"
V2_PRIVATE_MOUNT = (
    "80 74 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n"
)


def proc(tmp_path: Path, cgroup: str | None, mountinfo: str | None) -> Path:
    root = tmp_path / "self"
    root.mkdir()
    if cgroup is not None:
        (root / "cgroup").write_text(cgroup)
    if mountinfo is not None:
        (root / "mountinfo").write_text(mountinfo)
    return root


def test_cgroup_v1_with_its_own_network(tmp_path: Path) -> None:
    self_dir = proc(
        tmp_path, CGROUP_V1, ROOT_AND_PROC + v1_mounts(f"/docker/{OWN}") + network_files(OWN)
    )
    assert detect_own_container(self_dir) == OwnContainer(OWN, "cgroup")
    assert own_container_id(self_dir) == OWN


def test_cgroup_v1_in_a_shared_network_namespace_finds_itself_not_the_network_owner(
    tmp_path: Path,
) -> None:
    mountinfo = ROOT_AND_PROC + v1_mounts(f"/docker/{OWN}") + network_files(OTHER)
    assert id_from_network_files(mountinfo) == OTHER  # what the old detection returned
    assert detect_own_container(proc(tmp_path, CGROUP_V1, mountinfo)) == OwnContainer(OWN, "cgroup")


def test_cgroup_v1_mounts_decide_when_proc_cgroup_is_unreadable(tmp_path: Path) -> None:
    mountinfo = ROOT_AND_PROC + v1_mounts(f"/docker/{OWN}") + network_files(OTHER)
    assert id_from_cgroup_mounts(mountinfo) == OWN
    assert detect_own_container(proc(tmp_path, None, mountinfo)) == OwnContainer(
        OWN, "cgroup_mount"
    )


@pytest.mark.parametrize(
    "cgroup",
    [
        # v2, host cgroup namespace, systemd driver
        f"0::/system.slice/docker-{OWN}.scope\n",
        # v2, host cgroup namespace, cgroupfs driver
        f"0::/docker/{OWN}\n",
        # v1 and v2 hybrid, systemd driver
        f"12:pids:/system.slice/docker-{OWN}.scope\n0::/system.slice/docker-{OWN}.scope\n",
        # kubelet + cri-dockerd, cgroupfs driver
        f"0::/kubepods/burstable/pod{POD}/{OWN}\n",
        # kubelet + cri-dockerd, systemd driver
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
        f"{POD.replace('-', '_')}.slice/docker-{OWN}.scope\n",
        # Docker in Docker with the host's cgroup namespace: the innermost is ours
        f"0::/docker/{OUTER}/docker/{OWN}\n",
        # a process in a sub-cgroup of its container (an init inside it)
        f"0::/docker/{OWN}/init.scope\n",
    ],
)
def test_cgroup_paths_name_the_container(tmp_path: Path, cgroup: str) -> None:
    assert id_from_cgroup(cgroup) == OWN
    self_dir = proc(tmp_path, cgroup, ROOT_AND_PROC + V2_PRIVATE_MOUNT + network_files(OTHER))
    assert detect_own_container(self_dir) == OwnContainer(OWN, "cgroup")


def test_cgroup_v2_private_namespace_falls_back_to_the_network_files(tmp_path: Path) -> None:
    mountinfo = ROOT_AND_PROC + V2_PRIVATE_MOUNT + network_files(OWN)
    assert id_from_cgroup(V2_PRIVATE_CGROUP) is None
    assert id_from_cgroup_mounts(mountinfo) is None
    assert detect_own_container(proc(tmp_path, V2_PRIVATE_CGROUP, mountinfo)) == OwnContainer(
        OWN, "network_files"
    )


def test_cgroup_v2_private_namespace_in_a_shared_network_says_the_id_is_uncertain(
    tmp_path: Path,
) -> None:
    # Nothing inside the container tells the two apart: the result is the network owner, and
    # its source says so (the caller warns; on Kubernetes the pod uid excludes us instead).
    mountinfo = ROOT_AND_PROC + V2_PRIVATE_MOUNT + network_files(OTHER)
    assert detect_own_container(proc(tmp_path, V2_PRIVATE_CGROUP, mountinfo)) == OwnContainer(
        OTHER, "network_files"
    )


def test_outside_a_container_nothing_is_found(tmp_path: Path) -> None:
    host_cgroup = "0::/user.slice/user-1000.slice/session-3.scope\n"
    host_mounts = (
        "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        "25 22 0:23 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw\n"
        # dockerd's own mounts of a container's shm show on the host, under the mount point
        "310 22 0:50 / /var/lib/docker/containers/" + OTHER + "/mounts/shm rw - tmpfs shm rw\n"
    )
    assert detect_own_container(proc(tmp_path, host_cgroup, host_mounts)) is None
    assert own_container_id(tmp_path / "no-such-proc") is None


def test_malformed_mountinfo_lines_are_skipped() -> None:
    assert id_from_network_files(f"garbage /var/lib/docker/containers/{OTHER}/hosts\n") is None
    assert id_from_cgroup_mounts("1 2 3 /docker/x /sys - \n") is None
    assert id_from_cgroup("no colons here\n0::\n") is None


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"POD_UID": POD}, POD),
        ({"POD_UID": f" {POD.upper()}\n"}, POD),
        ({"POD_UID": ""}, None),
        ({"POD_UID": "not-a-uid"}, None),
        ({"POD_UID": "$(POD_UID)"}, None),  # an unresolved downward API reference
        ({}, None),
    ],
)
def test_own_pod_uid_comes_from_the_downward_api(
    environ: dict[str, str], expected: str | None
) -> None:
    assert own_pod_uid(environ) == expected
