"""Every kernel type of the predictor's kernel specs, built in Keras and torch from
exactly the config keys the specs declare, converted and run in the real runtime."""

import numpy as np
import pytest

from nn_farm.builder import convert
from nn_farm.builder.models import (
    KERNEL_TYPES,
    build_kernel_model,
    kernel_input_shapes,
    kernel_spec,
    register_kernel,
    resolve,
    unregister_kernel,
)
from nn_farm.errors import ConfigError, UnknownKernelError
from nn_farm.predictor import kernel_specs
from test_builder_operators import check_keras, check_torch

# One value per config key any kernel spec declares (small shapes; odd HW on purpose).
VALUES = {"HW": 9, "CIN": 8, "COUT": 6, "KERNEL_SIZE": 3, "STRIDES": 2, "POOL_STRIDES": 2,
          "NS": 3, "CIN1": 4, "CIN2": 6, "CIN3": 2, "CIN4": 0}


def spec_config(kernel_type):
    """Exactly the keys the predictor's kernel spec lists for this kernel type."""
    return {k: VALUES[k] for k in kernel_specs.get_spec(kernel_type).config_keys}


def test_kernel_types_match_the_predictor_specs():
    assert set(KERNEL_TYPES) == set(kernel_specs.KERNEL_TYPES)


@pytest.mark.parametrize("kernel_type", KERNEL_TYPES)
def test_kernel_torch_onnx(kernel_type, tmp_path):
    config = spec_config(kernel_type)
    spec = kernel_spec(kernel_type, config)
    shapes = check_torch(spec, tmp_path)
    module = build_kernel_model(kernel_type, config, "torch")
    assert module.output_shapes == shapes


@pytest.mark.parametrize("kernel_type", KERNEL_TYPES)
def test_kernel_keras_tflite(kernel_type, tmp_path):
    config = spec_config(kernel_type)
    shapes = check_keras(kernel_spec(kernel_type, config), tmp_path)
    model = build_kernel_model(kernel_type, config, "tensorflow")
    assert [list(t.shape[1:]) for t in model.outputs] == shapes


def test_kernel_output_shapes():
    def out(kernel_type, **over):
        return resolve(kernel_spec(kernel_type, {**spec_config(kernel_type), **over}),
                       "torch").output_shapes

    assert out("conv-bn-relu") == [[5, 5, 6]]
    assert out("dwconv-bn-relu6") == [[5, 5, 8]]
    assert out("avgpool") == [[5, 5, 8]]
    assert out("fc") == [[6]]
    assert out("concat") == [[9, 9, 12]]
    assert out("split") == [[9, 9, 4], [9, 9, 4]]
    assert out("global-avgpool") == [[8]]
    assert out("addrelu") == out("se") == out("channelshuffle") == [[9, 9, 8]]


def test_kernel_input_shapes():
    assert kernel_input_shapes("fc", {"CIN": 16, "COUT": 4}) == [[16]]
    assert kernel_input_shapes("add", {"HW": 8, "CIN": 4}) == [[8, 8, 4], [8, 8, 4]]
    assert kernel_input_shapes("concat", spec_config("concat")) == [[9, 9, 4], [9, 9, 6], [9, 9, 2]]
    # nn-Meter's own concat configs carry no NS: the non-zero CINs count.
    assert kernel_input_shapes("concat", {"HW": 8, "CIN1": 4, "CIN2": 4, "CIN3": 0,
                                          "CIN4": 0}) == [[8, 8, 4], [8, 8, 4]]
    assert kernel_input_shapes("maxpool", spec_config("maxpool")) == [[9, 9, 8]]


def test_numpy_config_values_build_and_name_the_same_file(tmp_path):
    # Samplers hand out numpy scalars; they must build and hash like plain ints.
    config = spec_config("conv-bn-relu")
    as_numpy = {k: np.int64(v) for k, v in config.items()}
    assert (convert.model_file_name("kernel", "conv-bn-relu", as_numpy, "torch", "onnx")
            == convert.model_file_name("kernel", "conv-bn-relu", config, "torch", "onnx"))
    check_torch(kernel_spec("conv-bn-relu", as_numpy), tmp_path)


def test_bad_kernel_configs_name_the_key():
    with pytest.raises(UnknownKernelError, match="conv-bn-gelu"):
        build_kernel_model("conv-bn-gelu", spec_config("conv-bn"), "torch")
    config = spec_config("conv-bn-relu")
    del config["COUT"]
    with pytest.raises(ConfigError, match="COUT"):
        build_kernel_model("conv-bn-relu", config, "torch")
    with pytest.raises(ConfigError, match="HW must be a positive integer"):
        kernel_input_shapes("relu", {"HW": 2.5, "CIN": 4})
    with pytest.raises(ConfigError, match="POOL_STRIDES"):
        kernel_input_shapes("maxpool", {"HW": 8, "CIN": 4, "KERNEL_SIZE": 3, "STRIDES": 2})
    with pytest.raises(ConfigError, match="CIN3"):
        kernel_input_shapes("concat", {"HW": 8, "NS": 3, "CIN1": 4, "CIN2": 4})
    with pytest.raises(ConfigError, match="even"):
        build_kernel_model("split", {"HW": 8, "CIN": 5}, "torch")


class TinyKernel:
    """A customized torch kernel in nn-Meter's block API."""

    def __init__(self, config):
        self.input_tensor_shape = [[config["HW"], config["HW"], config["CIN"]]]

    def get_model(self):
        import torch

        return torch.nn.Sequential(torch.nn.Conv2d(4, 4, 1), torch.nn.Sigmoid())


def test_registered_kernel_is_built(tmp_path):
    register_kernel("conv-sigmoid", "torch", TinyKernel)
    try:
        model = build_kernel_model("conv-sigmoid", {"HW": 8, "CIN": 4}, "torch")
        path = convert.to_onnx(model, [8, 8, 4], tmp_path / "k.onnx")
        assert convert.model_ops(path) == ["Conv", "Sigmoid"]
    finally:
        unregister_kernel("conv-sigmoid", "torch")
    with pytest.raises(UnknownKernelError):
        build_kernel_model("conv-sigmoid", {"HW": 8, "CIN": 4}, "torch")


def test_converted_graph_structure(tmp_path):
    """What each converter makes of the kernels: the fusions the rule tester will see."""
    # HW 8, stride 2, kernel 3: TF's uneven 'same' padding, still one clean op in ONNX.
    config = {"HW": 8, "CIN": 8, "COUT": 8, "KERNEL_SIZE": 3, "STRIDES": 2, "POOL_STRIDES": 2}

    def ops(kernel_type, implement, fmt):
        return convert.model_ops(convert.build_and_convert(
            "kernel", kernel_type, config, implement, fmt, tmp_path))

    assert ops("conv-bn-relu", "torch", "onnx") == ["Conv", "Relu"]
    assert ops("dwconv-bn-hswish", "torch", "onnx") == ["Conv", "HardSwish"]
    assert ops("maxpool", "torch", "onnx") == ["MaxPool"]
    assert ops("avgpool", "torch", "onnx") == ["AveragePool"]
    assert ops("bnrelu", "torch", "onnx") == ["BatchNormalization", "Relu"]
    assert ops("conv-bn-relu", "tensorflow", "tflite") == ["CONV_2D"]
    assert ops("dwconv-bn-relu6", "tensorflow", "tflite") == ["DEPTHWISE_CONV_2D"]
    assert ops("conv-bn-hswish", "tensorflow", "tflite") == ["CONV_2D", "HARD_SWISH"]
    # A lone BN keeps its scale and offset (random statistics, not the identity).
    assert ops("bn", "tensorflow", "tflite") == ["MUL", "ADD"]
