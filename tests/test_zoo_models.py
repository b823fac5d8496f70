"""Real models for the main job and the end-to-end benchmark: a torchvision architecture
reaches the LiteRT device as a .tflite file that is the same network its ONNX export is.

"The same network" as the predictor sees it: kernel detection on the .tflite (built
torch -> ONNX -> Keras -> TFLite converter) and on torch's own ONNX export finds the
same kernels, with the same configs, kernel type by kernel type.
"""

import torch  # noqa: I001  first: tensorflow, then torch/triton segfaults (conftest.py)
import torchvision

import collections
import io
import warnings

import pytest

from nn_farm.builder.zoo_models import TORCHVISION, zoo_model_job, zoo_model_path, zoo_model_tflite
from nn_farm.predictor.ir import model_to_ir
from nn_farm.predictor.kernel_specs import config_row_from_kernel_unit
from nn_farm.predictor.kernels import detect_kernels
from nn_farm.predictor.kernels.rules import DEFAULT_RULES


def _kernels(path, model_type) -> collections.Counter:
    """(predictor kernel type, config) of every kernel; TFLite's conv-bn-relu and the
    ONNX export's conv-relu (BN folded by torch) are both the conv family's."""
    counts = collections.Counter()
    for unit in detect_kernels(model_to_ir(str(path), model_type), DEFAULT_RULES):
        kernel_type, row = config_row_from_kernel_unit(unit)
        family = kernel_type.split("-")[0] if kernel_type.startswith(("conv", "dwconv")) else kernel_type
        counts[family, row] += 1
    return counts


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "shufflenet_v2_x1_0"])
def test_a_torchvision_model_becomes_the_same_network_as_tflite(name, tmp_path):
    tflite = zoo_model_tflite(TORCHVISION + name, tmp_path)
    assert tflite == zoo_model_path(TORCHVISION + name, tmp_path)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torchvision.models.get_model(name, weights=None).eval(),
                          (torch.zeros(1, 3, 224, 224),), buf, dynamo=False, opset_version=17)
    onnx_path = tmp_path / f"{name}.onnx"
    onnx_path.write_bytes(buf.getvalue())

    from_tflite, from_onnx = _kernels(tflite, "tflite"), _kernels(onnx_path, "onnx")
    assert from_tflite == from_onnx
    assert sum(n for (family, _), n in from_tflite.items() if family == "dwconv") >= 10
    # a second call reuses the file
    mtime = (tmp_path / tflite.rsplit("/", 1)[-1]).stat().st_mtime_ns
    zoo_model_tflite(TORCHVISION + name, tmp_path)
    assert (tmp_path / tflite.rsplit("/", 1)[-1]).stat().st_mtime_ns == mtime


def test_zoo_names_keep_keras_and_torchvision_apart(tmp_path):
    keras_job, tv_job = zoo_model_job("MobileNetV2", tmp_path), zoo_model_job(TORCHVISION + "mobilenet_v2", tmp_path)
    assert keras_job.name != tv_job.name and tv_job.name.startswith("torchvision_mobilenet_v2")
    assert keras_job.meta["model"] == "MobileNetV2" and tv_job.meta["model"] == "torchvision:mobilenet_v2"
    assert zoo_model_path("MobileNetV2", tmp_path).endswith(keras_job.name)
