"""The committed CRI message modules are what scripts/generate-cri-protos makes of the .proto
files today: an edit of a .proto without regenerating (or of generated code by hand) fails."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROTOS = ["shipper/cri/runtime_v1.proto", "tests/support/cri_testbed.proto"]


@pytest.mark.parametrize("proto", PROTOS)
def test_generated_modules_match_their_proto(proto: str, tmp_path: Path) -> None:
    protoc = pytest.importorskip("grpc_tools.protoc")
    args = [sys.argv[0], f"--proto_path={REPO}", f"--python_out={tmp_path}"]
    args += [f"--pyi_out={tmp_path}", str(REPO / proto)]
    assert protoc.main(args) == 0
    stem = proto.removesuffix(".proto")
    for suffix in ("_pb2.py", "_pb2.pyi"):
        generated = (tmp_path / (stem + suffix)).read_text()
        committed = (REPO / (stem + suffix)).read_text()
        assert committed == generated, f"{stem}{suffix} is stale: run scripts/generate-cri-protos"


def test_fields_containerd_1_6_never_sends_have_upstream_numbers() -> None:
    """The integration tests prove every field containerd 1.6 fills (a wrong number would
    read nothing); these newer ones it leaves empty, so their numbers are checked here
    against kubernetes/cri-api's pkg/apis/runtime/v1/api.proto."""
    from shipper.cri import runtime_v1_pb2 as api

    def number(message: str, field: str) -> int:
        return int(api.DESCRIPTOR.message_types_by_name[message].fields_by_name[field].number)

    assert api.DESCRIPTOR.package == "runtime.v1"
    assert number("Container", "image_id") == 10
    assert number("ContainerStatus", "image_id") == 17
    assert number("ImageSpec", "user_specified_image") == 18
