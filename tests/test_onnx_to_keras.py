"""onnx_to_keras: torchvision architectures as NHWC Keras models that compute what
onnxruntime computes on the exported ONNX graph, and that convert to ``.tflite``.

Weights are torchvision's random initialisation with the BatchNorm statistics taken
from one random batch. With the raw initialisation activations die out (googlenet's
logits do not depend on the input at all, shufflenet's by 1e-5 of their size), and
equal outputs would prove nothing; each test also checks that its reference moves
with the input by far more than the tolerance.

Tolerance: float32 through 20 to 80 layers, summed in a different order by
TensorFlow's kernels than by onnxruntime's (or XNNPack's), differs by 2e-6 to 2e-5 of
the output's scale here (mobilenet_v2 and shufflenet at 64 px are the worst: the
calibrated BatchNorms scale rounding errors up). ``RTOL = 1e-4`` of that scale leaves
a 5x margin or more, while a wrong weight layout, padding or channel order changes
outputs by the order of the scale itself.
"""

import torch  # noqa: I001  first: tensorflow, then torch/triton segfaults (conftest.py)
import torchvision

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch.nn.functional as F
from onnx import TensorProto, helper

from nn_farm.builder.convert import model_ops, to_tflite
from nn_farm.builder.onnx_to_keras import onnx_to_keras, torchvision_to_keras
from nn_farm.errors import ConversionError

RES = 64
MODELS = ("mobilenet_v2", "mobilenet_v3_small", "resnet18", "shufflenet_v2_x1_0", "efficientnet_b0")
RTOL = 1e-4


def export(module, shape) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), torch.randn(shape), buf, dynamo=False, opset_version=17,
                          external_data=False)
    return buf.getvalue()


def calibrated(name: str):
    """A torchvision model whose BatchNorms normalise: statistics of one random batch."""
    torch.manual_seed(0)
    module = torchvision.models.get_model(name, weights=None)
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a plain average: exactly this batch's statistics
    with torch.no_grad():
        module.train()(torch.randn(4, 3, RES, RES))
    return module.eval()


def run_onnx(data: bytes, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def nhwc(a: np.ndarray) -> np.ndarray:
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


def inputs(shape, n=2):
    rng = np.random.default_rng(0)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]


def assert_close(out, ref, other):
    """``out == ref`` within RTOL of ``ref``'s scale; ``other`` (the reference for
    another input) shows the comparison could fail."""
    out, ref = np.asarray(out), np.asarray(ref)
    atol = RTOL * np.abs(ref).max()
    assert np.abs(other - ref).max() > 100 * atol, "the output hardly depends on the input"
    np.testing.assert_allclose(out, ref, rtol=RTOL, atol=atol)


@pytest.fixture(scope="module")
def converted():
    """name -> (onnx bytes, Keras model), each model exported and converted once."""
    cache = {}

    def get(name):
        if name not in cache:
            data = export(calibrated(name), (1, 3, RES, RES))
            cache[name] = data, onnx_to_keras(onnx.load_from_string(data))
        return cache[name]

    return get


@pytest.mark.parametrize("name", MODELS)
def test_keras_matches_onnxruntime(converted, name):
    data, model = converted(name)
    x, x2 = inputs((1, 3, RES, RES))
    (ref,), (ref2,) = run_onnx(data, x), run_onnx(data, x2)
    assert model.input.shape == (1, RES, RES, 3)
    assert_close(model(nhwc(x), training=False), ref, ref2)


def test_tflite_runs_in_litert_with_the_same_output(converted, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    data, model = converted("mobilenet_v3_small")
    path = to_tflite(model, tmp_path / "mobilenet_v3_small.tflite")
    # Keras layers, not generic ops: the converter fuses what it fuses for Keras models.
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "HARD_SWISH", "FULLY_CONNECTED"} <= set(model_ops(path))
    x, x2 = inputs((1, 3, RES, RES))
    interp = Interpreter(model_path=path)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], nhwc(x))
    interp.invoke()
    out = interp.get_tensor(interp.get_output_details()[0]["index"])
    assert_close(out, run_onnx(data, x)[0], run_onnx(data, x2)[0])


def test_torchvision_to_keras_matches_torch():
    # squeezenet has no BatchNorm, so its raw initialisation keeps the signal alive;
    # its ceil-mode max pools need extra end padding.
    torch.manual_seed(0)
    model = torchvision_to_keras("squeezenet1_1", RES)
    torch.manual_seed(0)
    module = torchvision.models.get_model("squeezenet1_1", weights=None).eval()
    x, x2 = inputs((1, 3, RES, RES))
    with torch.no_grad():
        ref, ref2 = (module(torch.from_numpy(a)).numpy() for a in (x, x2))
    assert model.input.shape == (1, RES, RES, 3)
    assert_close(model(nhwc(x), training=False), ref, ref2)


class OpZoo(torch.nn.Module):
    """Ops and attributes the torchvision models above do not export."""

    def __init__(self):
        super().__init__()
        self.bn = torch.nn.BatchNorm2d(8)
        self.grouped = torch.nn.Conv2d(8, 16, 3, padding=2, dilation=2, groups=4)
        self.dw = torch.nn.Conv2d(16, 32, 3, stride=2, padding=(0, 1), groups=16)  # multiplier 2
        self.proj = torch.nn.Parameter(torch.randn(20, 5))

    def forward(self, x):
        x = self.bn(x)  # nothing to fold it into: a BatchNormalization node
        a = F.avg_pool2d(x, 3, 2, padding=1)  # count_include_pad, pads not TF's "same"
        m = F.max_pool2d(x, 3, 2, ceil_mode=True)  # 14 px: ceil mode adds a window
        n = F.max_pool2d(x, 3, 2, padding=1)  # pads on signed data: padding must never win
        y = self.dw(self.grouped(a - m / 2 + n))
        p, q = torch.split(y, [12, 20], dim=1)
        g = F.hardsigmoid(p) * torch.tanh(q[:, 2:14])
        t = torch.clamp(q, -1, 2).permute(0, 2, 3, 1) @ self.proj  # Transpose, MatMul
        v = torch.flatten(g, 2).mean(-1)  # Reshape from shape arithmetic, ReduceMean
        s = F.avg_pool2d(x, 3, 1, padding=1, count_include_pad=False)  # TF's "same"
        return g, t, v, s


def test_other_ops_match_onnxruntime(tmp_path):
    torch.manual_seed(0)
    module = OpZoo()
    module.bn.running_mean.normal_()
    module.bn.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "zoo.onnx"
    path.write_bytes(export(module, (1, 8, 14, 14)))
    model = onnx_to_keras(str(path))
    x, x2 = inputs((1, 8, 14, 14))
    outs = model(nhwc(x), training=False)
    refs, refs2 = run_onnx(path.read_bytes(), x), run_onnx(path.read_bytes(), x2)
    assert len(outs) == len(refs) == 4
    for out, ref, ref2 in zip(outs, refs, refs2):
        assert_close(out, nhwc(ref), nhwc(ref2))


def test_unsupported_op_names_op_and_node():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="relu"),
         helper.make_node("LpNormalization", ["r"], ["y"], name="head/l2norm", axis=1, p=2)],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ConversionError, match=r"'LpNormalization' \(node 'head/l2norm'\)"):
        onnx_to_keras(model)
