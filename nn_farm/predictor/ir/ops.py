"""One vocabulary for operators that arrive in ONNX, TensorFlow and TFLite spellings.

nn-Meter's IR keeps each framework's own op names (``Conv`` / ``Conv2D``,
``GlobalAveragePool`` / ``Mean``, ``Clip`` / ``Relu6``). Kernel detection works on
the *canonical* op below, so one rule file serves models from every converter:

    conv dwconv bn relu relu6 hswish hsigmoid sigmoid add mul div sub fc maxpool
    avgpool gap mean concat split reshape transpose pad dummy

``dummy`` ops (Identity, Dropout, Placeholder, Const) carry no work; ``reshape`` ops
(Reshape, Flatten, Squeeze) only relabel memory. Neither becomes a kernel. nn-Meter
maps ``Relu6`` and every ``Clip`` to ``relu``; here ``relu6`` stays itself, because
the kernel list has conv-relu6 and dwconv-relu6, and a Clip that is not (0, 6) is
not a relu6 at all.
"""

from __future__ import annotations

ALIASES: dict[str, str] = {
    # TensorFlow (GraphDef op names), also used for Keras and TFLite
    "Conv2D": "conv",
    "DepthwiseConv2dNative": "dwconv",
    "FusedBatchNorm": "bn",
    "FusedBatchNormV3": "bn",
    "Relu": "relu",
    "Relu6": "relu6",
    "Add": "add",
    "AddV2": "add",
    "BiasAdd": "add",
    "Mul": "mul",
    "RealDiv": "div",
    "Div": "div",
    "Sub": "sub",
    "MatMul": "fc",
    "MaxPool": "maxpool",
    "AvgPool": "avgpool",
    "Mean": "mean",
    "ConcatV2": "concat",
    "Split": "split",
    "SplitV": "split",
    "StridedSlice": "split",
    "Reshape": "reshape",
    "Squeeze": "reshape",
    "Transpose": "transpose",
    "Pad": "pad",
    "PadV2": "pad",
    "Sigmoid": "sigmoid",
    "Identity": "dummy",
    "Placeholder": "dummy",
    "Const": "dummy",
    "NoOp": "dummy",
    # ONNX
    "Conv": "conv",
    "BatchNormalization": "bn",
    "Clip": "clip",
    "HardSwish": "hswish",
    "HardSigmoid": "hsigmoid",
    "Gemm": "fc",
    "AveragePool": "avgpool",
    "GlobalAveragePool": "gap",
    "GlobalMaxPool": "gmp",
    "ReduceMean": "mean",
    "Concat": "concat",
    "Slice": "split",
    "Flatten": "reshape",
    "Unsqueeze": "reshape",
    "Dropout": "dummy",
    # nn-Meter's already-canonical spellings (its fusion units and builder graphs)
    **{t: t for t in ("conv", "dwconv", "bn", "relu", "relu6", "hswish", "hsigmoid",
                      "sigmoid", "add", "mul", "div", "sub", "fc", "maxpool", "avgpool",
                      "gap", "concat", "split", "reshape", "transpose", "pad", "se",
                      "channelshuffle", "swish", "dummy")},
    "global-avgpool": "gap",
    "hardsigmoid": "hsigmoid",
}

#: Ops that never become a kernel of their own.
NO_KERNEL = frozenset({"dummy", "reshape"})


def canonical_type(type_: str) -> str | None:
    """The canonical op for a framework op name, or ``None`` when it is not understood."""
    return ALIASES.get(type_)


def canonical_op(node: dict) -> str:
    """The canonical op of one IR node, looking at attributes and shapes where the
    op name alone is ambiguous.

    - ``Conv`` with ``group`` equal to its input channels (and > 1) is ``dwconv``.
    - ``Clip`` / ``relu`` with bounds (0, 6) is ``relu6``; other bounds stay ``clip``.
    - ``Mean`` / ``ReduceMean`` that collapses H and W of a 4-D NHWC tensor (and
      keeps C) is ``gap``; any other reduction stays ``mean``.

    Returns:
        The canonical op; an op not understood keeps its own type name.
    """
    a = node["attr"]
    t = a["type"]
    c = ALIASES.get(t, t)
    if c == "conv":
        group = a["attr"].get("group", 1)
        if group > 1:
            ins = a.get("input_shape") or []
            if ins and len(ins[0]) == 4 and ins[0][3] == group:
                return "dwconv"
    elif c == "clip" or (c == "relu" and "max" in a["attr"]):
        at = a["attr"]
        if at.get("min", 0.0) == 0.0 and at.get("max") == 6.0:
            return "relu6"
        return "clip" if c == "clip" else "relu"
    elif c == "mean":
        ins, outs = a.get("input_shape") or [], a.get("output_shape") or []
        if ins and outs and len(ins[0]) == 4:
            n, h, w, ch = ins[0]
            o = outs[0]
            if (h > 1 or w > 1) and _is_pooled(o, n, ch):
                return "gap"
    return c


def _is_pooled(out: list, n: int, ch: int) -> bool:
    # keepdims gives [n,1,1,c]; without keepdims [n,c]
    return list(out) in ([n, 1, 1, ch], [n, ch])
