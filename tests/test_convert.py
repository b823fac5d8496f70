"""build_and_convert as the farm runs it: plain picklable calls in a fresh process,
stable files, clear errors, and files the farm's own runtimes load and run."""

import hashlib
import os
import pickle
import subprocess
import sys

import pytest
import torch

from nn_farm.builder import convert
from nn_farm.builder.convert import build_and_convert, model_ops, to_onnx, to_tflite
from nn_farm.builder.models import kernel_spec
from nn_farm.errors import BuilderError, ConfigError
from nn_farm.farm.runtimes import get_runtime

CONV = {"HW": 8, "CIN": 4, "COUT": 8, "KERNEL_SIZE": 3, "STRIDES": 1}
RULETEST = dict(CONV, SHAPE_1D=16, POOL_STRIDES=2)

# Run pickled calls in a new interpreter, as a Ray worker would: nothing imported first.
_WORKER = """
import pickle, sys
calls = pickle.load(sys.stdin.buffer)
paths = [fn(*args) for fn, args in calls]
sys.stdout.write("\\n" + "\\n".join(paths) + "\\n")
"""


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def run_in_farm_runtime(runtime, path):
    """Load ``path`` in the farm's runtime and run one inference."""
    rt = get_runtime(runtime)
    with rt.load(str(path)) as session:
        session.run()
        return [list(spec.shape) for spec in session.inputs]


def test_build_and_convert_in_a_fresh_process(tmp_path):
    out = str(tmp_path)
    calls = [
        (build_and_convert, ("kernel", "conv-bn-relu", CONV, "torch", "onnx", out)),
        (build_and_convert, ("testcase", "conv_relu/block", RULETEST, "tensorflow", "tflite", out)),
        (build_and_convert, ("operator", "fc", RULETEST, "torch", "onnx", out)),
        (build_and_convert, ("testcase", "MON/block", RULETEST, "tensorflow", "tflite", out)),
    ]
    proc = subprocess.run([sys.executable, "-c", _WORKER], input=pickle.dumps(calls),
                          capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    paths = proc.stdout.decode().strip().splitlines()[-4:]
    assert [os.path.splitext(p)[1] for p in paths] == [".onnx", ".tflite", ".onnx", ".tflite"]
    assert model_ops(paths[0]) == ["Conv", "Relu"]          # BN folded by the exporter
    assert model_ops(paths[1]) == ["CONV_2D"]               # relu fused by the converter
    assert run_in_farm_runtime("onnxruntime", paths[0]) == [[1, 4, 8, 8]]
    assert run_in_farm_runtime("openvino", paths[0]) == [[1, 4, 8, 8]]  # ONNX as is
    assert run_in_farm_runtime("litert", paths[1]) == [[1, 8, 8, 4]]
    assert run_in_farm_runtime("onnxruntime", paths[2]) == [[1, 16]]
    assert run_in_farm_runtime("litert", paths[3]) == [[1, 8, 8, 4]]
    # The same description in this process gives the very same files.
    for (fn, args), path in zip(calls, paths):
        assert sha256(fn(*args[:-1], str(tmp_path / "again"))) == sha256(path)


CUSTOM_OP = """
import torch
from nn_farm.builder.models.base import BaseOperator


class Triple(BaseOperator):
    def get_model(self):
        class Module(torch.nn.Module):
            def forward(self, x):
                return x * 3
        return Module()
"""


def test_registered_operator_converts_in_a_fresh_worker(tmp_path, monkeypatch):
    """The user's operator is registered by meta file; a fresh worker finds it."""
    from nn_farm.builder import registry

    monkeypatch.setenv("NN_FARM_HOME", str(tmp_path / "home"))
    package = tmp_path / "my_ops"
    package.mkdir()
    (package / "triple_op.py").write_text(CUSTOM_OP)
    meta = tmp_path / "meta.yaml"
    meta.write_text("builtin_name: triple\npackage_location: ./my_ops\n"
                    "class_module: triple_op\nclass_name: Triple\nimplement: torch\n")
    assert registry.register("operator", meta) == "triple"
    calls = [(build_and_convert, ("testcase", "conv_triple/block", RULETEST, "torch", "onnx",
                                  str(tmp_path / "out")))]
    proc = subprocess.run([sys.executable, "-c", _WORKER], input=pickle.dumps(calls),
                          capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    path = proc.stdout.decode().strip().splitlines()[-1]
    assert [op for op in model_ops(path) if op != "Constant"] == ["Conv", "Mul"]
    assert run_in_farm_runtime("onnxruntime", path) == [[1, 4, 8, 8]]


def test_same_description_same_file_and_reuse(tmp_path):
    first = build_and_convert("kernel", "dwconv-bn-relu6", CONV, "tensorflow", "tflite", tmp_path)
    digest, mtime = sha256(first), os.stat(first).st_mtime_ns
    assert build_and_convert("kernel", "dwconv-bn-relu6", CONV, "tensorflow", "tflite",
                             tmp_path) == first
    assert os.stat(first).st_mtime_ns == mtime  # reused, not rebuilt
    again = build_and_convert("kernel", "dwconv-bn-relu6", CONV, "tensorflow", "tflite",
                              tmp_path, overwrite=True)
    assert again == first and sha256(again) == digest
    other = build_and_convert("kernel", "dwconv-bn-relu6", dict(CONV, HW=10), "tensorflow",
                              "tflite", tmp_path)
    assert other != first
    other_seed = build_and_convert("kernel", "dwconv-bn-relu6", CONV, "tensorflow", "tflite",
                                   tmp_path, seed=1)
    assert sha256(other_seed) != digest
    assert model_ops(other_seed) == model_ops(first) == ["DEPTHWISE_CONV_2D"]


def test_openvino_ir(tmp_path):
    xml = build_and_convert("kernel", "conv-bn-hswish", CONV, "torch", "openvino", tmp_path)
    assert xml.endswith(".xml") and os.path.exists(xml[:-4] + ".bin")
    assert not list(tmp_path.glob("*.onnx"))  # the intermediate file is gone
    assert run_in_farm_runtime("openvino", xml) == [[1, 4, 8, 8]]


def test_to_onnx_plain_module_and_to_tflite_from_spec(tmp_path):
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU())
    path = to_onnx(module, [16, 16, 3], tmp_path / "plain.onnx")  # NHWC, no batch
    assert run_in_farm_runtime("onnxruntime", path) == [[1, 3, 16, 16]]
    path = to_tflite(kernel_spec("add", {"HW": 8, "CIN": 4}), tmp_path / "add.tflite")
    assert run_in_farm_runtime("litert", path) == [[1, 8, 8, 4], [1, 8, 8, 4]]
    path = to_tflite({"kind": "operator", "name": "hswish", "config": RULETEST},
                     tmp_path / "hswish.tflite")
    assert model_ops(path) == ["HARD_SWISH"]


def test_bad_requests_are_named_and_leave_no_file(tmp_path):
    with pytest.raises(ConfigError, match="'tflite' is made from tensorflow"):
        build_and_convert("kernel", "relu", {"HW": 8, "CIN": 4}, "torch", "tflite", tmp_path)
    with pytest.raises(ConfigError, match="unknown model format 'tvm'"):
        build_and_convert("kernel", "relu", {"HW": 8, "CIN": 4}, "torch", "tvm", tmp_path)
    with pytest.raises(ConfigError, match="unknown model kind 'layer'"):
        build_and_convert("layer", "relu", {"HW": 8, "CIN": 4}, "torch", "onnx", tmp_path)
    with pytest.raises(ConfigError, match="has no model 'relu6'"):
        build_and_convert("testcase", "conv_relu/relu6", RULETEST, "torch", "onnx", tmp_path)
    with pytest.raises(ConfigError, match="KERNEL_SIZE"):
        build_and_convert("kernel", "conv-bn", {"HW": 8, "CIN": 4, "COUT": 4, "STRIDES": 1},
                          "torch", "onnx", tmp_path)

    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    with pytest.raises(BuilderError, match="boom"):
        to_onnx(Broken(), [8, 8, 4], tmp_path / "broken.onnx")
    assert os.listdir(tmp_path) == []  # no half-written file anywhere

    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"not a flatbuffer")
    with pytest.raises(BuilderError, match="corrupt.tflite"):
        model_ops(corrupt)


def test_functions_pickle_by_reference():
    for fn in (build_and_convert, convert.to_tflite, convert.to_onnx, convert.to_openvino_ir):
        assert pickle.loads(pickle.dumps(fn)) is fn


@pytest.mark.slow
def test_build_and_convert_as_ray_tasks(tmp_path):
    """The farm's way: conversions as tasks on a real local Ray cluster."""
    import ray
    from ray_cluster import local_cluster

    with local_cluster(worker_resources=(), head_cpus=2):
        task = ray.remote(num_cpus=1)(build_and_convert)
        refs = [task.remote("kernel", "conv-bn-relu", dict(CONV, HW=h), impl, fmt, str(tmp_path))
                for h in (8, 10) for impl, fmt in (("torch", "onnx"), ("tensorflow", "tflite"))]
        paths = ray.get(refs, timeout=600)
    assert len(set(paths)) == 4
    for path in paths:
        runtime = "litert" if path.endswith(".tflite") else "onnxruntime"
        shape = run_in_farm_runtime(runtime, path)[0]
        assert sorted(shape) in ([1, 4, 8, 8], [1, 4, 10, 10])
