"""ONNX model -> IR graph.

    .onnx bytes --skim weights--> ModelProto --onnx.shape_inference--> tensor shapes
                --walk the data flow--> IRGraph (NCHW -> NHWC)

Only nodes on the data path from the graph inputs become IR nodes: weight
``Identity`` nodes, ``Constant`` nodes and the shape arithmetic that feeds a
``Reshape`` (Shape -> Gather -> Mul -> ...) are constants, not operators on
device. Sibling ``Slice`` nodes that cut one tensor are merged into one split node,
as nn-Meter's ONNX converter does (torch's ``chunk`` exports as Slices).
"""

from __future__ import annotations

import logging
import os
import struct

from nn_farm.errors import ConversionError
from nn_farm.predictor.ir.graph import IRGraph
from nn_farm.predictor.ir.ops import ALIASES

log = logging.getLogger(__name__)

# A node whose output is shape metadata, not data: everything downstream of it
# is shape arithmetic.
_SHAPE_SOURCES = frozenset({"Shape", "Size"})
# Pass-through nodes that are dropped, their output aliased to their input.
_PASSTHROUGH = frozenset({"Identity", "Dropout"})


def onnx_file_to_ir(path: str | os.PathLike) -> IRGraph:
    """Read an ``.onnx`` file into IR.

    Raises:
        ConversionError: the file is missing, truncated or not ONNX (names the file
            and quotes the parser), or shape inference fails.
    """
    from nn_farm.predictor.ir._onnx_skim import SkimError, skim_model_bytes

    import mmap

    path = os.fspath(path)
    try:
        with open(path, "rb") as fp:
            # mmap: the weight payloads that skimming steps over are never read
            data = mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:  # ValueError: empty file
        raise ConversionError(f"{path}: cannot read ONNX file: {exc}") from exc
    try:
        skimmed = skim_model_bytes(data)
        model = _parse(skimmed)
    except (SkimError, ValueError) as exc:
        raise ConversionError(f"{path}: not a valid ONNX model (truncated or corrupt?): {exc}") from exc
    finally:
        data.close()
    return onnx_model_to_ir(model, source=path, skimmed=True, serialized=skimmed)


def onnx_bytes_to_ir(data: bytes, source: str = "<bytes>") -> IRGraph:
    """Serialized ONNX model -> IR (used for in-memory torch exports)."""
    from nn_farm.predictor.ir._onnx_skim import SkimError, skim_model_bytes

    try:
        skimmed = skim_model_bytes(data)
        model = _parse(skimmed)
    except (SkimError, ValueError) as exc:
        raise ConversionError(f"{source}: not a valid ONNX model: {exc}") from exc
    return onnx_model_to_ir(model, source=source, skimmed=True, serialized=skimmed)


def _parse(data: bytes):
    import onnx
    from google.protobuf.message import DecodeError

    try:
        return onnx.ModelProto.FromString(data)
    except DecodeError as exc:
        raise ValueError(str(exc)) from exc


def onnx_model_to_ir(model, source: str = "<onnx.ModelProto>", skimmed: bool = False,
                     serialized: bytes | None = None) -> IRGraph:
    """An ``onnx.ModelProto`` -> IR.

    Args:
        model: the loaded model (not modified unless ``skimmed``: then it is the
            converter's own copy).
        source: how to name the model in errors.
        skimmed: the model's big initializers are already stripped of data.
        serialized: ``model`` as bytes, if the caller has them (saves serializing
            it again for shape inference).

    Raises:
        ConversionError: shape inference fails or leaves a data tensor without shape.
    """
    import onnx

    from nn_farm.predictor.ir._onnx_shapes import infer_shapes, node_table

    if not skimmed:
        model = _skeleton(model)
    if _fix_dynamic_dims(model):
        serialized = None  # the bytes no longer say what the model says
    table = node_table(model)  # shared by shape folding and the walk
    try:
        inferred = infer_shapes(model, table, serialized)
    except Exception as exc:  # onnx raises several kinds (InferenceError, RuntimeError)
        raise ConversionError(f"{source}: ONNX shape inference failed: {exc}") from exc
    return _Walker(inferred.graph, source, onnx, model.graph.node, table).run()


def _fix_dynamic_dims(model) -> bool:
    """Give symbolic input dims (a dynamic batch ``N``) the size 1, in place.

    Latency is predicted for one concrete shape; a symbolic dim would leave every
    downstream shape unknown. ``model`` is always our own copy (skimmed or skeleton).

    Returns:
        Whether a dim was changed.
    """
    changed = False
    inits = None  # initializer names, read only if some input has a symbolic dim
    for vi in model.graph.input:
        dims = [d for d in vi.type.tensor_type.shape.dim if not d.HasField("dim_value")]
        if not dims:
            continue
        if inits is None:
            inits = {i.name for i in model.graph.initializer}
        if vi.name in inits:
            continue
        for d in dims:
            d.dim_value = 1
        changed = True
    return changed


def _skeleton(model):
    """A shallow copy of the model without big weight payloads (cheap to infer on)."""
    import onnx

    from nn_farm.predictor.ir._onnx_skim import MAX_KEPT_PAYLOAD

    g = model.graph
    sk = onnx.ModelProto(ir_version=model.ir_version)
    sk.opset_import.extend(model.opset_import)
    sg = sk.graph
    sg.node.extend(g.node)
    sg.input.extend(g.input)
    sg.output.extend(g.output)
    sg.value_info.extend(g.value_info)
    for init in g.initializer:
        if init.ByteSize() <= MAX_KEPT_PAYLOAD:
            sg.initializer.append(init)
        else:
            sg.initializer.add(name=init.name, data_type=init.data_type, dims=init.dims)
    return sk


def _nhwc(shape: list) -> list:
    if len(shape) == 4:
        return [shape[0], shape[2], shape[3], shape[1]]
    return shape


_NCHW_TO_NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}
_SCALAR_FORMATS = {1: "<f", 7: "<q", 6: "<i", 11: "<d"}  # FLOAT, INT64, INT32, DOUBLE


class _Walker:
    """One pass over the (topologically sorted) ONNX nodes, building IR nodes.

    Args:
        graph: the shape-inferred graph (shapes, initializers, inputs).
        source: how to name the model in errors.
        onnx: the onnx module.
        nodes: the graph's nodes (attributes are read from these).
        table: ``(op_type, inputs, outputs)`` of each of ``nodes``
            (:func:`~nn_farm.predictor.ir._onnx_shapes.node_table`).
    """

    def __init__(self, graph, source: str, onnx, nodes, table):
        self.g = graph
        self.nodes = nodes
        self.table = table
        self.source = source
        self.onnx = onnx
        self.shapes: dict[str, list] = {}
        self.consts: dict[str, int] = {}  # Constant node output -> node index
        self.producer: dict[str, str] = {}  # data tensor -> IR node name
        self.alias: dict[str, str] = {}  # pass-through output -> its input
        self.ir = IRGraph()
        self.unknown: list[str] = []

    # -- tensors ----------------------------------------------------------------
    def _collect_shapes(self):
        """Index the tensors by name; shapes are decoded when first asked for.

        A third of the value infos are shape arithmetic that no IR node reads, and
        each protobuf field read costs about a microsecond.
        """
        g = self.g
        self._infos = {vi.name: vi for vi in (*g.input, *g.value_info, *g.output)}
        self._inits = {init.name: init for init in g.initializer}

    def _shape(self, name: str) -> list:
        """A tensor's dims (-1 where unknown), or [] when it has no shape."""
        shape = self.shapes.get(name)
        if shape is not None:
            return shape
        init = self._inits.get(name)
        if init is not None:
            shape = list(init.dims)
        else:
            vi = self._infos.get(name)
            t = vi.type.tensor_type if vi is not None else None
            if t is None or not t.HasField("shape"):
                return []
            dims = t.shape.dim
            shape = [d.dim_value for d in dims]
            if 0 in shape:  # an unset dim reads 0: tell "unknown" from a real 0
                shape = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
        self.shapes[name] = shape
        return shape

    def _const_value(self, name: str):
        """Python list/scalar of a small constant tensor, or None."""
        idx = self.consts.get(name)  # a Constant node's output?
        if idx is not None:
            t = next((a.t for a in self.nodes[idx].attribute if a.name == "value"), None)
            if t is None:
                return None
        else:
            t = self._inits.get(name)
            if t is None or not (t.raw_data or t.int64_data or t.float_data or t.int32_data):
                return None
        raw = t.raw_data
        if len(t.dims) == 0 and raw and t.data_type in _SCALAR_FORMATS:
            # one scalar (Clip bounds): struct is 50x cheaper than numpy_helper
            fmt = _SCALAR_FORMATS[t.data_type]
            if len(raw) == struct.calcsize(fmt):
                return struct.unpack(fmt, raw)[0]
        from onnx import numpy_helper

        try:
            return numpy_helper.to_array(t).tolist()
        except Exception:  # a constant we cannot decode is simply not used
            return None

    def _resolve(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    # -- main walk --------------------------------------------------------------
    def run(self) -> IRGraph:
        self._collect_shapes()
        initializers = {i.name for i in self.g.initializer}
        data = set()
        for vi in self.g.input:
            if vi.name not in initializers:
                data.add(vi.name)
                self._add(vi.name, "Placeholder", [], [_nhwc(self._shape(vi.name))], {}, [], [vi.name])

        slice_groups: dict[str, str] = {}  # sliced tensor -> merged split node name
        names = set()
        alias = self.alias
        for idx, (op, node_ins, node_outs) in enumerate(self.table):
            if op == "Constant":
                self.consts[node_outs[0]] = idx  # its tensor is read if an op needs it
                continue
            if data.isdisjoint(node_ins) and (not alias or alias.keys().isdisjoint(node_ins)):
                continue  # constant folding territory: not an operator on the device
            ins = [self._resolve(i) if i else "" for i in node_ins]  # keep positions
            data_ins = [i for i in ins if i in data]
            if not data_ins or op in _SHAPE_SOURCES:
                continue
            if op in _PASSTHROUGH:
                alias[node_outs[0]] = data_ins[0]
                continue
            node = self.nodes[idx]
            name = node.name or f"{op}_{idx}"
            while name in names:
                name += "_"
            names.add(name)
            outputs = [o for o in node_outs if o]
            data.update(outputs)
            attr = self._attrs(node, ins)
            if op == "Slice":
                key = data_ins[0]
                merged = slice_groups.get(key)
                if merged is not None:  # a sibling slice: one more output of the split
                    self.ir.nodes[merged]["attr"]["output_shape"].append(_nhwc(self._shape(outputs[0])))
                    self.producer[outputs[0]] = merged
                    continue
                slice_groups[key] = name
            in_shapes = [_nhwc(self._shape(i)) for i in data_ins]
            out_shapes = [_nhwc(self._shape(o)) for o in outputs]
            if op not in ALIASES and op not in self.unknown:
                self.unknown.append(op)
            self._add(name, op, in_shapes, out_shapes, attr, data_ins, outputs)

        if self.unknown:
            log.warning("%s: ONNX ops not understood, kept as typed nodes: %s", self.source, self.unknown)
        self.ir.unknown_ops = self.unknown
        return self.ir

    def _add(self, name, op, in_shapes, out_shapes, attr, data_ins, outputs):
        for s in in_shapes + out_shapes:
            if not s:
                raise ConversionError(f"{self.source}: node {name!r} ({op}): a tensor has no inferred shape")
        inbounds = []
        for t in data_ins:
            p = self.producer.get(t)
            if p is not None and p not in inbounds:
                inbounds.append(p)
        self.ir.add_node(name, op, in_shapes, out_shapes, attr, inbounds)
        for o in outputs:
            self.producer[o] = name

    # -- attributes -------------------------------------------------------------
    def _attrs(self, node, ins: list[str]) -> dict:
        AT = self.onnx.AttributeProto
        attrs = {}
        for a in node.attribute:
            t = a.type  # each protobuf field read costs: read it once
            if t == AT.INT:
                attrs[a.name] = a.i
            elif t == AT.INTS:
                attrs[a.name] = list(a.ints)
            elif t == AT.FLOAT:
                attrs[a.name] = a.f
            elif t == AT.FLOATS:
                attrs[a.name] = list(a.floats)
            elif t == AT.STRING:
                attrs[a.name] = a.s.decode(errors="replace")
        op = node.op_type
        if op == "Conv":
            attrs.setdefault("group", 1)
            w = self._shape(ins[1]) if len(ins) > 1 and ins[1] else None
            if w and "kernel_shape" not in attrs:
                attrs["kernel_shape"] = list(w[2:])
            attrs.setdefault("strides", [1] * len(attrs.get("kernel_shape", [1, 1])))
        elif op in ("MaxPool", "AveragePool"):
            attrs.setdefault("strides", [1] * len(attrs.get("kernel_shape", [1, 1])))
        elif op == "Clip" and len(ins) > 1:  # opset >= 11: bounds are inputs
            lo = self._const_value(ins[1]) if ins[1] else None
            hi = self._const_value(ins[2]) if len(ins) > 2 and ins[2] else None
            if lo is not None:
                attrs["min"] = float(lo)
            if hi is not None:
                attrs["max"] = float(hi)
        elif op in ("Slice", "Split", "Concat", "ReduceMean"):
            axes = attrs.get("axes") if "axes" in attrs else attrs.get("axis")
            if axes is None and op in ("Slice", "ReduceMean"):
                pos = 3 if op == "Slice" else 1
                axes = self._const_value(ins[pos]) if len(ins) > pos and ins[pos] else None
            if axes is not None:
                rank = len(self._shape(ins[0]))
                ax = axes if isinstance(axes, list) else [axes]
                if rank == 4:
                    ax = [_NCHW_TO_NHWC_AXIS[a % 4] for a in ax]
                if op in ("Slice", "Split"):
                    attrs["split_dim"] = ax[0]
                elif op == "Concat":
                    attrs["axis"] = ax[0]
                else:
                    attrs["axes"] = ax
        return attrs
