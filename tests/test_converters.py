"""One small network, built in torch and in Keras with the same structure, gives the same
kernels and shapes from every converter: torch nn.Module, ONNX file, Keras model,
.keras file, TFLite (TF's converter from the Keras model), SavedModel, frozen .pb.

The network covers every fusion case the default rules know plus the three blocks:
conv+relu, dwconv+relu6, linear conv, residual add, maxpool, conv + hardswish,
squeeze-excite with a hard-sigmoid gate, global average pooling, fc.
"""

import io
from pathlib import Path

import pytest
import torch
from torch import nn

from nn_farm.errors import ConversionError
from nn_farm.predictor.ir import model_to_ir
from nn_farm.predictor.kernels import detect_kernels

EXPECTED = [  # (op, input tensor, output tensor), NHWC
    ("conv-relu", [1, 32, 32, 3], [1, 16, 16, 8]),
    ("dwconv-relu6", [1, 16, 16, 8], [1, 16, 16, 8]),
    ("conv", [1, 16, 16, 8], [1, 16, 16, 8]),
    ("add", [1, 16, 16, 8], [1, 16, 16, 8]),
    ("maxpool", [1, 16, 16, 8], [1, 8, 8, 8]),
    ("conv", [1, 8, 8, 8], [1, 8, 8, 16]),
    ("hswish", [1, 8, 8, 16], [1, 8, 8, 16]),
    ("se", [1, 8, 8, 16], [1, 8, 8, 16]),
    ("global-avgpool", [1, 8, 8, 16], [1, 1, 1, 16]),
    ("fc", [1, 16], [1, 10]),
]


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, 2, 1)
        self.dw = nn.Conv2d(8, 8, 3, 1, 1, groups=8)
        self.pw = nn.Conv2d(8, 8, 1)
        self.pool = nn.MaxPool2d(2, 2)
        self.c2 = nn.Conv2d(8, 16, 3, 1, 1)
        self.se1 = nn.Conv2d(16, 4, 1)
        self.se2 = nn.Conv2d(4, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = self.pool(x + self.pw(nn.functional.relu6(self.dw(x))))
        x = nn.functional.hardswish(self.c2(x))
        gate = self.se2(torch.relu(self.se1(nn.functional.adaptive_avg_pool2d(x, 1))))
        x = x * nn.functional.hardsigmoid(gate)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def keras_tinynet():
    from nn_farm._compat import import_tensorflow

    import_tensorflow()
    import keras

    L = keras.layers
    inp = keras.Input((32, 32, 3), batch_size=1)
    x = L.Conv2D(8, 3, 2, padding="same", activation="relu")(inp)
    y = L.ReLU(max_value=6)(L.DepthwiseConv2D(3, padding="same")(x))
    x = L.MaxPooling2D(2, 2)(L.Add()([x, L.Conv2D(8, 1)(y)]))
    x = L.Activation("hard_silu")(L.Conv2D(16, 3, padding="same")(x))
    gate = L.Conv2D(4, 1, activation="relu")(L.GlobalAveragePooling2D(keepdims=True)(x))
    x = L.Multiply()([x, L.Conv2D(16, 1, activation="hard_sigmoid")(gate)])
    return keras.Model(inp, L.Dense(10)(L.GlobalAveragePooling2D()(x)))


def signature(ir):
    return [(k["op"], k["input_tensors"][0], k["output_tensors"][0]) for k in detect_kernels(ir)]


@pytest.fixture(scope="module")
def torch_net():
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture(scope="module")
def tf_files(tmp_path_factory):
    """The Keras model, and the files TF makes of it: .keras, .tflite, SavedModel, frozen .pb."""
    from nn_farm._compat import import_tensorflow

    tf = import_tensorflow()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    d = tmp_path_factory.mktemp("tinynet")
    model = keras_tinynet()
    model.save(d / "tiny.keras")
    (d / "tiny.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    model.export(str(d / "saved"), verbose=False)
    fn = tf.function(model).get_concrete_function(tf.TensorSpec([1, 32, 32, 3], tf.float32))
    frozen = convert_variables_to_constants_v2(fn).graph.as_graph_def()
    (d / "tiny.pb").write_bytes(frozen.SerializeToString())
    return model, d


def test_torch_module(torch_net):
    assert signature(model_to_ir(torch_net, "torch", (1, 3, 32, 32))) == EXPECTED


def test_onnx_file_and_proto(torch_net, tmp_path):
    import onnx

    buf = io.BytesIO()
    torch.onnx.export(torch_net, (torch.zeros(1, 3, 32, 32),), buf, dynamo=False, opset_version=17)
    (tmp_path / "tiny.onnx").write_bytes(buf.getvalue())
    assert signature(model_to_ir(tmp_path / "tiny.onnx", "onnx")) == EXPECTED
    assert signature(model_to_ir(onnx.load(tmp_path / "tiny.onnx"), "onnx")) == EXPECTED


def test_keras_model_and_file(tf_files):
    model, d = tf_files
    assert signature(model_to_ir(model, "keras")) == EXPECTED
    assert signature(model_to_ir(d / "tiny.keras", "keras")) == EXPECTED
    assert signature(model_to_ir(d / "tiny.keras", "tensorflow")) == EXPECTED


def test_tflite_from_the_keras_model(tf_files):
    _, d = tf_files
    ir = model_to_ir(d / "tiny.tflite", "tflite")
    assert ir.unknown_ops == []
    assert signature(ir) == EXPECTED


def test_saved_model_and_frozen_pb(tf_files):
    _, d = tf_files
    assert signature(model_to_ir(d / "saved", "tensorflow")) == EXPECTED
    assert signature(model_to_ir(d / "tiny.pb", "tensorflow")) == EXPECTED


def test_conv_attributes_agree_across_converters(torch_net, tf_files):
    _, d = tf_files
    keys = ("ks", "strides", "cin", "cout", "inputh", "inputw")
    ref = [{k: kern.get(k) for k in keys} for kern in detect_kernels(model_to_ir(torch_net, "torch", (1, 3, 32, 32)))]
    for ir in (model_to_ir(d / "tiny.tflite", "tflite"), model_to_ir(d / "tiny.pb", "tensorflow")):
        assert [{k: kern.get(k) for k in keys} for kern in detect_kernels(ir)] == ref
    assert ref[1] == {"ks": [3, 3], "strides": [1, 1], "cin": 8, "cout": 8, "inputh": 16, "inputw": 16}


def test_torchvision_name_and_input_shape():
    ir = model_to_ir("mobilenet_v2", "torchvision", (1, 3, 160, 160))
    first = detect_kernels(ir)[0]
    assert first["input_tensors"] == [[1, 160, 160, 3]] and first["output_tensors"] == [[1, 80, 80, 32]]


def test_bad_inputs_name_what_is_wrong(tmp_path, torch_net):
    with pytest.raises(ConversionError, match="not_a_model"):
        model_to_ir("not_a_model", "torchvision")
    with pytest.raises(ConversionError, match="input_shape"):
        model_to_ir(torch_net, "torch")
    with pytest.raises(ConversionError, match=r"TinyNet.*\(1, 5, 32, 32\)"):
        model_to_ir(torch_net, "torch", (1, 5, 32, 32))  # 5 channels into a 3-channel conv
    bad = tmp_path / "junk.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ConversionError, match="junk.tflite"):
        model_to_ir(bad, "tflite")
    data = (Path(__file__).parents[1] / "nn_farm" / "farm" / "data" / "tiny_convnet.tflite").read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[:200])
    with pytest.raises(ConversionError, match="cut.tflite"):
        model_to_ir(cut, "tflite")


@pytest.fixture(scope="module")
def keras_mobilenet_v2():
    from nn_farm._compat import import_tensorflow

    import_tensorflow()
    import keras

    return keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))


def test_keras_mobilenet_v2_keeps_its_batchnorms(keras_mobilenet_v2):
    # Keras' MobileNetV2 with its BatchNormalization layers (a layer walk does not
    # fold them): Conv1 conv-bn-relu6; 16 expand convs conv-bn-relu6; Conv_1 conv-bn-relu6
    # -> 18. 17 depthwise dw-bn-relu6, 17 project conv-bn, 10 residual adds (as in
    # torchvision's). keras.applications pads explicitly (ZeroPadding2D) before the
    # four stride-2 depthwise convs (blocks 1, 3, 6, 13); each pad is folded into its
    # dwconv kernel, as TFLite's converter folds it. The head's Dense(softmax) gives
    # fc and a Softmax op that no kernel model covers (reported).
    ir = model_to_ir(keras_mobilenet_v2, "keras")
    assert ir.unknown_ops == ["Softmax"]
    assert ir.op_types()["Pad"] == 4
    kernels = detect_kernels(ir)
    counts = {}
    for k in kernels:
        counts[k["op"]] = counts.get(k["op"], 0) + 1
    assert counts == {"conv-bn-relu6": 18, "dwconv-bn-relu6": 17, "conv-bn": 17, "add": 10,
                      "global-avgpool": 1, "fc": 1, "Softmax": 1}
    padded = [k for k in kernels if "Pad" in k["name"] or "pad" in k["name"]]
    assert len(padded) == 4
    # block_1's dwconv: 112x112x96 in (unpadded), stride 2, 56x56 out
    assert (padded[0]["input_tensors"], padded[0]["output_tensors"], padded[0]["strides"]) == \
        ([[1, 112, 112, 96]], [[1, 56, 56, 96]], [2, 2])


@pytest.mark.slow
def test_keras_mobilenet_v2_as_tflite(keras_mobilenet_v2, tmp_path):
    # TF's converter folds every BN into its conv and the explicit pads into the
    # convs' padding: the same network as torchvision's ONNX export.
    import tensorflow as tf

    path = tmp_path / "mbv2.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras_mobilenet_v2).convert())
    counts = {}
    for k in detect_kernels(model_to_ir(path, "tflite")):
        counts[k["op"]] = counts.get(k["op"], 0) + 1
    assert counts == {"conv-relu6": 18, "dwconv-relu6": 17, "conv": 17, "add": 10,
                      "global-avgpool": 1, "fc": 1, "Softmax": 1}


def test_tflite_explicit_pad_before_stride_2_conv_prices_as_conv(tf_files, tmp_path):
    # Symmetric 1-pixel pads before stride-2 VALID convs are not SAME padding, so
    # TF's converter keeps them as PAD ops; detection folds each into its conv.
    import keras
    import tensorflow as tf

    from nn_farm.predictor import load_latency_predictor

    L = keras.layers
    inp = keras.Input((32, 32, 3), batch_size=1)
    x = L.Conv2D(8, 3, 2, padding="valid", activation="relu")(L.ZeroPadding2D(1)(inp))
    x = L.DepthwiseConv2D(3, 2, padding="valid")(L.ZeroPadding2D(1)(x))
    model = keras.Model(inp, L.Dense(10)(L.GlobalAveragePooling2D()(x)))
    path = tmp_path / "padded.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    ir = model_to_ir(path, "tflite")
    assert ir.op_types()["Pad"] == 2  # the file really has explicit pads
    kernels = detect_kernels(ir)
    assert [(k["op"], k["input_tensors"], k["output_tensors"], k["strides"]) for k in kernels[:2]] == [
        ("conv-relu", [[1, 32, 32, 3]], [[1, 16, 16, 8]], [2, 2]),
        ("dwconv", [[1, 16, 16, 8]], [[1, 8, 8, 8]], [2, 2]),
    ]
    assert signature(model_to_ir(model, "keras")) == signature(ir)
    fixture = Path(__file__).parents[1] / "nn_farm/predictor/fixtures/synthetic_fixture_cpu"
    detail = load_latency_predictor(fixture).predict_detail(path, "tflite")
    assert detail["n_unknown"] == 0
    assert [d["model"] for d in detail["kernels"][:2]] == ["conv-relu", "dwconv-bn"]


def test_dynamic_batch_is_taken_as_one(torch_net, tmp_path):
    path = tmp_path / "dynamic.onnx"
    torch.onnx.export(torch_net, (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    assert signature(model_to_ir(path, "onnx")) == EXPECTED
