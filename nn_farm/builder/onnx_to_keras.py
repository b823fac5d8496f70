"""ONNX graph (NCHW, as torch exports it) -> Keras model (NHWC), weights copied.

    torchvision model --torch.onnx.export--> ModelProto (NCHW)
        --one function per op, in graph order--> keras.Model (NHWC)
        --nn_farm.builder.convert.to_tflite--> .tflite

LiteRT measures ``.tflite`` files and TensorFlow's converter is the only way to
``.tflite`` here, so torch architectures go through Keras. Ops become the Keras
layers a native Keras model would use (Conv2D, DepthwiseConv2D, Dense, ReLU, ...),
so the TFLite converter fuses them the same way.

Layout: every data tensor carries a ``perm``; Keras axis ``i`` holds ONNX axis
``perm[i]``. Images are NHWC (``perm == (0, 2, 3, 1)``). A Transpose only changes
the perm, and a Reshape moves data only when the axes it merges are not already
adjacent in Keras order, so shufflenet's channel shuffle (reshape, transpose,
reshape) comes out as the NHWC shuffle a Keras shufflenet has, with no transposes
to NCHW and back.

Nodes whose inputs are all constants (weights, the Shape -> Gather -> Div shape
arithmetic behind ``torch.chunk``) are folded with onnx's reference evaluator;
``Shape`` of a data tensor reads its static shape.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import warnings
from typing import Any, Callable

import numpy as np

from nn_farm.errors import ConversionError

__all__ = ["onnx_to_keras", "torchvision_to_keras", "SUPPORTED_OPS"]

NHWC = (0, 2, 3, 1)
ONNX_OPSET = 17
_FLOAT32_MIN = float(np.finfo(np.float32).min)  # max pool's padding: never the max


def onnx_to_keras(model) -> Any:
    """Build a Keras model that computes what an ONNX image model computes, in NHWC.

    Args:
        model: an ``onnx.ModelProto`` or the path of an ``.onnx`` file, with one
            float input of static shape ``[1, C, H, W]``.

    Returns:
        A ``keras.Model`` taking ``[1, H, W, C]`` and returning the ONNX outputs,
        4-D ones transposed to NHWC (several outputs: a list).

    Raises:
        ConversionError: an op this converter does not cover (names the op type and
            the node), or an input that is not one static 4-D tensor.

    Example:
        >>> keras_model = onnx_to_keras("resnet18.onnx")
        >>> to_tflite(keras_model, "resnet18.tflite")   # nn_farm.builder.convert
    """
    import onnx

    from nn_farm._compat import import_tensorflow

    if isinstance(model, (str, os.PathLike)):
        model = onnx.load(os.fspath(model))
    keras = import_tensorflow().keras
    return _Converter(model, keras).run()


def torchvision_to_keras(name: str, resolution: int = 224) -> Any:
    """Build a torchvision architecture (``weights=None``, eval mode) as a Keras model.

    Exports it to ONNX in memory (opset 17, the TorchScript exporter) and converts
    it with :func:`onnx_to_keras`. Weights are torch's random initialisation: seed
    torch (``torch.manual_seed``) first for repeatable weights.

    torch is imported here before anything imports tensorflow: tensorflow >= 2.20
    followed by triton (which torch can pull in) segfaults. Calling this after
    tensorflow is loaded works as long as torch was imported first, which
    :func:`nn_farm._compat.import_tensorflow` ensures for nn-farm's own imports.

    Args:
        name: a ``torchvision.models.get_model`` name, e.g. ``"mobilenet_v2"``.
        resolution: the input's height and width in pixels.

    Returns:
        A ``keras.Model`` taking ``[1, resolution, resolution, 3]``.

    Raises:
        ConversionError: the export failed, or the graph has an op not covered.

    Example:
        >>> torchvision_to_keras("shufflenet_v2_x1_0", 96).output.shape
        (1, 1000)
    """
    import torch  # before tensorflow, see above
    import torchvision

    module = torchvision.models.get_model(name, weights=None).eval()
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TorchScript exporter deprecation noise
            torch.onnx.export(module, torch.randn(1, 3, resolution, resolution), buf,
                              dynamo=False, opset_version=ONNX_OPSET, external_data=False)
    except Exception as exc:
        raise ConversionError(f"exporting torchvision {name!r} to ONNX failed: {exc}") from exc
    import onnx

    model = onnx.load_from_string(buf.getvalue())
    model.graph.name = name
    return onnx_to_keras(model)


# ------------------------------------------------------------------ the walk


@dataclasses.dataclass(frozen=True)
class _Tensor:
    """A data tensor: a KerasTensor whose axis ``i`` is the ONNX tensor's ``perm[i]``."""

    x: Any
    perm: tuple[int, ...]

    @property
    def shape(self) -> list[int]:
        """The static shape in ONNX axis order."""
        shape = [0] * len(self.perm)
        for i, axis in enumerate(self.perm):
            shape[axis] = self.x.shape[i]
        return shape

    def axis(self, onnx_axis: int) -> int:
        """The Keras axis holding an ONNX axis (negative axes count from the end)."""
        return self.perm.index(onnx_axis % len(self.perm))


class _Converter:
    """One pass over the (topologically sorted) nodes; ``values`` maps each ONNX
    tensor name to a :class:`_Tensor` or a numpy constant."""

    def __init__(self, model, keras):
        self.model = model
        self.keras = keras
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                          ONNX_OPSET)
        self.values: dict[str, Any] = {}
        self._names: set[str] = set()

    def run(self):
        from onnx import numpy_helper

        graph = self.model.graph
        for init in graph.initializer:
            self.values[init.name] = numpy_helper.to_array(init)
        inp = self._input(graph)
        for node in graph.node:
            try:
                ins = [self.values[n] if n else None for n in node.input]
            except KeyError as exc:
                raise ConversionError(f"{node.op_type} node {node.name!r}: input {exc} is "
                                      f"produced by no earlier node") from None
            if any(isinstance(v, _Tensor) for v in ins):
                op = _OPS.get(node.op_type)
                if op is None:
                    raise ConversionError(
                        f"unsupported ONNX op {node.op_type!r} (node {node.name!r}); "
                        f"onnx_to_keras covers {', '.join(SUPPORTED_OPS)}")
                try:
                    outs = op(self, node, ins)
                except ConversionError:
                    raise
                except Exception as exc:  # Keras rejected a layer: say which node
                    raise ConversionError(f"{node.op_type} node {node.name!r}: {exc}") from exc
            else:
                outs = self._fold(node, ins)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            self.values.update((n, v) for n, v in zip(node.output, outs) if n)
        outputs = []
        for out in graph.output:
            t = self.values[out.name]
            if not isinstance(t, _Tensor):
                raise ConversionError(f"graph output {out.name!r} is a constant, not computed")
            outputs.append(self.arrange(t, NHWC if len(t.perm) == 4 else _identity(t)))
        name = re.sub(r"[^\w.-]+", "_", graph.name).strip("_") or "onnx_model"
        return self.keras.Model(inp, outputs if len(outputs) > 1 else outputs[0], name=name)

    def _input(self, graph):
        data = [vi for vi in graph.input if vi.name not in self.values]
        dims = [[d.dim_value if d.HasField("dim_value") else None
                 for d in vi.type.tensor_type.shape.dim] for vi in data]
        if len(data) != 1 or len(dims[0]) != 4 or None in dims[0] or dims[0][0] != 1:
            raise ConversionError(f"onnx_to_keras needs one input of static shape [1, C, H, W]; "
                                  f"the graph has {[(vi.name, d) for vi, d in zip(data, dims)]}")
        _, c, h, w = dims[0]
        inp = self.keras.Input((h, w, c), batch_size=1, name=self._unique(data[0].name or "input"))
        self.values[data[0].name] = _Tensor(inp, NHWC)
        return inp

    def _fold(self, node, ins):
        """Evaluate a node whose inputs are all constants."""
        if node.op_type in ("Identity", "Dropout"):
            return ins[0]
        if node.op_type == "Constant" and node.attribute[0].name == "value":
            from onnx import numpy_helper

            return numpy_helper.to_array(node.attribute[0].t)
        from onnx.reference import ReferenceEvaluator

        feeds = {n: v for n, v in zip(node.input, ins) if n}
        try:
            return ReferenceEvaluator(node, opsets={"": self.opset}).run(None, feeds)
        except Exception as exc:
            raise ConversionError(f"{node.op_type} node {node.name!r}: folding its constant "
                                  f"inputs failed: {exc}") from exc

    # -- helpers the op functions share -------------------------------------------
    def name(self, node) -> str:
        """A Keras layer name from the ONNX node name (``/a/b/Conv`` -> ``a_b_Conv``)."""
        return self._unique(node.name or node.op_type.lower())

    def _unique(self, raw: str) -> str:
        base = re.sub(r"[^\w.-]+", "_", raw).strip("_") or "t"
        name, i = base, 1
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name

    def layer(self, layer, t: _Tensor, weights: list | None = None) -> Any:
        """Call a Keras layer on ``t`` and give it ``weights`` (it builds on the call)."""
        y = layer(t.x)
        if weights is not None:
            layer.set_weights([np.asarray(w, np.float32) for w in weights])
        return y

    def arrange(self, t: _Tensor, perm: tuple[int, ...]) -> Any:
        """``t``'s data with Keras axis ``i`` holding ONNX axis ``perm[i]``.

        Moving only size-1 axes is a reshape, not a transpose.
        """
        perm = tuple(perm)
        if perm == t.perm:
            return t.x
        shape = t.shape
        if _nonunit(t.perm, shape) == _nonunit(perm, shape):
            return self.keras.ops.reshape(t.x, [shape[a] for a in perm])
        return self.keras.ops.transpose(t.x, [t.perm.index(a) for a in perm])

    def as_perm(self, t: _Tensor, perm: tuple[int, ...]) -> _Tensor:
        return _Tensor(self.arrange(t, perm), tuple(perm))

    def reshape(self, t: _Tensor, shape: list[int]) -> _Tensor:
        """Reshape to an ONNX shape, keeping the Keras layout where the data allows.

        The reshape is cut into groups of input axes that become groups of output
        axes (merged or split). If each group's axes already sit together and in
        ONNX order in Keras, the Keras tensor reshapes as is, its groups keeping their
        Keras order: a channel split of an NHWC tensor stays channels-last. Otherwise
        the groups are first transposed together.
        """
        src = t.shape
        shape = [int(s) for s in shape]
        if src == shape:
            return t
        groups = _reshape_groups(src, shape)
        if groups is None:  # zero-sized dims: plain ONNX-order reshape
            x = self.arrange(t, _identity(t))
            return _Tensor(self.keras.ops.reshape(x, shape), tuple(range(len(shape))))
        pos = {a: i for i, a in enumerate(t.perm)}

        def first(group):  # where a group starts in Keras order; size-1 axes do not count
            ins = [a for a in group[0] if src[a] != 1] or group[0]
            return min(pos[a] for a in ins)

        groups.sort(key=first)
        in_perm = tuple(a for g in groups for a in g[0])
        out_perm = tuple(a for g in groups for a in g[1])
        x = t.x
        if _nonunit(t.perm, src) != _nonunit(in_perm, src):
            x = self.keras.ops.transpose(x, [t.perm.index(a) for a in in_perm])
        return _Tensor(self.keras.ops.reshape(x, [shape[a] for a in out_perm]), out_perm)

    def like(self, value, t: _Tensor) -> Any:
        """A constant operand of an ONNX broadcast, laid out to broadcast against ``t``."""
        value = np.asarray(value)
        if value.ndim > len(t.perm):
            raise ConversionError(f"a constant of rank {value.ndim} broadcast against a "
                                  f"rank-{len(t.perm)} tensor")
        value = value.reshape((1,) * (len(t.perm) - value.ndim) + value.shape)
        return value.transpose(t.perm).astype(np.float32 if value.dtype == np.float64
                                               else value.dtype)


def _identity(t: _Tensor) -> tuple[int, ...]:
    return tuple(range(len(t.perm)))


def _nonunit(perm, shape) -> tuple[int, ...]:
    return tuple(a for a in perm if shape[a] != 1)


def _reshape_groups(src: list[int], dst: list[int]) -> list[tuple[list, list]] | None:
    """Pair runs of ``src`` axes with runs of ``dst`` axes of equal size, in order.

    ``[1, 116, 7, 7] -> [1, 2, 58, 7, 7]`` gives ``([0], [0]), ([1], [1, 2]), ([2], [3]),
    ([3], [4])``. Trailing size-1 axes join the last group. None for zero-sized dims.
    """
    if 0 in src or 0 in dst or not src or not dst:
        return None
    groups, i, j = [], 0, 0
    while i < len(src) and j < len(dst):
        gi, gj, pi, pj = [i], [j], src[i], dst[j]
        i, j = i + 1, j + 1
        while pi != pj:
            if pi < pj and i < len(src):
                gi.append(i)
                pi, i = pi * src[i], i + 1
            elif pj < pi and j < len(dst):
                gj.append(j)
                pj, j = pj * dst[j], j + 1
            else:
                return None
        groups.append((gi, gj))
    groups[-1][0].extend(range(i, len(src)))
    groups[-1][1].extend(range(j, len(dst)))
    return groups


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _const(node, ins, i: int, what: str):
    """Input ``i`` as a numpy constant (None when absent)."""
    if i >= len(ins) or ins[i] is None:
        return None
    if isinstance(ins[i], _Tensor):
        raise ConversionError(f"{node.op_type} node {node.name!r}: {what} must be a constant, "
                              f"not computed from the input")
    return ins[i]


def _data(node, ins, i: int = 0) -> _Tensor:
    if not isinstance(ins[i], _Tensor):
        raise ConversionError(f"{node.op_type} node {node.name!r}: input {i} must be data")
    return ins[i]


# ------------------------------------------------------------------ convolution and pooling


def _spatial_padding(node, in_hw, kernel, strides, dilations, pads):
    """``"same"`` when ONNX pads equal TensorFlow's "same" pads, else explicit
    ``((top, bottom), (left, right))`` for a pad layer followed by "valid"."""
    pads = list(pads or [0, 0, 0, 0])
    auto_pad = _attrs(node).get("auto_pad", b"NOTSET")
    if auto_pad == b"SAME_UPPER":
        return "same", None
    if auto_pad == b"VALID":
        pads = [0, 0, 0, 0]
    elif auto_pad != b"NOTSET":
        raise ConversionError(f"{node.op_type} node {node.name!r}: auto_pad {auto_pad.decode()} "
                              f"is not supported")
    same = []
    for size, k, s, d in zip(in_hw, kernel, strides, dilations):
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        same.append((total // 2, total - total // 2))
    explicit = ((pads[0], pads[2]), (pads[1], pads[3]))
    if explicit == tuple(same):
        return "same", None
    return "valid", (explicit if any(pads) else None)


def _conv(cv, node, ins):
    x, w, b = _data(node, ins), _const(node, ins, 1, "the weight"), _const(node, ins, 2, "the bias")
    a = _attrs(node)
    if w.ndim != 4:
        raise ConversionError(f"Conv node {node.name!r}: only 2-D convolutions are supported")
    cout, cin_g, kh, kw = w.shape
    groups = a.get("group", 1)
    strides, dilations = tuple(a.get("strides", (1, 1))), tuple(a.get("dilations", (1, 1)))
    if max(strides) > 1 and max(dilations) > 1:
        raise ConversionError(f"Conv node {node.name!r}: Keras has no strided dilated conv")
    x = cv.as_perm(x, NHWC)
    h, wd, cin = x.x.shape[1:]
    padding, explicit = _spatial_padding(node, (h, wd), (kh, kw), strides, dilations, a.get("pads"))
    L, name = cv.keras.layers, cv.name(node)
    if explicit:
        x = _Tensor(L.ZeroPadding2D(explicit, name=f"{name}_pad")(x.x), NHWC)
    common = dict(kernel_size=(kh, kw), strides=strides, padding=padding,
                  dilation_rate=dilations, use_bias=b is not None, name=name)
    if groups == cin and cin_g == 1 and groups > 1:
        # Depthwise: ONNX output channel c * m + j is Keras (input c, multiplier j).
        m = cout // cin
        kernel = w.reshape(cin, m, kh, kw).transpose(2, 3, 0, 1)
        layer = L.DepthwiseConv2D(depth_multiplier=m, **common)
    else:
        kernel = w.transpose(2, 3, 1, 0)
        layer = L.Conv2D(cout, groups=groups, **common)
    return _Tensor(cv.layer(layer, x, [kernel] + ([b] if b is not None else [])), NHWC)


def _pool(cv, node, ins):
    x = cv.as_perm(_data(node, ins), NHWC)
    a = _attrs(node)
    is_max = node.op_type == "MaxPool"
    kernel = tuple(a["kernel_shape"])
    strides = tuple(a.get("strides", (1, 1)))
    if len(kernel) != 2 or any(d != 1 for d in a.get("dilations", (1, 1))):
        raise ConversionError(f"{node.op_type} node {node.name!r}: only 2-D undilated pooling "
                              f"is supported")
    pads = list(a.get("pads", (0, 0, 0, 0)))
    in_hw = x.x.shape[1:3]
    if a.get("ceil_mode", 0):
        # Ceil mode adds windows that start inside the input (or the begin padding)
        # and overrun it: pad the end so "valid" makes them too.
        for i, (size, k, s) in enumerate(zip(in_hw, kernel, strides)):
            span = size + pads[i] + pads[i + 2] - k
            out = -(-span // s) + 1
            if (out - 1) * s >= size + pads[i]:
                out -= 1
            extra = (out - 1) * s + k - (size + pads[i] + pads[i + 2])
            if extra > 0 and not is_max:
                raise ConversionError(f"AveragePool node {node.name!r}: ceil_mode that adds a "
                                      f"window is not supported")
            pads[i + 2] += max(extra, 0)
    padding, explicit = _spatial_padding(node, in_hw, kernel, strides, (1, 1), pads)
    include_pad = a.get("count_include_pad", 0)
    if not is_max and padding == "same" and include_pad and any(pads):
        padding, explicit = "valid", ((pads[0], pads[2]), (pads[1], pads[3]))
    y, name = x.x, cv.name(node)
    if explicit:
        if is_max:  # padding that can never win the max
            y = cv.keras.ops.pad(y, ((0, 0), *explicit, (0, 0)), constant_values=_FLOAT32_MIN)
        elif include_pad:
            y = cv.keras.layers.ZeroPadding2D(explicit, name=f"{name}_pad")(y)
        else:
            raise ConversionError(f"AveragePool node {node.name!r}: pads {pads} that are not "
                                  f"TensorFlow's 'same' need count_include_pad=1")
    layer = cv.keras.layers.MaxPooling2D if is_max else cv.keras.layers.AveragePooling2D
    y = layer(kernel, strides, padding=padding, name=name)(y)
    return _Tensor(y, NHWC)


def _global_average_pool(cv, node, ins):
    x = _data(node, ins)
    return _mean(cv, x, list(range(2, len(x.perm))), keepdims=True)


def _reduce_mean(cv, node, ins):
    x, a = _data(node, ins), _attrs(node)
    axes = a.get("axes")
    if axes is None and len(ins) > 1:  # opset 18 moved axes to an input
        axes = _const(node, ins, 1, "axes")
    if axes is None or len(axes) == 0:
        if a.get("noop_with_empty_axes", 0):
            return x
        axes = range(len(x.perm))
    return _mean(cv, x, [int(ax) % len(x.perm) for ax in axes], bool(a.get("keepdims", 1)))


def _mean(cv, x: _Tensor, axes: list[int], keepdims: bool) -> _Tensor:
    # keras.ops.mean and GlobalAveragePooling2D both become TFLite's MEAN.
    y = cv.keras.ops.mean(x.x, axis=sorted(x.axis(a) for a in axes), keepdims=keepdims)
    if keepdims:
        return _Tensor(y, x.perm)
    kept = [a for a in x.perm if a not in axes]
    return _Tensor(y, tuple(sorted(kept).index(a) for a in kept))


def _batch_norm(cv, node, ins):
    x = _data(node, ins)
    scale, bias, mean, var = (_const(node, ins, i, "a BN parameter") for i in range(1, 5))
    eps = _attrs(node).get("epsilon", 1e-5)
    layer = cv.keras.layers.BatchNormalization(axis=x.axis(1), epsilon=eps, name=cv.name(node))
    return _Tensor(cv.layer(layer, x, [scale, bias, mean, var]), x.perm)


# ------------------------------------------------------------------ dense


def _gemm(cv, node, ins):
    x, w, c = _data(node, ins), _const(node, ins, 1, "B"), _const(node, ins, 2, "C")
    a = _attrs(node)
    if a.get("transA", 0) or len(x.perm) != 2:
        raise ConversionError(f"Gemm node {node.name!r}: only data [M, K] times constant B "
                              f"is supported")
    kernel = a.get("alpha", 1.0) * (w.T if a.get("transB", 0) else w)
    weights = [kernel]
    if c is not None:
        weights.append(np.broadcast_to(a.get("beta", 1.0) * c, kernel.shape[1:]))
    layer = cv.keras.layers.Dense(kernel.shape[1], use_bias=c is not None, name=cv.name(node))
    return _Tensor(cv.layer(layer, cv.as_perm(x, (0, 1)), weights), (0, 1))


def _matmul(cv, node, ins):
    x, w = ins
    if isinstance(x, _Tensor) and not isinstance(w, _Tensor) and w.ndim == 2:
        # data @ weights: a Dense layer, as Keras writes a linear layer
        layer = cv.keras.layers.Dense(w.shape[1], use_bias=False, name=cv.name(node))
        x = cv.as_perm(x, _identity(x))
        return _Tensor(cv.layer(layer, x, [w]), x.perm)
    xs = [cv.arrange(t, _identity(t)) if isinstance(t, _Tensor) else t for t in (x, w)]
    y = cv.keras.ops.matmul(*xs)
    return _Tensor(y, tuple(range(len(y.shape))))


# ------------------------------------------------------------------ element-wise


def _relu(cv, node, ins):
    x = _data(node, ins)
    return _Tensor(cv.keras.layers.ReLU(name=cv.name(node))(x.x), x.perm)


def _clip(cv, node, ins):
    x, a = _data(node, ins), _attrs(node)
    lo = _const(node, ins, 1, "min") if len(ins) > 1 else a.get("min")
    hi = _const(node, ins, 2, "max") if len(ins) > 2 else a.get("max")
    lo, hi = (None if v is None else float(v) for v in (lo, hi))
    if lo == 0.0:  # ReLU / ReLU6: TFLite fuses those into the conv before
        return _Tensor(cv.keras.layers.ReLU(max_value=hi, name=cv.name(node))(x.x), x.perm)
    lo = -np.inf if lo is None else lo
    hi = np.inf if hi is None else hi
    return _Tensor(cv.keras.ops.clip(x.x, lo, hi), x.perm)


def _activation(fn: str) -> Callable:
    def convert(cv, node, ins):
        x = _data(node, ins)
        return _Tensor(cv.keras.layers.Activation(fn, name=cv.name(node))(x.x), x.perm)

    return convert


def _hard_sigmoid(cv, node, ins):
    x, a = _data(node, ins), _attrs(node)
    alpha, beta = a.get("alpha", 0.2), a.get("beta", 0.5)
    if np.isclose(alpha, 1 / 6) and beta == 0.5:  # torch's: keras' relu6(x + 3) / 6
        return _activation("hard_sigmoid")(cv, node, ins)
    ops = cv.keras.ops
    return _Tensor(ops.clip(ops.add(ops.multiply(x.x, alpha), beta), 0.0, 1.0), x.perm)


def _binary(fn: str) -> Callable:
    """Add, Sub, Mul, Div with ONNX (numpy) broadcasting, in either operand's layout."""

    def convert(cv, node, ins):
        a, b = ins
        if isinstance(a, _Tensor) and isinstance(b, _Tensor):
            # Same rank: b follows a's layout. Ranks differ: broadcasting aligns ONNX
            # axes from the right, so both go to ONNX order.
            same = len(a.perm) == len(b.perm)
            perm = a.perm if same else tuple(range(max(len(a.perm), len(b.perm))))
            xa = a.x if same else cv.arrange(a, _identity(a))
            xb = cv.arrange(b, a.perm if same else _identity(b))
            return _Tensor(getattr(cv.keras.ops, fn)(xa, xb), perm)
        t = a if isinstance(a, _Tensor) else b
        xa, xb = (t.x, cv.like(b, t)) if t is a else (cv.like(a, t), t.x)
        return _Tensor(getattr(cv.keras.ops, fn)(xa, xb), t.perm)

    return convert


def _passthrough(cv, node, ins):
    return ins[0]


# ------------------------------------------------------------------ shapes and layout


def _shape(cv, node, ins):
    a = _attrs(node)
    return np.array(ins[0].shape[a.get("start", 0):a.get("end")], np.int64)


def _reshape(cv, node, ins):
    x, shape = _data(node, ins), _const(node, ins, 1, "the shape")
    src = x.shape
    shape = [int(s) for s in shape]
    if not _attrs(node).get("allowzero", 0):
        shape = [src[i] if s == 0 else s for i, s in enumerate(shape)]
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1]))
        shape[shape.index(-1)] = int(np.prod(src)) // known
    return cv.reshape(x, shape)


def _flatten(cv, node, ins):
    x = _data(node, ins)
    axis = _attrs(node).get("axis", 1) % (len(x.perm) + 1)
    src = x.shape
    return cv.reshape(x, [int(np.prod(src[:axis])), int(np.prod(src[axis:]))])


def _squeeze(cv, node, ins):
    x = _data(node, ins)
    axes = _const(node, ins, 1, "axes") if len(ins) > 1 else _attrs(node).get("axes")
    src = x.shape
    if axes is None:
        axes = [i for i, s in enumerate(src) if s == 1]
    drop = {int(a) % len(src) for a in axes}
    return cv.reshape(x, [s for i, s in enumerate(src) if i not in drop])


def _unsqueeze(cv, node, ins):
    x = _data(node, ins)
    axes = _const(node, ins, 1, "axes") if len(ins) > 1 else _attrs(node).get("axes")
    rank = len(x.perm) + len(axes)
    new = {int(a) % rank for a in axes}
    rest = iter(x.shape)
    return cv.reshape(x, [1 if i in new else next(rest) for i in range(rank)])


def _transpose(cv, node, ins):
    # Only the bookkeeping changes; data moves when a later op needs another order.
    x = _data(node, ins)
    perm = _attrs(node).get("perm") or list(reversed(range(len(x.perm))))
    inverse = np.argsort(perm)
    return _Tensor(x.x, tuple(int(inverse[a]) for a in x.perm))


def _concat(cv, node, ins):
    ref = next(t for t in ins if isinstance(t, _Tensor))
    parts = [cv.arrange(t, ref.perm) if isinstance(t, _Tensor) else cv.like(t, ref) for t in ins]
    axis = ref.axis(_attrs(node)["axis"])
    return _Tensor(cv.keras.layers.Concatenate(axis=axis, name=cv.name(node))(parts)
                   if all(isinstance(t, _Tensor) for t in ins)
                   else cv.keras.ops.concatenate(parts, axis=axis), ref.perm)


def _slice(cv, node, ins):
    x = _data(node, ins)
    starts, ends = _const(node, ins, 1, "starts"), _const(node, ins, 2, "ends")
    axes = _const(node, ins, 3, "axes")
    steps = _const(node, ins, 4, "steps")
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    src = x.shape
    index = [slice(None)] * len(x.perm)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        # ONNX clamps like Python slices (INT64_MAX ends included)
        lo, hi, st = slice(int(start), int(end), int(step)).indices(src[int(axis) % len(src)])
        index[x.axis(int(axis))] = slice(lo, hi if hi >= 0 else None, st)
    return _Tensor(x.x[tuple(index)], x.perm)


def _split(cv, node, ins):
    x, a = _data(node, ins), _attrs(node)
    axis = a.get("axis", 0)
    sizes = _const(node, ins, 1, "split") if len(ins) > 1 else a.get("split")
    if sizes is None:
        n = a.get("num_outputs", len(node.output))
        dim = x.shape[axis]
        sizes = [-(-dim // n)] * (n - 1) + [dim - -(-dim // n) * (n - 1)]
    sizes = [int(v) for v in sizes]
    # Equal parts as a section count: TFLite gets one SPLIT op, as a Keras model's
    # tf.split gives (split indices come out as one STRIDED_SLICE per part).
    sections = len(sizes) if len(set(sizes)) == 1 else list(np.cumsum(sizes)[:-1])
    parts = cv.keras.ops.split(x.x, sections, axis=x.axis(axis))
    return [_Tensor(p, x.perm) for p in parts]


_OPS: dict[str, Callable] = {
    "Add": _binary("add"),
    "AveragePool": _pool,
    "BatchNormalization": _batch_norm,
    "Clip": _clip,
    "Concat": _concat,
    "Conv": _conv,
    "Div": _binary("divide"),
    "Dropout": _passthrough,
    "Flatten": _flatten,
    "Gemm": _gemm,
    "GlobalAveragePool": _global_average_pool,
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": _activation("hard_swish"),
    "Identity": _passthrough,
    "MatMul": _matmul,
    "MaxPool": _pool,
    "Mul": _binary("multiply"),
    "ReduceMean": _reduce_mean,
    "Relu": _relu,
    "Reshape": _reshape,
    "Shape": _shape,
    "Sigmoid": _activation("sigmoid"),
    "Slice": _slice,
    "Split": _split,
    "Squeeze": _squeeze,
    "Sub": _binary("subtract"),
    "Tanh": _activation("tanh"),
    "Transpose": _transpose,
    "Unsqueeze": _unsqueeze,
}
#: The ONNX op types converted on data; any op is fine on constants only (folded).
SUPPORTED_OPS = tuple(sorted(_OPS))
