"""Operators and fusion test-case models, in Keras and torch, converted and run.

Each operator is built alone, converted (tflite for Keras, onnx for torch), run in
the real runtime (ai_edge_litert, onnxruntime) on random input, and its real output
shapes must equal the declared ones; the runtime's numbers must also match the
framework's own forward pass, so a conversion that changes the maths fails.
"""

import numpy as np
import pytest

from nn_farm.builder import convert
from nn_farm.builder.models import (
    BUILTIN_OPERATORS,
    BaseOperator,
    basic_fusion_specs,
    build_model,
    build_mon_models,
    build_testcase_models,
    from_torch_shape,
    get_operator,
    list_operators,
    mon_specs,
    operator_spec,
    register_operator,
    resolve,
    to_torch_shape,
    unregister_operator,
)
from nn_farm.errors import BuilderError, ConfigError

CONFIG = {"HW": 9, "CIN": 4, "COUT": 6, "KERNEL_SIZE": 3, "STRIDES": 2, "POOL_STRIDES": 2,
          "SHAPE_1D": 12, "LAYERS_1D": ["fc"]}


def input_shape(op):
    return [CONFIG["SHAPE_1D"]] if op in CONFIG["LAYERS_1D"] else [9, 9, 4]


def run_onnx(path, arrays):
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {i.name: a for i, a in zip(sess.get_inputs(), arrays)}
    return sess.run(None, feeds)


def run_tflite(path, arrays):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path)
    interp.allocate_tensors()
    details = sorted(interp.get_input_details(), key=lambda d: d["name"])
    for d, a in zip(details, arrays):
        interp.set_tensor(d["index"], a)
    interp.invoke()
    return [interp.get_tensor(d["index"]) for d in interp.get_output_details()]


def check_torch(spec, tmp_path):
    """Export ``spec`` with torch, run it in onnxruntime; return the NHWC output shapes."""
    import torch

    resolved = resolve(spec, "torch")
    module = build_model(spec, "torch")
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(to_torch_shape(s)).astype(np.float32) for s in spec.input_shapes]
    path = convert.to_onnx(module, None, tmp_path / f"{spec.name}.onnx")
    got = run_onnx(path, arrays)
    with torch.no_grad():
        want = module(*(torch.from_numpy(a) for a in arrays))
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want) == len(resolved.output_shapes)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-5)
    assert [from_torch_shape(g.shape) for g in got] == resolved.output_shapes
    return resolved.output_shapes


def check_keras(spec, tmp_path):
    """Convert ``spec`` with Keras to tflite, run it in LiteRT; return the output shapes."""
    resolved = resolve(spec, "tensorflow")
    model = build_model(spec, "tensorflow")
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal([1, *s]).astype(np.float32) for s in spec.input_shapes]
    path = convert.to_tflite(model, tmp_path / f"{spec.name}.tflite")
    got = run_tflite(path, arrays)
    want = model(arrays if len(arrays) > 1 else arrays[0])
    want = [np.asarray(w) for w in (want if isinstance(want, (list, tuple)) else [want])]
    # LiteRT does not promise output order for multi-output graphs: match by shape.
    got_shapes = sorted(list(g.shape[1:]) for g in got)
    assert got_shapes == sorted(resolved.output_shapes)
    for w in want:
        match = [g for g in got if g.shape == w.shape]
        assert any(np.allclose(g, w, rtol=1e-4, atol=1e-4) for g in match)
    return resolved.output_shapes


@pytest.mark.parametrize("op", sorted(BUILTIN_OPERATORS))
def test_operator_torch_onnx_shapes(op, tmp_path):
    spec = operator_spec(op, input_shape(op), CONFIG, "torch")
    shapes = check_torch(spec, tmp_path)
    declared = get_operator(op, "torch")(input_shape(op), CONFIG)
    assert shapes[0] == declared.get_output_shape()


@pytest.mark.parametrize("op", sorted(BUILTIN_OPERATORS))
def test_operator_keras_tflite_shapes(op, tmp_path):
    spec = operator_spec(op, input_shape(op), CONFIG, "tensorflow")
    shapes = check_keras(spec, tmp_path)
    declared = get_operator(op, "tensorflow")(input_shape(op), CONFIG)
    assert shapes[0] == declared.get_output_shape()


def test_declared_shapes_follow_nn_meter_formulas():
    shapes = {op: get_operator(op, "torch")(input_shape(op), CONFIG).get_output_shape()
              for op in BUILTIN_OPERATORS}
    assert shapes["conv"] == [5, 5, 6]          # ceil(9 / 2), COUT
    assert shapes["dwconv"] == [5, 5, 4]
    assert shapes["convtrans"] == [18, 18, 6]   # H * s
    assert shapes["maxpool"] == shapes["avgpool"] == [5, 5, 4]
    assert shapes["globalavgpool"] == [4]
    assert shapes["fc"] == [6]
    assert shapes["concat"] == [9, 9, 8]
    assert shapes["split"] == [9, 9, 2]
    assert shapes["reshape"] == [4, 9, 9]
    assert shapes["flatten"] == [324]
    for op in ("bn", "relu", "relu6", "sigmoid", "hswish", "se", "add"):
        assert shapes[op] == [9, 9, 4], op


@pytest.mark.parametrize("implement", ["torch", "tensorflow"])
def test_uneven_same_padding_matches_declared(implement, tmp_path):
    # HW 8, kernel 2, stride 2 and kernel 3, stride 2 need TF's uneven 'same' padding.
    config = dict(CONFIG, HW=8, KERNEL_SIZE=2)
    for op in ("conv", "maxpool", "avgpool"):
        spec = operator_spec(op, [8, 8, 4], config, implement)
        check = check_torch if implement == "torch" else check_keras
        assert check(spec, tmp_path)[0][:2] == [4, 4]


def test_basic_fusion_models_both_implementations(tmp_path):
    specs = basic_fusion_specs("conv", "relu", CONFIG, "torch")
    assert sorted(specs) == ["block", "conv", "relu"]
    assert specs["relu"].input_shapes == ((5, 5, 6),)  # op2 sees op1's output
    for key, spec in specs.items():
        check_torch(spec, tmp_path)
    specs = basic_fusion_specs("add", "add", CONFIG, "torch")
    assert sorted(specs) == ["add_1", "add_2", "block"]
    assert len(specs["block"].input_shapes) == 3  # two for add_1, one extra for add_2
    for spec in specs.values():
        check_torch(spec, tmp_path)
    one_d = basic_fusion_specs("fc", "relu", CONFIG, "torch")
    assert one_d["block"].input_shapes == ((12,),)
    check_torch(one_d["block"], tmp_path)
    models = build_testcase_models("conv", "relu", CONFIG, "tensorflow")
    assert sorted(models) == ["block", "conv", "relu"]
    for key in ("block", "conv", "relu"):
        check_keras(basic_fusion_specs("conv", "relu", CONFIG, "tensorflow")[key], tmp_path)


def test_tflite_fuses_conv_relu_but_not_across_two_outbound_edges(tmp_path):
    block = basic_fusion_specs("conv", "relu", CONFIG, "tensorflow")["block"]
    path = convert.to_tflite(block, tmp_path / "conv_relu.tflite")
    assert convert.model_ops(path) == ["CONV_2D"]
    mon = mon_specs(CONFIG)
    path = convert.to_tflite(mon["block"], tmp_path / "mon.tflite")
    ops = convert.model_ops(path)
    # dwconv's output feeds two branches, so its relu stays a separate op.
    assert ops.count("DEPTHWISE_CONV_2D") == 2 and "RELU" in ops and "LEAKY_RELU" in ops


def test_mon_models_torch(tmp_path):
    models = build_mon_models(CONFIG, "torch")
    assert sorted(models) == sorted(["block", "relu_relu", "relu_dwconv", "dwconv",
                                     "dwconv_relu_relu", "dwconv_relu"])
    for spec in mon_specs(CONFIG).values():
        shapes = check_torch(spec, tmp_path)
        assert all(s == [9, 9, 4] for s in shapes)  # stride 1 throughout
    assert len(resolve(mon_specs(CONFIG)["block"], "torch").output_shapes) == 2


class Double(BaseOperator):
    """A customized torch operator: x * 2, shape unchanged."""

    name = "double"

    def get_model(self):
        import torch

        class Module(torch.nn.Module):
            def forward(self, x):
                return x * 2

        return Module()


def test_registered_operator_is_built_and_listed(tmp_path):
    register_operator("double", "torch", Double)
    try:
        assert get_operator("double", "torch") is Double
        assert "* double" in list_operators("torch", mark_custom=True)
        assert "double" not in list_operators("tensorflow")
        specs = basic_fusion_specs("conv", "double", CONFIG, "torch")
        check_torch(specs["block"], tmp_path)
        with pytest.raises(BuilderError, match="double"):
            get_operator("double", "tensorflow")
    finally:
        unregister_operator("double", "torch")
    with pytest.raises(BuilderError, match="unknown operator 'double'"):
        get_operator("double", "torch")


def test_bad_operator_inputs_name_the_problem():
    with pytest.raises(BuilderError, match="unknown operator 'nosuchop'"):
        operator_spec("nosuchop", [8, 8, 4], CONFIG, "torch")
    with pytest.raises(ConfigError, match="KERNEL_SIZE"):
        get_operator("conv", "torch")([8, 8, 4], {"STRIDES": 1}).get_output_shape()
    with pytest.raises(ConfigError, match="STRIDES must be positive"):
        get_operator("conv", "torch")([8, 8, 4], {"KERNEL_SIZE": 3, "STRIDES": 0}).get_output_shape()
    with pytest.raises(ConfigError, match=r"needs a \[H, W, C\] input"):
        get_operator("conv", "tensorflow")([16], CONFIG)
    with pytest.raises(ConfigError, match="IMPLEMENT"):
        get_operator("conv", "mxnet")
    with pytest.raises(ConfigError, match="SHAPE_1D"):
        basic_fusion_specs("fc", "relu", {"HW": 8, "CIN": 4}, "torch")
    with pytest.raises(ConfigError, match="without '_'"):
        register_operator("my_op", "torch", Double)


RULETEST_SMALL = {"HW": 8, "CIN": 8, "COUT": 8, "KERNEL_SIZE": 3, "STRIDES": 1,
                  "POOL_STRIDES": 2, "SHAPE_1D": 16, "LAYERS_1D": ["fc"], "PADDING": "same"}


def _default_pairs():
    from nn_farm.builder.config import DEFAULT_BASIC_TESTCASES

    return list(DEFAULT_BASIC_TESTCASES)


# Pairs whose shapes change rank or layout between the two operators.
TRICKY_PAIRS = ["reshape_fc", "fc_reshape", "concat_fc", "convtrans_reshape", "se_relu",
                "reshape_reshape", "fc_concat", "avgpool_convtrans"]


@pytest.mark.parametrize("case", TRICKY_PAIRS)
def test_tricky_basic_pairs_torch(case, tmp_path):
    op1, op2 = case.split("_")
    for spec in basic_fusion_specs(op1, op2, RULETEST_SMALL, "torch").values():
        check_torch(spec, tmp_path)


def test_tricky_basic_pair_keras(tmp_path):
    for spec in basic_fusion_specs("reshape", "fc", RULETEST_SMALL, "tensorflow").values():
        check_keras(spec, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("implement", ["torch", "tensorflow"])
def test_all_default_basic_pairs(implement, tmp_path):
    """nn-Meter's default pairs (the rule-test config's list): every model builds, converts and runs."""
    check = check_torch if implement == "torch" else check_keras
    pairs = _default_pairs()
    assert pairs
    for case in pairs:
        op1, op2 = case.split("_")
        for spec in basic_fusion_specs(op1, op2, RULETEST_SMALL, implement).values():
            check(spec, tmp_path)


def test_public_names_exist_and_import_is_light():
    import subprocess
    import sys

    import nn_farm.builder.models as models

    assert all(hasattr(models, name) for name in models.__all__)
    assert all(hasattr(convert, name) for name in convert.__all__)
    code = ("import sys, nn_farm.builder, nn_farm.builder.models, nn_farm.builder.convert; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'ray', 'openvino') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
