"""ONNX shape inference that also sees through shape arithmetic.

torch exports ``x.chunk(2, dim=1)`` and ``x.view(b, g, -1, h, w)`` as a small
integer program on the tensor's shape (Shape -> Gather -> Div -> Slice ...).
``onnx.shape_inference`` does not run that program, so every tensor after the
first such Slice has unknown dims. Here the program is evaluated with numpy on the
shapes inference did find, the operators that read its results are pointed at
constants instead, and inference runs again, until nothing more can be folded.
Models without shape arithmetic take one inference pass.

Only the part of the program that depends on a ``Shape`` / ``Size`` is evaluated:
constants and weight ``Identity`` nodes are left to inference, which already
understands them (a ShuffleNetV2 export has 240 constant-side nodes, 78 of which
are shape arithmetic).
"""

from __future__ import annotations

MAX_ROUNDS = 64
_SHAPE_OPS = ("Shape", "Size")
#: suffix of the constant initializers that stand in for folded program outputs
FOLDED_SUFFIX = "::folded"


def node_table(model) -> list[tuple[str, tuple, tuple]]:
    """``(op_type, inputs, outputs)`` per graph node, read out of protobuf once
    (each field access on a message costs about as much as a dict build)."""
    return [(n.op_type, tuple(n.input), tuple(n.output)) for n in model.graph.node]


def infer_shapes(model, table: list | None = None, serialized: bytes | None = None):
    """Shape-infer ``model`` (a weight-skimmed ModelProto), folding shape arithmetic.

    Args:
        model: the converter's own copy of the model. When it holds shape
            arithmetic, it is edited in place: operators that read a folded value
            read a constant initializer (``<name>::folded``) instead.
        table: :func:`node_table` of ``model``, if the caller has it; its rows are
            updated along with the model.
        serialized: ``model`` as bytes, if the caller has them (the first
            inference pass then skips serializing it).

    Returns:
        The inferred ModelProto.
    """
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model if serialized is None else serialized)
    if table is None:
        table = node_table(model)
    if not any(row[0] in _SHAPE_OPS for row in table):
        return inferred  # no shape program to run: one pass is all there is

    import numpy as np
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    # One pass in graph (topological) order sorts the nodes into
    #   data nodes: read a data tensor (graph inputs that are not initializers,
    #     and what data nodes make); they run on the device
    #   the shape program proper: Shape / Size and every other node that reads
    #     (transitively) from one; evaluated here
    #   the rest: constants and weight Identities, which inference understands
    data = {vi.name for vi in graph.input if vi.name not in inits}
    dynamic: set[str] = set()
    program, constant_nodes = [], {}
    readers: dict[str, list[int]] = {}  # program output -> data nodes reading it
    for i, (op, ins, outs) in enumerate(table):
        if op in _SHAPE_OPS:
            program.append(i)
            dynamic.update(outs)
            dynamic.discard("")  # an absent optional output is no tensor
        elif not data.isdisjoint(ins):
            data.update(outs)
            data.discard("")
            if not dynamic.isdisjoint(ins):
                for x in ins:
                    if x in dynamic:
                        readers.setdefault(x, []).append(i)
        elif not dynamic.isdisjoint(ins):
            program.append(i)
            dynamic.update(outs)
            dynamic.discard("")
        elif op == "Constant":
            constant_nodes[outs[0]] = i
    nodes = graph.node
    values: dict[str, object] = {}
    pending = program
    for _ in range(MAX_ROUNDS):
        shapes = _known_shapes(inferred.graph, {table[i][1][0] for i in pending if table[i][0] in _SHAPE_OPS})
        left, new = [], []
        for i in pending:
            out = _eval(nodes[i], table[i], values, shapes, inits, constant_nodes, nodes, np)
            if out is None:
                left.append(i)
                continue
            for name, val in zip(table[i][2], out):
                values[name] = val
                if name in readers:
                    new.append(name)
        if not new:
            return inferred
        for name in new:
            folded = name + FOLDED_SUFFIX
            graph.initializer.append(numpy_helper.from_array(np.asarray(values[name]), folded))
            for i in readers[name]:
                node_inputs = nodes[i].input
                for j, x in enumerate(node_inputs):
                    if x == name:
                        node_inputs[j] = folded
                op, ins, outs = table[i]
                table[i] = (op, tuple(folded if x == name else x for x in ins), outs)
        inferred = shape_inference.infer_shapes(model)
        if not left:
            return inferred  # the whole shape program is folded: nothing more to learn
        pending = left
    return inferred


def _has_data(t) -> bool:
    return bool(t.raw_data or t.int64_data or t.float_data or t.int32_data or t.double_data)


def _constant(name, inits, constant_nodes, nodes):
    """The value of an initializer with data or a Constant node's output, or None."""
    t = inits.get(name)
    if t is not None:
        return _tensor_value(t) if _has_data(t) else None
    i = constant_nodes.get(name)
    return None if i is None else _attr(nodes[i], "value")


_RAW_DTYPES = {1: "<f4", 6: "<i4", 7: "<i8", 11: "<f8"}  # FLOAT, INT32, INT64, DOUBLE


def _tensor_value(t):
    """numpy value of a TensorProto; plain raw little-endian data without numpy_helper
    (a tenth of its cost, and shape programs are made of tiny constants)."""
    import numpy as np

    dtype = _RAW_DTYPES.get(t.data_type)
    raw = t.raw_data if dtype is not None else None
    if raw:
        return np.frombuffer(raw, dtype=dtype).reshape(tuple(t.dims))
    from onnx import numpy_helper

    return numpy_helper.to_array(t)


def _known_shapes(g, names: set[str]) -> dict[str, list | None]:
    out = {}
    for vi in (*g.input, *g.value_info, *g.output):
        if vi.name not in names:
            continue
        tt = vi.type.tensor_type
        if tt.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            out[vi.name] = None if None in dims else dims
    return out


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            if a.type == a.INT:
                return a.i
            if a.type == a.INTS:
                return list(a.ints)
            if a.type == a.FLOAT:
                return a.f
            if a.type == a.TENSOR:
                return _tensor_value(a.t)
    return default


def _eval(node, row, values, shapes, inits, constant_nodes, nodes, np):
    """Outputs of one program node, or None when an input is not known yet.

    Inputs come from earlier program outputs (``values``), initializers with data
    and ``Constant`` nodes (decoded on first use, then kept in ``values``).
    """
    op, inputs, _ = row
    if op == "Constant":
        v = _attr(node, "value")
        return None if v is None else [v]
    if op == "Shape":
        s = shapes.get(inputs[0])
        if s is None:
            return None
        start, end = _attr(node, "start", 0), _attr(node, "end", None)
        return [np.array(s[start:end], dtype=np.int64)]
    if op == "Size":
        s = shapes.get(inputs[0])
        return None if s is None else [np.array(int(np.prod(s)), dtype=np.int64)]
    ins = []
    for i in inputs:
        if not i:
            ins.append(None)
            continue
        v = values.get(i)
        if v is None:
            v = _constant(i, inits, constant_nodes, nodes)
            if v is None:
                return None
            values[i] = v
        ins.append(v)
    try:
        if op == "Gather":
            return [np.take(ins[0], ins[1], axis=_attr(node, "axis", 0))]
        if op == "Unsqueeze":
            axes = ins[1] if len(ins) > 1 else _attr(node, "axes")
            out = ins[0]
            for a in sorted(int(a) % (out.ndim + len(axes)) for a in np.atleast_1d(axes)):
                out = np.expand_dims(out, a)
            return [out]
        if op == "Squeeze":
            axes = ins[1] if len(ins) > 1 and ins[1] is not None else _attr(node, "axes")
            return [np.squeeze(ins[0], axis=None if axes is None else tuple(int(a) for a in np.atleast_1d(axes)))]
        if op == "Concat":
            return [np.concatenate([np.atleast_1d(x) for x in ins], axis=_attr(node, "axis", 0))]
        if op in ("Add", "Sub", "Mul"):
            f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}[op]
            return [f(ins[0], ins[1])]
        if op == "Div":
            a, b = ins
            return [a // b if np.issubdtype(np.asarray(a).dtype, np.integer) else a / b]
        if op == "Cast":
            from onnx import helper

            return [np.asarray(ins[0]).astype(helper.tensor_dtype_to_np_dtype(_attr(node, "to")))]
        if op == "Slice":
            data, starts, ends = ins[0], ins[1], ins[2]
            axes = ins[3] if len(ins) > 3 and ins[3] is not None else range(len(starts))
            steps = ins[4] if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
            sl = [slice(None)] * data.ndim
            for s, e, a, st in zip(starts, ends, axes, steps):
                sl[int(a)] = slice(int(s), int(e), int(st))
            return [data[tuple(sl)]]
        if op == "Identity":
            return [ins[0]]
    except (ValueError, IndexError, TypeError):
        return None
    return None
