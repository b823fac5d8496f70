"""The IR graph: nn-Meter JSON in and out, validation, bad input, and the import contract."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nn_farm.errors import ConversionError, IRError
from nn_farm.predictor.ir import MODEL_TYPES, IRGraph, model_to_ir

DATA = Path(__file__).parent / "data" / "ir"
NNMETER_IR = DATA / "nnmeter_tf_small.json"


@pytest.fixture(scope="module")
def resnet_ir():
    return model_to_ir("resnet18", "torchvision")


def test_nnmeter_ir_file_loads_with_its_own_spelling():
    ir = model_to_ir(NNMETER_IR, "nnmeter-ir")
    assert len(ir) == 15
    conv = ir.nodes["conv1/Conv2D"]
    assert conv["attr"]["type"] == "Conv2D"
    assert conv["attr"]["output_shape"] == [[1, 56, 56, 32]]
    assert conv["inbounds"] == ["input_im_0"]
    assert conv["outbounds"] == ["conv1/bn/FusedBatchNormV3"]
    assert ir.unknown_ops == ["Softmax"]  # kept as a typed node, reported


def test_nnmeter_json_round_trips_through_a_file(tmp_path):
    original = json.loads(NNMETER_IR.read_text())
    ir = IRGraph.from_json(json.loads(NNMETER_IR.read_text()))
    ir.save(tmp_path / "ir.json")
    again = json.loads((tmp_path / "ir.json").read_text())
    assert again == original
    assert IRGraph.load(tmp_path / "ir.json").to_json() == original


def test_converted_model_round_trips_and_is_nnmeter_shaped(resnet_ir, tmp_path):
    resnet_ir.save(tmp_path / "resnet18.json")
    back = IRGraph.load(tmp_path / "resnet18.json").validate()
    assert back.to_json() == resnet_ir.to_json()
    for name, node in back.nodes.items():
        assert set(node) == {"inbounds", "outbounds", "attr"}
        assert set(node["attr"]) == {"name", "type", "input_shape", "output_shape", "attr"}
        assert node["attr"]["name"] == name
    # NHWC: the stem conv of ResNet18 maps 224x224x3 to 112x112x64
    stem = next(n for n in back.nodes.values() if n["attr"]["type"] == "Conv")
    assert stem["attr"]["input_shape"] == [[1, 224, 224, 3]]
    assert stem["attr"]["output_shape"] == [[1, 112, 112, 64]]
    assert stem["attr"]["attr"]["kernel_shape"] == [7, 7]
    assert stem["attr"]["attr"]["strides"] == [2, 2]


def test_topological_order_puts_every_node_after_its_inbounds(resnet_ir):
    order = resnet_ir.topological_order()
    pos = {n: i for i, n in enumerate(order)}
    assert len(order) == len(resnet_ir)
    for name, node in resnet_ir.nodes.items():
        assert all(pos[src] < pos[name] for src in node["inbounds"])
    g = resnet_ir.to_networkx()
    assert g.number_of_nodes() == len(resnet_ir)


def test_detection_finds_and_caches_the_same_topological_order(resnet_ir):
    from nn_farm.predictor.kernels import detect_kernels

    fresh = IRGraph.from_json(json.loads(json.dumps(resnet_ir.nodes)))
    assert fresh.cached_topological_order() is None
    detect_kernels(fresh)  # runs its own Kahn pass on a graph with no order yet
    assert fresh.cached_topological_order() == resnet_ir.topological_order()
    fresh.add_node("extra", "Relu", [[1, 1]], [[1, 1]], {}, [])
    assert fresh.cached_topological_order() is None  # grown: stale


def test_detection_on_a_fresh_graph_reports_a_dangling_outbound_or_a_cycle():
    from nn_farm.predictor.kernels import detect_kernels

    d = json.loads(NNMETER_IR.read_text())
    d["conv1/Relu6"]["outbounds"].append("ghost/op")
    with pytest.raises(IRError, match=r"conv1/Relu6.*ghost/op"):
        detect_kernels(IRGraph.from_json(d))
    d = json.loads(NNMETER_IR.read_text())
    d["conv1/Relu6"]["outbounds"].append("input_im_0")
    d["input_im_0"]["inbounds"].append("conv1/Relu6")
    with pytest.raises(IRError, match="cycle"):
        detect_kernels(IRGraph.from_json(d))


def test_dangling_inbound_names_node_and_missing_name():
    d = json.loads(NNMETER_IR.read_text())
    d["fc/MatMul"]["inbounds"] = ["gap/Reshape", "ghost/op"]
    with pytest.raises(IRError, match=r"fc/MatMul.*ghost/op"):
        model_to_ir(d, "nnmeter-ir")


def test_one_sided_edge_is_reported():
    d = json.loads(NNMETER_IR.read_text())
    d["conv1/Relu6"]["outbounds"].append("fc/MatMul")  # fc does not list it back
    with pytest.raises(IRError, match=r"conv1/Relu6.*fc/MatMul"):
        IRGraph.from_json(d).validate()


def test_ir_file_that_is_not_json_names_the_file(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"a": {"inbounds": [')
    with pytest.raises(ConversionError, match="broken.json"):
        model_to_ir(bad, "nnmeter-ir")


def test_truncated_onnx_file_names_the_file(tmp_path):
    src = Path(__file__).parents[1] / "nn_farm" / "farm" / "data" / "tiny_convnet.onnx"
    data = src.read_bytes()
    assert len(model_to_ir(src, "onnx")) > 0  # the whole file converts
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConversionError, match=r"cut\.onnx.*(truncated|corrupt)"):
        model_to_ir(cut, "onnx")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ConversionError, match="empty.onnx"):
        model_to_ir(empty, "onnx")


def test_missing_file_and_unknown_model_type():
    with pytest.raises(ConversionError, match="no_such.onnx"):
        model_to_ir("/nonexistent/no_such.onnx", "onnx")
    with pytest.raises(ConversionError, match="caffe") as err:
        model_to_ir("x.caffemodel", "caffe")
    for t in MODEL_TYPES:
        assert t in str(err.value)


def test_unknown_onnx_op_is_kept_typed_and_reported(caplog):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Erf", ["r"], ["e"], name="erf"),
             helper.make_node("Relu", ["e"], ["y"], name="relu2")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    with caplog.at_level("WARNING"):
        ir = model_to_ir(model, "onnx")
    assert ir.unknown_ops == ["Erf"]
    assert ir.nodes["erf"]["attr"]["type"] == "Erf"
    assert ir.nodes["erf"]["inbounds"] == ["relu"] and ir.nodes["erf"]["outbounds"] == ["relu2"]
    assert "Erf" in caplog.text


def test_predictor_ir_and_kernels_import_without_ray_or_builder():
    code = ("import sys, nn_farm.predictor.ir, nn_farm.predictor.kernels;"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('ray', 'tensorflow', 'torch', 'onnx')"
            " or m.startswith(('nn_farm.actors', 'nn_farm.builder'))];"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_public_names_are_honest():
    import nn_farm.predictor.ir as ir_pkg
    import nn_farm.predictor.kernels as kernels_pkg

    for pkg in (ir_pkg, kernels_pkg):
        for name in pkg.__all__:
            assert getattr(pkg, name) is not None, f"{pkg.__name__}.{name}"
    assert set(kernels_pkg.__all__) >= {"detect_kernels", "load_fusion_rules", "FusionRules"}
    assert set(ir_pkg.__all__) >= {"MODEL_TYPES", "IRGraph", "model_to_ir"}
