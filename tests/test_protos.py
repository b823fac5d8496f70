"""The committed gRPC code is exactly what scripts/gen_protos.py makes from protos/farm.proto."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "nn_farm" / "farm" / "_proto"


def test_generated_code_matches_the_proto(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True, timeout=120)
    fresh = {p.name: p.read_text() for p in tmp_path.iterdir() if p.suffix in (".py", ".pyi")}
    committed = {p.name: p.read_text() for p in COMMITTED.iterdir() if p.suffix in (".py", ".pyi")}
    assert sorted(fresh) == sorted(committed) == ["__init__.py", "farm_pb2.py", "farm_pb2.pyi", "farm_pb2_grpc.py"]
    for name in fresh:
        assert fresh[name] == committed[name], f"{name} is stale: run `python scripts/gen_protos.py`"


def test_the_service_has_the_contracted_methods():
    from nn_farm.farm._proto import farm_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["Profiler"]
    assert [m.name for m in service.methods] == ["ListDevices", "HasModel", "PutModel", "Profile", "Health"]
    put = service.methods_by_name["PutModel"]
    assert put.client_streaming and not put.server_streaming
    # Field numbers are the wire contract: renumbering breaks deployed agents.
    fields = {f.name: f.number for f in pb.Measurement.DESCRIPTOR.fields}
    assert fields["samples_ms"] == 10 and fields["started_unix_s"] == 30 and fields["finished_unix_s"] == 31
    assert {f.name: f.number for f in pb.DeviceHealth.DESCRIPTOR.fields}["worker_pid"] == 6
