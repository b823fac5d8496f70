"""Every host runtime loads and measures the bundled conv network, and refuses bad input clearly."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from nn_farm.errors import ConfigError, DeviceUnavailable, InvalidModel
from nn_farm.farm import runtimes
from nn_farm.farm.measure import measure_file
from nn_farm.farm.policy import MeasurePolicy, SpeedGate
from nn_farm.farm.runtimes import RUNTIME_NAMES, bundled_model, format_of, get_runtime
from nn_farm.farm.tensors import TensorSpec

QUICK = MeasurePolicy(warmup_runs=2, warmup_s=0.0, min_runs=20, min_s=0.0, max_runs=200, max_s=2.0,
                      speed_gate=SpeedGate(calm_wait_s=0.5, min_fast=5, max_attempts=2))


def _installed(name: str):
    status = get_runtime(name).status()
    if not status.available:
        pytest.skip(f"{name}: {status.reason}")
    return status


@pytest.mark.parametrize("name", RUNTIME_NAMES)
def test_runtime_measures_bundled_convnet(name):
    status = _installed(name)
    m = measure_file(name, str(bundled_model(name)), policy=QUICK)

    assert m.runtime == name and m.runtime_version == status.version
    assert m.device["threads"] >= 1 and m.device["hostname"]
    samples = np.array(m.samples_ms)
    assert np.all(np.isfinite(samples)) and np.all(samples > 0)
    # Each attempt samples between min_runs and max_runs.
    assert QUICK.min_runs * m.attempts <= m.runs <= QUICK.max_runs * m.attempts
    assert m.runs == len(samples) == len(m.kept) == len(m.probe_ms)
    kept = samples[np.array(m.kept)]
    assert m.kept_runs == kept.size > 0
    assert m.median_ms == pytest.approx(np.median(kept))
    assert m.min_ms == pytest.approx(kept.min())
    assert kept.min() <= m.p10_ms <= m.median_ms <= m.p90_ms <= kept.max()
    assert m.speed_state in ("fast", "slow") and m.speed_factor >= 1.0


def test_bundled_models_are_small_and_of_the_right_format():
    for name in RUNTIME_NAMES:
        path = bundled_model(name)
        assert path.stat().st_size < 100_000
        assert format_of(path) in get_runtime(name).formats


def _truncated(tmp_path, name):
    src = bundled_model(name)
    dst = tmp_path / f"truncated{src.suffix}"
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


@pytest.mark.parametrize("name", RUNTIME_NAMES)
def test_truncated_model_is_invalid_with_the_runtimes_message(name, tmp_path):
    _installed(name)
    path = _truncated(tmp_path, name)
    with pytest.raises(InvalidModel) as info:
        get_runtime(name).load(str(path))
    message = str(info.value)
    assert str(path) in message and name in message
    # The library's own exception is chained and its text carried.
    assert info.value.__cause__ is not None
    assert str(info.value.__cause__).strip()[:40] in message


@pytest.mark.parametrize("name", RUNTIME_NAMES)
def test_garbage_bytes_are_invalid(name, tmp_path):
    _installed(name)
    path = tmp_path / f"garbage{bundled_model(name).suffix}"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(InvalidModel, match="garbage"):
        get_runtime(name).load(str(path))


@pytest.mark.parametrize("name", RUNTIME_NAMES)
def test_wrong_input_shape_is_invalid(name):
    _installed(name)
    rt = get_runtime(name)
    spec = get_runtime(name).load(str(bundled_model(name))).inputs[0]
    # Four channels where the first conv expects three.
    shape = (1, 32, 32, 4) if name == "litert" else (1, 4, 32, 32)
    with pytest.raises(InvalidModel, match=name):
        rt.load(str(bundled_model(name)), inputs=[TensorSpec(spec.name, shape)])


def test_unknown_input_name_is_named():
    with pytest.raises(InvalidModel, match="no input named 'nope'"):
        get_runtime("onnxruntime").load(str(bundled_model("onnxruntime")),
                                        inputs=[TensorSpec("nope", (1, 3, 32, 32))])


@pytest.fixture
def dynamic_onnx(tmp_path):
    import onnx

    model = onnx.load(str(bundled_model("onnxruntime")))
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    dim.dim_param = "batch"
    path = tmp_path / "dynamic.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_dynamic_input_needs_a_shape(name, dynamic_onnx):
    _installed(name)
    with pytest.raises(InvalidModel, match="input 'input' has dynamic shape"):
        get_runtime(name).load(str(dynamic_onnx))
    session = get_runtime(name).load(str(dynamic_onnx), inputs=[TensorSpec("input", (2, 3, 32, 32))])
    assert session.inputs == [TensorSpec("input", (2, 3, 32, 32))]
    session.run()
    session.close()


def test_missing_openvino_device_is_unavailable():
    _installed("openvino")
    rt = get_runtime("openvino")
    for device in ("NPU", "GPU", "MYRIAD"):
        status = rt.status({"device": device})
        assert not status.available
        assert device in status.reason and "CPU" in status.reason  # names what is present
    with pytest.raises(DeviceUnavailable, match="NPU"):
        rt.load(str(bundled_model("openvino")), options={"device": "NPU"})
    assert rt.status({"device": "CPU"}).available


def test_litert_without_xnnpack_reports_no_delegate():
    _installed("litert")
    session = get_runtime("litert").load(str(bundled_model("litert")), options={"xnnpack": False, "threads": 2})
    assert session.identity == {"threads": 2, "delegate": "none"}
    session.run()
    session.close()


def test_torch_loads_a_torch_export_program(tmp_path):
    import torch

    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    program = torch.export.export(module, (torch.randn(1, 3, 8, 8),))
    path = tmp_path / "tiny.pt2"
    torch.export.save(program, str(path))
    session = get_runtime("torch").load(str(path))
    assert [s.shape for s in session.inputs] == [(1, 3, 8, 8)]
    session.run()
    session.close()


def test_unknown_runtime_and_option_are_named():
    with pytest.raises(DeviceUnavailable, match="'tensorrt'.*onnxruntime"):
        get_runtime("tensorrt")
    with pytest.raises(ConfigError, match="intra_threads"):
        get_runtime("onnxruntime").load(str(bundled_model("onnxruntime")), options={"intra_threads": 2})
    with pytest.raises(InvalidModel, match="no such model file"):
        get_runtime("onnxruntime").load("/nonexistent/model.onnx")
    with pytest.raises(InvalidModel, match="reads"):
        get_runtime("litert").load(str(bundled_model("onnxruntime")))


def test_format_of_by_extension_and_by_content(tmp_path):
    assert [format_of(p) for p in ("a.tflite", "b.onnx", "c.xml", "d.pt", "e.pt2", "onnx")] == \
        ["tflite", "onnx", "xml", "pt", "pt2", "onnx"]
    for name in RUNTIME_NAMES:
        src = bundled_model(name)
        bare = tmp_path / f"{name}-by-digest"
        shutil.copy(src, bare)
        assert format_of(bare) == format_of(src)
    with pytest.raises(InvalidModel, match="cannot tell"):
        format_of("model.bin")


def test_simulated_runtime_is_separate_and_sleeps(tmp_path):
    assert "simulated" not in RUNTIME_NAMES
    path = tmp_path / "sim.json"
    path.write_text(json.dumps({"simulated_latency_ms": 2.0, "jitter": 0.0}))
    m = measure_file("simulated", str(path), policy=MeasurePolicy(runs_exact=5, warmup_runs=0, warmup_s=0,
                                                                  speed_gate=SpeedGate(mode="off")))
    assert m.runs == 5 and all(s >= 2.0 for s in m.samples_ms)  # sleep never returns early
    assert m.device["delegate"] == "simulated"
    bad = tmp_path / "bad.json"
    bad.write_text('{"latency": 3}')
    with pytest.raises(InvalidModel, match="simulated_latency_ms"):
        get_runtime("simulated").load(str(bad))


def test_public_names_exist():
    for name in runtimes.__all__:
        assert hasattr(runtimes, name), name


def test_tensor_spec_wire_form_and_bad_values():
    spec = TensorSpec("x", [1, 3, 8, 8], "int64")
    assert TensorSpec.from_proto(spec.to_proto()) == spec
    assert TensorSpec.from_dict(spec.to_dict()) == spec
    from nn_farm.farm._proto import farm_pb2 as pb

    assert TensorSpec.from_proto(pb.TensorSpec(name="y", shape=[2])).dtype == "float32"
    with pytest.raises(InvalidModel, match="'x'.*positive"):
        TensorSpec("x", (1, 0))
    with pytest.raises(InvalidModel, match="dtype 'floaty'"):
        TensorSpec("x", (1,), "floaty")


def test_importing_runtimes_loads_no_runtime_library():
    import subprocess
    import sys

    code = ("import sys, nn_farm.farm.runtimes as r, nn_farm.farm.measure\n"
            "[r.get_runtime(n) for n in (*r.RUNTIME_NAMES, 'simulated')]\n"
            "print(sorted(m for m in ('torch', 'tensorflow', 'openvino', 'onnxruntime', 'ai_edge_litert')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
