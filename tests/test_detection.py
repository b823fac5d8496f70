"""Kernel detection: hand-counted kernels of five torchvision networks, fusion rules
(pairs, chains, MON), and the multi-op blocks in their TF and ONNX spellings.

The torchvision graphs are exported in eval mode, so every BatchNorm is folded into
the conv before it (as in a deployed model): "conv-bn-relu" in the architecture
reads "conv-relu" here. Default rules: a TFLite-like CPU (conv/dwconv fuse a bn and
a relu/relu6; bn and add fuse a relu; MON=0, i.e. an op whose output has several
consumers fuses with none).
"""

from collections import Counter
from pathlib import Path

import pytest

from nn_farm.errors import ConfigError
from nn_farm.predictor.ir import IRGraph, model_to_ir
from nn_farm.predictor.kernels import detect_kernels, load_fusion_rules

NNMETER_IR = Path(__file__).parent / "data" / "ir" / "nnmeter_tf_small.json"


@pytest.fixture(scope="module")
def zoo():
    """torchvision name -> IR, converted once for the module (weights=None)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = model_to_ir(name, "torchvision")
        return cache[name]

    return get


def counts(kernels):
    return dict(Counter(k["op"] for k in kernels))


def test_mobilenet_v2(zoo):
    # features[0]: conv3x3-bn-relu6 -> conv-relu6.
    # 17 inverted residuals (t,c,n,s: 1,16,1,1 / 6,24,2,2 / 6,32,3,2 / 6,64,4,2 /
    # 6,96,3,1 / 6,160,3,2 / 6,320,1,1): the first has no expand conv, the other 16
    # have expand conv-bn-relu6; all 17 have dw-bn-relu6 and a linear project conv-bn.
    # features[18]: conv1x1-bn-relu6 to 1280.
    #   conv-relu6 = 1 + 16 + 1 = 18; dwconv-relu6 = 17; conv = 17.
    # Residual adds: stride 1 and cin == cout, i.e. n-1 per stage for n>1:
    #   24:1 + 32:2 + 64:3 + 96:2 + 160:2 = 10.
    # Classifier: adaptive avgpool (+flatten) -> global-avgpool; Linear -> fc.
    kernels = detect_kernels(zoo("mobilenet_v2"))
    assert counts(kernels) == {"conv-relu6": 18, "dwconv-relu6": 17, "conv": 17, "add": 10,
                               "global-avgpool": 1, "fc": 1}


def test_mobilenet_v3_small(zoo):
    # stem: conv3x3 s2 + hardswish -> conv, hswish (TFLite does not fuse hswish).
    # 11 bnecks (in,k,exp,out,SE,act,s): 16,3,16,16,SE,RE,2 / 16,3,72,24,-,RE,2 /
    # 24,3,88,24,-,RE,1 / then 8 HS blocks 24>40 s2 SE, 40>40 x2, 40>48, 48>48,
    # 48>96 s2, 96>96 x2, all with SE.
    #   RE blocks: #1 has no expand (exp == in): dwconv-relu, se, conv;
    #              #2, #3: conv-relu (expand), dwconv-relu, conv.
    #   HS blocks: conv + hswish (expand), dwconv + hswish, se, conv (project).
    #   conv = 1 stem + 11 project + 8 HS expand + 1 last 1x1 (576) = 21
    #   hswish = 1 stem + 8 + 8 + 1 last conv + 1 after the first classifier Linear = 19
    #   se = 1 + 8 = 9; dwconv-relu = 3; conv-relu = 2; dwconv = 8
    #   add (stride 1, in == out): block 3, and 40>40 x2, 48>48, 96>96 x2 = 6
    #   global-avgpool 1; fc = 2 (Linear 576>1024, Linear 1024>1000)
    kernels = detect_kernels(zoo("mobilenet_v3_small"))
    assert counts(kernels) == {"conv": 21, "hswish": 19, "se": 9, "dwconv-relu": 3, "conv-relu": 2,
                               "dwconv": 8, "add": 6, "global-avgpool": 1, "fc": 2}
    se = next(k for k in kernels if k["op"] == "se")
    # the first SE sits after the stride-2 dw conv of block 1: 56x56x16
    assert se["input_tensors"] == [[1, 56, 56, 16]] and se["cin"] == 16 and se["inputh"] == 56


def test_resnet18(zoo):
    # stem conv7x7-bn-relu -> conv-relu; maxpool.
    # 8 BasicBlocks: conv-bn-relu (conv-relu), conv-bn (conv), add then relu (addrelu);
    # layer2.0, layer3.0, layer4.0 add a 1x1 conv-bn downsample (conv).
    #   conv-relu = 1 + 8 = 9; conv = 8 + 3 = 11; addrelu = 8.
    kernels = detect_kernels(zoo("resnet18"))
    assert counts(kernels) == {"conv-relu": 9, "maxpool": 1, "conv": 11, "addrelu": 8,
                               "global-avgpool": 1, "fc": 1}
    stem = kernels[0]
    assert (stem["op"], stem["ks"], stem["strides"], stem["cin"], stem["cout"], stem["inputh"]) == \
        ("conv-relu", [7, 7], [2, 2], 3, 64, 224)
    gap = next(k for k in kernels if k["op"] == "global-avgpool")
    # its real input (7x7x512), not the 1x1 it produces
    assert gap["input_tensors"] == [[1, 7, 7, 512]] and gap["inputh"] == 7 and gap["cin"] == 512


def test_shufflenet_v2(zoo):
    # stem conv3x3-bn-relu (conv-relu), maxpool; stages of 4, 8, 4 units = 16.
    # The first unit of each stage (3) downsamples: branch1 = dw s2-bn (dwconv),
    # conv1x1-bn-relu; branch2 = conv1x1-bn-relu, dw s2-bn, conv1x1-bn-relu.
    # The other 13 units split the input in two (split) and run branch2 on one half:
    # conv-relu, dwconv, conv-relu. Every unit ends in concat + channel shuffle.
    # conv5: conv1x1-bn-relu; x.mean([2, 3]) -> global-avgpool; fc.
    #   conv-relu = 1 + 3*3 + 13*2 + 1 = 37; dwconv = 3*2 + 13 = 19;
    #   split = 13; concat = 16; channelshuffle = 16.
    kernels = detect_kernels(zoo("shufflenet_v2_x1_0"))
    assert counts(kernels) == {"conv-relu": 37, "maxpool": 1, "dwconv": 19, "split": 13, "concat": 16,
                               "channelshuffle": 16, "global-avgpool": 1, "fc": 1}
    split = next(k for k in kernels if k["op"] == "split")
    # stage3's first split: 28x28x116 into two halves along channels (NHWC axis 3)
    assert split["input_tensors"] == [[1, 28, 28, 116]]
    assert split["output_tensors"] == [[1, 28, 28, 58], [1, 28, 28, 58]]
    assert split["split_dim"] == 3


def test_efficientnet_b0(zoo):
    # stem conv3x3-bn-SiLU -> conv, swish (x*sigmoid(x); TFLite does not fuse it; nn-Meter
    # has no swish predictor, nn-farm has: the swish kernel type).
    # 16 MBConv blocks (expand,k,s,in,out,n: 1,3,1,32,16,1 / 6,3,2,16,24,2 /
    # 6,5,2,24,40,2 / 6,3,2,40,80,3 / 6,5,1,80,112,3 / 6,5,2,112,192,4 / 6,3,1,192,320,1).
    # 15 have an expand conv-bn-SiLU; all have dw-bn-SiLU, an SE (gap, conv, SiLU, conv,
    # sigmoid, mul) and a project conv-bn. Head: conv1x1-bn-SiLU to 1280.
    #   conv = 1 + 15 + 16 + 1 = 33; swish = 1 + 15 + 16 + 1 = 33; dwconv = 16; se = 16
    #   add = n-1 per stage = 0+1+1+2+2+3+0 = 9
    kernels = detect_kernels(zoo("efficientnet_b0"))
    assert counts(kernels) == {"conv": 33, "swish": 33, "dwconv": 16, "se": 16, "add": 9,
                               "global-avgpool": 1, "fc": 1}
    ks = sorted({tuple(k["ks"]) for k in kernels if k["op"] == "dwconv"})
    assert ks == [(3, 3), (5, 5)]
    # every kernel prices; the fixture package predates the swish kernel, so the 33 swish
    # kernels fall back to its hswish model
    from nn_farm.predictor import load_latency_predictor

    fixture = Path(__file__).parents[1] / "nn_farm/predictor/fixtures/synthetic_fixture_cpu"
    detail = load_latency_predictor(fixture).predict_detail(zoo("efficientnet_b0"), "nnmeter-ir")
    assert detail["n_unknown"] == 0, detail["unknown_kernels"]
    assert sum(d["op"] == "swish" and d["model"] == "hswish" for d in detail["kernels"]) == 33


def test_kernel_connections_form_the_model_graph(zoo):
    kernels = detect_kernels(zoo("resnet18"))
    names = {k["name"] for k in kernels}
    for k in kernels:
        assert set(k["inbounds"]) <= names and set(k["outbounds"]) <= names
    add = next(k for k in kernels if k["op"] == "addrelu")
    assert len(add["inbounds"]) == 2


# ------------------------------------------------------------ rules on nn-Meter IR
def tf_ir():
    return model_to_ir(NNMETER_IR, "nnmeter-ir")


def test_tf_spelled_nnmeter_ir_with_default_rules():
    kernels = detect_kernels(tf_ir())
    assert [k["op"] for k in kernels] == ["conv-bn-relu6", "dwconv-bn", "hswish", "maxpool",
                                          "global-avgpool", "fc", "Softmax"]
    conv, dw, hswish, pool, gap = kernels[:5]
    assert (conv["ks"], conv["strides"], conv["cin"], conv["cout"]) == ([3, 3], [1, 1], 16, 32)
    assert (dw["ks"], dw["strides"], dw["inputh"], dw["cout"]) == ([5, 5], [2, 2], 56, 32)
    assert hswish["input_tensors"] == [[1, 28, 28, 32]]  # x, not x and the constant 3
    assert (pool["ks"], pool["strides"]) == ([2, 2], [2, 2])
    assert gap["inputh"] == 14 and gap["cin"] == 32
    assert conv["name"] == "conv1/Conv2D;conv1/bn/FusedBatchNormV3;conv1/Relu6#conv-bn-relu6#0"


def test_chain_fusion_compares_consecutive_ops():
    # conv->bn and bn->relu fuse, conv->relu does not: the relu joins because it
    # follows the bn (nn-Meter compared conv with relu and stopped at conv-bn).
    rules = {"BF_conv_bn": {"obey": True}, "BF_bn_relu": {"obey": True}, "BF_conv_relu": {"obey": False}}
    assert detect_kernels(tf_ir(), rules)[0]["op"] == "conv-bn-relu6"
    # and the reverse: conv->relu fuses but bn->relu does not, so the relu stays out
    rules = {"BF_conv_bn": {"obey": True}, "BF_bn_relu": {"obey": False}, "BF_conv_relu": {"obey": True}}
    ops = [k["op"] for k in detect_kernels(tf_ir(), rules)]
    assert ops[:2] == ["conv-bn", "relu"]


def test_chain_rule_fuses_the_whole_chain():
    rules = {"BF_conv_bn_relu": {"obey": True}}
    ops = [k["op"] for k in detect_kernels(tf_ir(), rules)]
    assert ops[0] == "conv-bn-relu6" and ops[1] == "dwconv" and ops[2] == "bn"


def test_no_rules_means_no_fusion():
    ops = [k["op"] for k in detect_kernels(tf_ir(), {})]
    assert ops[:4] == ["conv", "bn", "relu", "dwconv"]  # a lone relu6 is predicted as relu


def _fanout_ir():
    """conv -> relu, and the conv output also feeds the add (two consumers)."""
    ir = IRGraph()
    s = [[1, 8, 8, 4]]
    ir.add_node("x", "Placeholder", [], s)
    ir.add_node("conv", "Conv", s, s, {"kernel_shape": [1, 1], "strides": [1, 1], "group": 1}, ["x"])
    ir.add_node("relu", "Relu", s, s, {}, ["conv"])
    ir.add_node("add", "Add", s * 2, s, {}, ["relu", "conv"])
    return ir


def test_mon_rule_decides_fusion_across_a_fanout():
    ir = _fanout_ir()
    assert [k["op"] for k in detect_kernels(ir, {"BF_conv_relu": {"obey": True}, "MON": {"obey": 0}})] == \
        ["conv", "relu", "add"]
    assert [k["op"] for k in detect_kernels(ir, {"BF_conv_relu": {"obey": True}, "MON": {"obey": 1}})] == \
        ["conv-relu", "add"]
    # the rule tester writes MON's winning case; its file is read as is
    assert [k["op"] for k in detect_kernels(ir, {"BF_conv_relu": {"obey": True}, "MON": {"obey": "case2"}})] == \
        ["conv-relu", "add"]
    assert load_fusion_rules({"MON": {"obey": "case1"}}).mon == 0
    with pytest.raises(ConfigError, match="MON.*case9"):
        load_fusion_rules({"MON": {"obey": "case9"}})


def test_rules_file_and_bad_rules(tmp_path):
    path = tmp_path / "detected_fusion_rule.json"
    path.write_text('{"BF_conv_bn": {"obey": true, "latency": {}}, "BF_conv_relu": {"obey": true}, "MON": {"obey": 0}}')
    rules = load_fusion_rules(path)
    assert rules.fusible(["conv"], "bn") and not rules.fusible(["conv", "bn"], "relu")
    assert [k["op"] for k in detect_kernels(tf_ir(), path)][:2] == ["conv-bn", "relu"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"BF_conv_bn": {"latency": 1}}')
    with pytest.raises(ConfigError, match="bad.json.*BF_conv_bn"):
        load_fusion_rules(bad)
    with pytest.raises(ConfigError, match="nope.json"):
        load_fusion_rules(tmp_path / "nope.json")


# ------------------------------------------------------------ blocks, both spellings
def _chain(spec, shape=(1, 8, 8, 4)):
    """IR from [(name, type, inbounds, attr)], every tensor of one shape."""
    ir = IRGraph()
    s = [list(shape)]
    ir.add_node("x", "Placeholder", [], s)
    for name, type_, ins, attr in spec:
        ir.add_node(name, type_, s * len(ins), s, attr, ins)
    return ir


@pytest.mark.parametrize("spec", [
    # ONNX as older exporters write it: x * clip(x + 3, 0, 6) / 6
    [("a", "Add", ["x"], {}), ("c", "Clip", ["a"], {"min": 0.0, "max": 6.0}),
     ("m", "Mul", ["x", "c"], {}), ("d", "Div", ["m"], {})],
    # TF: x * (relu6(x + 3) * 1/6)
    [("a", "AddV2", ["x"], {}), ("r", "Relu6", ["a"], {}), ("m", "Mul", ["r"], {}), ("m1", "Mul", ["x", "m"], {})],
    # ONNX opset >= 14: one op
    [("h", "HardSwish", ["x"], {})],
])
def test_hswish_in_every_spelling(spec):
    spec = [("conv", "Conv", ["x"], {"kernel_shape": [1, 1], "group": 1})] + \
        [(n, t, ["conv" if i == "x" else i for i in ins], a) for n, t, ins, a in spec]
    kernels = detect_kernels(_chain(spec))
    assert [k["op"] for k in kernels] == ["conv", "hswish"]


def test_clip_that_is_not_relu6_is_not_hswish():
    spec = [("a", "Add", ["x"], {}), ("c", "Clip", ["a"], {"min": 0.0, "max": 4.0}),
            ("m", "Mul", ["x", "c"], {}), ("d", "Div", ["m"], {})]
    assert [k["op"] for k in detect_kernels(_chain(spec))] == ["add", "clip", "mul", "div"]


def test_block_is_not_swallowed_when_an_inner_tensor_escapes():
    # relu6(x+3) is also read by another op: fusing it into hswish would hide that read
    spec = [("a", "Add", ["x"], {}), ("r", "Relu6", ["a"], {}), ("d", "Div", ["r"], {}),
            ("m", "Mul", ["x", "d"], {}), ("other", "Relu", ["r"], {})]
    ops = [k["op"] for k in detect_kernels(_chain(spec))]
    assert "hswish" not in ops


def test_se_with_dense_layers_and_a_reshape_tf_spelling():
    s4, s2 = [[1, 8, 8, 16]], [[1, 16]]
    ir = IRGraph()
    ir.add_node("x", "Placeholder", [], s4)
    ir.add_node("dw", "DepthwiseConv2dNative", s4, s4, {"strides": [1, 1, 1, 1], "weight_shape": [3, 3, 16, 1]}, ["x"])
    ir.add_node("se/Mean", "Mean", s4, s2, {}, ["dw"])
    ir.add_node("se/fc1", "MatMul", s2, [[1, 4]], {}, ["se/Mean"])
    ir.add_node("se/Relu", "Relu", [[1, 4]], [[1, 4]], {}, ["se/fc1"])
    ir.add_node("se/fc2", "MatMul", [[1, 4]], s2, {}, ["se/Relu"])
    ir.add_node("se/Sigmoid", "Sigmoid", s2, s2, {}, ["se/fc2"])
    ir.add_node("se/Reshape", "Reshape", s2, [[1, 1, 1, 16]], {}, ["se/Sigmoid"])
    ir.add_node("se/mul", "Mul", s4 + [[1, 1, 1, 16]], s4, {}, ["dw", "se/Reshape"])
    kernels = detect_kernels(ir)
    assert [k["op"] for k in kernels] == ["dwconv", "se"]
    assert kernels[1]["input_tensors"] == s4 and kernels[1]["cout"] == 16


def test_global_pooling_as_two_reduce_means():
    # nn-Meter's ONNX form: ReduceMean over W, then over H
    ir = IRGraph()
    ir.add_node("x", "Placeholder", [], [[1, 7, 7, 32]])
    ir.add_node("m1", "ReduceMean", [[1, 7, 7, 32]], [[1, 7, 1, 32]], {"axes": [2]}, ["x"])
    ir.add_node("m2", "ReduceMean", [[1, 7, 1, 32]], [[1, 1, 1, 32]], {"axes": [1]}, ["m1"])
    ir.add_node("fc", "Gemm", [[1, 32]], [[1, 10]], {}, ["m2"])
    kernels = detect_kernels(ir)
    assert [k["op"] for k in kernels] == ["global-avgpool", "fc"]
    assert kernels[0]["inputh"] == 7 and kernels[0]["inputw"] == 7 and kernels[0]["cin"] == 32


def test_blocks_that_read_the_model_input_itself():
    # x * sigmoid(x) straight on the graph input is a swish ...
    ir = _chain([("s", "Sigmoid", ["x"], {}), ("m", "Mul", ["x", "s"], {})])
    assert [k["op"] for k in detect_kernels(ir)] == ["swish"]
    # ... but sigmoid(x) * 2 is not
    ir = _chain([("s", "Sigmoid", ["x"], {}), ("m", "Mul", ["s"], {})])
    assert [k["op"] for k in detect_kernels(ir)] == ["sigmoid", "mul"]


# ------------------------------------------------------------ fast path == reference
_RULE_SETS = [
    None,  # default TFLite-like CPU rules, MON=0
    {"BF_conv_bn": {"obey": True}, "BF_bn_relu": {"obey": True}, "BF_conv_relu": {"obey": True},
     "BF_add_relu": {"obey": True}, "MON": {"obey": 1}},
    {"BF_conv_bn_relu": {"obey": True}, "BF_dwconv_bn": {"obey": True}, "MON": {"obey": 0}},
]


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "resnet18",
                                  "shufflenet_v2_x1_0", "efficientnet_b0"])
def test_fast_detector_matches_the_reference_on_the_zoo(zoo, name):
    from _reference_detector import detect_kernels_reference

    ir = zoo(name)
    for rules in _RULE_SETS:
        fast = detect_kernels(ir, rules)
        assert fast == detect_kernels_reference(ir, rules)
        # the pricing path leaves out names and connections, nothing else
        lean = detect_kernels(ir, rules, connections=False)
        assert lean == [{k: v for k, v in u.items() if k not in ("name", "inbounds", "outbounds")}
                        for u in fast]


def test_fast_detector_matches_the_reference_on_nas_graphs_and_small_irs():
    import sys

    import numpy as np

    from _reference_detector import detect_kernels_reference

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    try:
        from predict_speed import sample_mobilenet_ir
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(7)
    irs = [IRGraph.from_json(sample_mobilenet_ir(rng)) for _ in range(20)] + [tf_ir(), _fanout_ir()]
    for ir in irs:
        for rules in _RULE_SETS:
            assert detect_kernels(ir, rules) == detect_kernels_reference(ir, rules)


def _pad_ir(pad_out, consumers=("conv",)):
    ir = IRGraph()
    ir.add_node("x", "Placeholder", [], [[1, 8, 8, 4]])
    ir.add_node("pad", "Pad", [[1, 8, 8, 4]], [pad_out], {}, ["x"])
    out = [1, 4, 4, 4]
    for c in consumers:
        ir.add_node(c, "Conv", [pad_out], [out], {"kernel_shape": [3, 3], "strides": [2, 2], "group": 1}, ["pad"])
    return ir


def test_explicit_spatial_pad_folds_into_the_conv_it_feeds():
    kernels = detect_kernels(_pad_ir([1, 10, 10, 4]))
    assert [(k["op"], k["input_tensors"], k["inputh"], k["strides"]) for k in kernels] == \
        [("conv", [[1, 8, 8, 4]], 8, [2, 2])]
    assert kernels[0]["name"] == "pad;conv#conv#0"
    # a pad of the channels is no conv padding; a pad read twice is not swallowed
    assert [k["op"] for k in detect_kernels(_pad_ir([1, 10, 10, 6]))] == ["pad", "conv"]
    assert [k["op"] for k in detect_kernels(_pad_ir([1, 10, 10, 4], ("c1", "c2")))] == ["pad", "conv", "conv"]
