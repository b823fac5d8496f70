"""ONNX shape inference that also sees through shape arithmetic.

torch exports ``x.chunk(2, dim=1)`` and ``x.view(b, g, -1, h, w)`` as a small
integer program on the tensor's shape (Shape -> Gather -> Div -> Slice ...).
``onnx.shape_inference`` does not run that program, so every tensor after the
first such Slice has unknown dims. Here the program is evaluated with numpy on the
shapes inference did find, its results become constants, and inference runs
again, until no data tensor has an unknown dim (or nothing more can be folded).
Models without shape arithmetic take one inference pass, as before.
"""

from __future__ import annotations

MAX_ROUNDS = 64


def infer_shapes(model):
    """Shape-infer ``model`` (a weight-skimmed ModelProto), folding shape arithmetic.

    Returns:
        The inferred ModelProto (its graph may have fewer nodes: folded ones are
        replaced by constant initializers).
    """
    import numpy as np
    from onnx import numpy_helper, shape_inference

    inferred = shape_inference.infer_shapes(model)
    if not any(n.op_type in ("Shape", "Size") for n in model.graph.node):
        return inferred  # no shape program to run: one pass is all there is
    folded: dict[str, object] = {}
    for _ in range(MAX_ROUNDS):
        g = inferred.graph
        data = _data_tensors(g)
        program = [n for n in g.node
                   if n.op_type in ("Shape", "Size") or not any(i in data for i in n.input)]
        if not program:
            return inferred
        reads = {i for n in program for i in n.input}
        shapes = _known_shapes(g, reads)
        values = {i.name: numpy_helper.to_array(i) for i in g.initializer if i.name in reads and _has_data(i)}
        values.update(folded)
        new = {}
        left = 0
        for node in program:
            out = _eval(node, values, shapes, np)
            if out is None:
                left += 1
                continue
            for name, val in zip(node.output, out):
                values[name] = val
                new[name] = val
        if not new:
            return inferred
        folded.update(new)
        m = inferred.__class__()
        m.CopyFrom(model)
        keep = [n for n in m.graph.node if not all(o in folded for o in n.output)]
        del m.graph.node[:]
        m.graph.node.extend(keep)
        needed = {i for n in keep for i in n.input}
        m.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), name)
                                   for name, v in folded.items() if name in needed)
        inferred = shape_inference.infer_shapes(m)
        if not left:
            return inferred  # the whole shape program is folded: nothing more to learn
    return inferred


def _has_data(t) -> bool:
    return bool(t.raw_data or t.int64_data or t.float_data or t.int32_data or t.double_data)


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


def _data_tensors(g) -> set[str]:
    inits = {i.name for i in g.initializer}
    data = {vi.name for vi in g.input if vi.name not in inits}
    for n in g.node:
        if n.op_type not in ("Shape", "Size") and any(i in data for i in n.input):
            data.update(o for o in n.output if o)
    return data


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
                from onnx import numpy_helper

                return numpy_helper.to_array(a.t)
    return default


def _eval(node, values, shapes, np):
    """Outputs of one integer-program node, or None when an input is not known yet."""
    op = node.op_type
    if op == "Constant":
        v = _attr(node, "value")
        return None if v is None else [v]
    if op == "Shape":
        s = shapes.get(node.input[0])
        if s is None:
            return None
        start, end = _attr(node, "start", 0), _attr(node, "end", None)
        return [np.array(s[start:end], dtype=np.int64)]
    if op == "Size":
        s = shapes.get(node.input[0])
        return None if s is None else [np.array(int(np.prod(s)), dtype=np.int64)]
    ins = []
    for i in node.input:
        if not i:
            ins.append(None)
        elif i in values:
            ins.append(values[i])
        else:
            return None
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
