""".tflite flatbuffer -> IR graph, read with LiteRT's flatbuffer schema (no TF import).

Builtin ops are written in TensorFlow's spelling (``CONV_2D`` -> ``Conv2D``), as
nn-Meter's TF IR has them, and a fused activation (``fused_activation_function``
RELU / RELU6) becomes its own ``Relu`` / ``Relu6`` node after the op: the IR says
what the model computes, the fusion rules decide what runs as one kernel.
TFLite tensors are NHWC already.
"""

from __future__ import annotations

import logging
import os

from nn_farm.errors import ConversionError
from nn_farm.predictor.ir.graph import IRGraph

log = logging.getLogger(__name__)

# builtin op name -> IR type (TensorFlow spelling, or ONNX's where TF has none)
_TYPES = {
    "CONV_2D": "Conv2D",
    "DEPTHWISE_CONV_2D": "DepthwiseConv2dNative",
    "FULLY_CONNECTED": "MatMul",
    "ADD": "AddV2",
    "MUL": "Mul",
    "SUB": "Sub",
    "DIV": "RealDiv",
    "RELU": "Relu",
    "RELU6": "Relu6",
    "HARD_SWISH": "HardSwish",
    "LOGISTIC": "Sigmoid",
    "MAX_POOL_2D": "MaxPool",
    "AVERAGE_POOL_2D": "AvgPool",
    "MEAN": "Mean",
    "CONCATENATION": "ConcatV2",
    "SPLIT": "Split",
    "SPLIT_V": "SplitV",
    "STRIDED_SLICE": "StridedSlice",  # one part of a split (torch's chunk), as ONNX's Slice
    "SLICE": "Slice",
    "RESHAPE": "Reshape",
    "SQUEEZE": "Squeeze",
    "TRANSPOSE": "Transpose",
    "PAD": "Pad",
    "PADV2": "PadV2",  # a pad with a fill value: -inf before a max pool
    "SOFTMAX": "Softmax",  # no nn-Meter kernel: stays an unknown op, in TF's spelling
    "DEQUANTIZE": "Identity",
    "QUANTIZE": "Identity",
}
_SLICES = frozenset({"StridedSlice", "Slice"})
_ACTIVATIONS = {1: "Relu", 3: "Relu6"}  # ActivationFunctionType: RELU, RELU6
_ACT_NAMES = {0: None, 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}


def _builtin_names(schema) -> dict[int, str]:
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def tflite_to_ir(path: str | os.PathLike) -> IRGraph:
    """Read subgraph 0 of a ``.tflite`` file into IR.

    Raises:
        ConversionError: missing, truncated or non-TFLite file (names the file).
    """
    from ai_edge_litert import schema_py_generated as schema

    path = os.fspath(path)
    try:
        with open(path, "rb") as fp:
            buf = fp.read()
    except OSError as exc:
        raise ConversionError(f"{path}: cannot read TFLite file: {exc}") from exc
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ConversionError(f"{path}: not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        return _Reader(schema, schema.Model.GetRootAs(buf, 0), path).run()
    except ConversionError:
        raise
    except Exception as exc:  # flatbuffers raises struct.error / IndexError on bad offsets
        raise ConversionError(f"{path}: corrupt or truncated TFLite model: {exc!r}") from exc


class _Reader:
    def __init__(self, schema, model, source: str):
        self.s = schema
        self.m = model
        self.source = source
        self.names = _builtin_names(schema)

    def run(self) -> IRGraph:
        s, m = self.s, self.m
        if m.SubgraphsLength() < 1:
            raise ConversionError(f"{self.source}: the model has no subgraph")
        sg = m.Subgraphs(0)
        tensors = [sg.Tensors(i) for i in range(sg.TensorsLength())]
        shapes = [[int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else [] for t in tensors]
        ir = IRGraph()
        producer: dict[int, str] = {}
        slices: dict[int, str] = {}  # sliced tensor -> the split node its slices became
        unknown: list[str] = []
        for ti in sg.InputsAsNumpy():
            name = self._tname(tensors[ti]) or f"input_{ti}"
            ir.add_node(name, "Placeholder", [], [shapes[ti]])
            producer[int(ti)] = name
        for oi in range(sg.OperatorsLength()):
            op = sg.Operators(oi)
            code = m.OperatorCodes(op.OpcodeIndex())
            builtin = self.names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
            if builtin == "CUSTOM":
                builtin = (code.CustomCode() or b"CUSTOM").decode(errors="replace")
            ins = [int(i) for i in op.InputsAsNumpy() if i >= 0] if op.InputsLength() else []
            outs = [int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
            data_ins = [i for i in ins if i in producer]
            if not data_ins:
                continue  # works on constants only (e.g. dequantizing fp16 weights)
            type_ = _TYPES.get(builtin)
            if type_ is None:
                type_ = builtin
                if builtin not in unknown:
                    unknown.append(builtin)
            if type_ == "Identity":  # pass-through: alias the output to the input
                for o in outs:
                    producer[o] = producer[data_ins[0]]
                continue
            if type_ in _SLICES:
                # Sibling slices of one tensor are one split, as the ONNX reader and
                # nn-Meter's ONNX converter have them (torch's chunk exports as slices).
                merged = slices.get(data_ins[0])
                if merged is not None:
                    ir.nodes[merged]["attr"]["output_shape"].extend(shapes[o] for o in outs)
                    for o in outs:
                        producer[o] = merged
                    continue
            attr, act = self._options(op, builtin, ins, shapes)
            name = self._unique(ir, self._tname(tensors[outs[0]]) or f"{builtin}_{oi}")
            if type_ in _SLICES:
                slices[data_ins[0]] = name
            in_shapes = [shapes[i] for i in data_ins]
            out_shapes = [shapes[o] for o in outs]
            inbounds = list(dict.fromkeys(producer[i] for i in data_ins))
            if act is not None and act not in _ACTIVATIONS:
                # fused tanh etc.: not a separate IR op we predict; say so
                act_name = _ACT_NAMES.get(act, str(act))
                log.warning("%s: %s has fused activation %s, kept as an attribute", self.source, name, act_name)
                attr["fused_activation_function"] = act_name
            ir.add_node(name if act not in _ACTIVATIONS else name + "/op", type_, in_shapes, out_shapes,
                        attr, inbounds)
            last = name if act not in _ACTIVATIONS else name + "/op"
            if act in _ACTIVATIONS:
                ir.add_node(name, _ACTIVATIONS[act], out_shapes[:1], out_shapes[:1], {}, [last])
                last = name
            for o in outs:
                producer[o] = last
        if unknown:
            log.warning("%s: TFLite ops not understood, kept as typed nodes: %s", self.source, unknown)
        ir.unknown_ops = unknown
        return ir

    @staticmethod
    def _tname(t) -> str:
        n = t.Name()
        return n.decode(errors="replace") if n else ""

    @staticmethod
    def _unique(ir: IRGraph, name: str) -> str:
        while name in ir.nodes or name + "/op" in ir.nodes:
            name += "_"
        return name

    def _options(self, op, builtin: str, ins: list[int], shapes: list) -> tuple[dict, int | None]:
        """IR attributes (nn-Meter's TF keys) and the fused activation code."""
        s = self.s
        table = op.BuiltinOptions()
        attr: dict = {}
        act = None
        if table is None:
            return attr, None
        if builtin in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            o = (s.Conv2DOptions if builtin == "CONV_2D" else s.DepthwiseConv2DOptions)()
            o.Init(table.Bytes, table.Pos)
            w = shapes[ins[1]]  # OHWI for conv, 1HWO for depthwise
            attr = {"strides": [1, o.StrideH(), o.StrideW(), 1],
                    "dilations": [1, o.DilationHFactor(), o.DilationWFactor(), 1],
                    "padding": "SAME" if o.Padding() == 0 else "VALID",
                    "kernel_shape": [w[1], w[2]], "data_format": "NHWC"}
            act = o.FusedActivationFunction()
        elif builtin in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            o = s.Pool2DOptions()
            o.Init(table.Bytes, table.Pos)
            attr = {"strides": [1, o.StrideH(), o.StrideW(), 1],
                    "ksize": [1, o.FilterHeight(), o.FilterWidth(), 1],
                    "padding": "SAME" if o.Padding() == 0 else "VALID", "data_format": "NHWC"}
            act = o.FusedActivationFunction()
        elif builtin in ("ADD", "MUL", "SUB", "DIV", "FULLY_CONNECTED"):
            cls = {"ADD": s.AddOptions, "MUL": s.MulOptions, "SUB": s.SubOptions,
                   "DIV": s.DivOptions, "FULLY_CONNECTED": s.FullyConnectedOptions}[builtin]
            o = cls()
            o.Init(table.Bytes, table.Pos)
            act = o.FusedActivationFunction()
        elif builtin == "CONCATENATION":
            o = s.ConcatenationOptions()
            o.Init(table.Bytes, table.Pos)
            attr = {"axis": o.Axis()}
            act = o.FusedActivationFunction()
        elif builtin == "MEAN":
            o = s.ReducerOptions()
            o.Init(table.Bytes, table.Pos)
            attr = {"keep_dims": bool(o.KeepDims())}
        return attr, (act or None)
