"""TensorFlow models -> IR graph.

Two walks, both in TensorFlow's op spelling (nn-Meter's TF IR):

- Keras models (``keras.Model`` or a .keras/.h5 file): a *layer* walk. One IR node
  per layer (``Conv2D`` layer -> ``Conv2D`` node, ``BatchNormalization`` ->
  ``FusedBatchNormV3``, ``GlobalAveragePooling2D`` -> ``Mean``), and a layer's
  ``activation=`` becomes its own node after it, so ``Conv2D(activation="relu")``
  reads as conv then relu, as in a graph.
- SavedModel directories and frozen ``.pb`` GraphDefs: a *GraphDef* walk over the
  ops on the data path from the placeholders, with TF's static shapes. A
  ``BiasAdd`` right after a conv or matmul is folded into it (it is the op's own
  bias, not a kernel; nn-Meter's parser drops it the same way).

TensorFlow is imported only through :func:`nn_farm._compat.import_tensorflow`.
"""

from __future__ import annotations

import logging
import os

from nn_farm.errors import ConversionError
from nn_farm.predictor.ir.graph import IRGraph
from nn_farm.predictor.ir.ops import ALIASES

log = logging.getLogger(__name__)


def _batch1(shape) -> list[int]:
    return [1 if d is None else int(d) for d in shape]


# ---------------------------------------------------------------- Keras layers
_ACTIVATION_TYPES = {
    "relu": ["Relu"],
    "relu6": ["Relu6"],
    "sigmoid": ["Sigmoid"],
    "hard_sigmoid": ["HardSigmoid"],
    "hard_swish": ["HardSwish"],
    "hard_silu": ["HardSwish"],
    "swish": ["Sigmoid", "Mul"],  # x * sigmoid(x), as a graph has it
    "silu": ["Sigmoid", "Mul"],
    "softmax": ["Softmax"],
    "tanh": ["Tanh"],
    "linear": [],
}

_LAYER_TYPES = {
    "Conv2D": "Conv2D",
    "DepthwiseConv2D": "DepthwiseConv2dNative",
    "Dense": "MatMul",
    "BatchNormalization": "FusedBatchNormV3",
    "Add": "AddV2",
    "Multiply": "Mul",
    "Subtract": "Sub",
    "Concatenate": "ConcatV2",
    "MaxPooling2D": "MaxPool",
    "AveragePooling2D": "AvgPool",
    "GlobalAveragePooling2D": "Mean",
    "Flatten": "Reshape",
    "Reshape": "Reshape",
    "Permute": "Transpose",
    "ZeroPadding2D": "Pad",
    "Dropout": "Identity",
    "InputLayer": "Placeholder",
}


def keras_to_ir(model) -> IRGraph:
    """A ``keras.Model`` (or a ``.keras`` / ``.h5`` path) -> IR, by walking its layers.

    Raises:
        ConversionError: the file cannot be loaded, or the model has not been built.
    """
    import_tf()
    import keras

    source = "<keras.Model>"
    if isinstance(model, (str, os.PathLike)):
        source = os.fspath(model)
        try:
            model = keras.models.load_model(source, compile=False)
        except Exception as exc:  # keras raises ValueError, OSError, ... by format
            raise ConversionError(f"{source}: cannot load Keras model: {exc}") from exc
        source = f"{source} ({model.name})"
    else:
        source = f"<keras.Model {getattr(model, 'name', '?')}>"
    if not getattr(model, "built", False):
        raise ConversionError(f"{source}: the Keras model is not built (call it once or give it an Input)")

    ir = IRGraph()
    last: dict[str, str] = {}  # layer name -> IR node holding its output
    unknown: list[str] = []

    def ref(tensor) -> str:
        layer = tensor._keras_history.operation
        if layer.name not in last:  # Sequential's implicit input layer
            ir.add_node(layer.name, "Placeholder", [], [_batch1(tensor.shape)])
            last[layer.name] = layer.name
        return last[layer.name]

    layers = getattr(model, "operations", None) or model.layers
    for layer in layers:
        if not layer._inbound_nodes:
            continue
        node = layer._inbound_nodes[0]
        kind = type(layer).__name__
        ins = [ref(t) for t in node.input_tensors]
        in_shapes = [_batch1(t.shape) for t in node.input_tensors]
        out_shape = _batch1(node.output_tensors[0].shape)
        type_ = _LAYER_TYPES.get(kind)
        if kind == "ReLU":
            type_ = "Relu6" if getattr(layer, "max_value", None) == 6 else "Relu"
        elif kind == "Activation":
            types = _activation_types(layer.activation, source, unknown)
            prev, prev_shape = ins, in_shapes
            for i, t in enumerate(types):
                name = layer.name if i == len(types) - 1 else f"{layer.name}/{t}"
                inb = prev + [ins[0]] if t == "Mul" else prev  # swish: x * sigmoid(x)
                ir.add_node(name, t, prev_shape * len(inb), [out_shape], {}, list(dict.fromkeys(inb)))
                prev, prev_shape = [name], [out_shape]
            last[layer.name] = prev[0] if types else ins[0]
            continue
        if type_ is None:
            type_ = kind
            if kind not in unknown:
                unknown.append(kind)
        if type_ == "Identity":
            last[layer.name] = ins[0]
            continue
        if type_ == "Placeholder":
            ir.add_node(layer.name, type_, [], [out_shape])
            last[layer.name] = layer.name
            continue
        attr = _layer_attr(layer, kind)
        acts = _activation_types(getattr(layer, "activation", None), source, unknown) \
            if kind in ("Conv2D", "DepthwiseConv2D", "Dense") else []
        name = layer.name if not acts else f"{layer.name}/{type_}"
        ir.add_node(name, type_, in_shapes, [out_shape], attr, list(dict.fromkeys(ins)))
        prev = name
        for i, t in enumerate(acts):
            an = layer.name if i == len(acts) - 1 else f"{layer.name}/{t}"
            inb = [prev, name] if t == "Mul" else [prev]
            ir.add_node(an, t, [out_shape] * len(inb), [out_shape], {}, list(dict.fromkeys(inb)))
            prev = an
        last[layer.name] = prev
    # layers and activations we could name but that no kernel covers (Softmax)
    unknown += [t for t in ir.op_types() if t not in ALIASES and t not in unknown]
    if unknown:
        log.warning("%s: Keras layers not understood, kept as typed nodes: %s", source, unknown)
    ir.unknown_ops = unknown
    return ir


def _activation_types(fn, source: str, unknown: list) -> list[str]:
    if fn is None:
        return []
    name = getattr(fn, "__name__", str(fn))
    types = _ACTIVATION_TYPES.get(name)
    if types is None:
        if name not in unknown:
            unknown.append(name)
        return [name]
    return types


def _layer_attr(layer, kind: str) -> dict:
    if kind in ("Conv2D", "DepthwiseConv2D"):
        s, d, k = layer.strides, layer.dilation_rate, layer.kernel_size
        attr = {"strides": [1, s[0], s[1], 1], "dilations": [1, d[0], d[1], 1],
                "padding": layer.padding.upper(), "kernel_shape": list(k), "data_format": "NHWC",
                "use_bias": bool(layer.use_bias)}
        if kind == "Conv2D" and getattr(layer, "groups", 1) != 1:
            attr["group"] = layer.groups
        return attr
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        p, s = layer.pool_size, layer.strides
        return {"ksize": [1, p[0], p[1], 1], "strides": [1, s[0], s[1], 1],
                "padding": layer.padding.upper(), "data_format": "NHWC"}
    if kind == "Concatenate":
        return {"axis": layer.axis}
    if kind == "GlobalAveragePooling2D":
        return {"axes": [1, 2], "keep_dims": bool(getattr(layer, "keepdims", False))}
    return {}


# ---------------------------------------------------------------- GraphDef walk
def import_tf():
    from nn_farm._compat import import_tensorflow

    return import_tensorflow()


def tensorflow_to_ir(path: str | os.PathLike) -> IRGraph:
    """A SavedModel directory or a frozen GraphDef ``.pb`` -> IR (a ``.keras`` /
    ``.h5`` file goes to :func:`keras_to_ir`).

    Raises:
        ConversionError: the path is neither, or TF cannot load it (quotes TF).
    """
    source = os.fspath(path)
    if source.endswith((".keras", ".h5")):  # a Keras file is a TensorFlow model too
        return keras_to_ir(source)
    tf = import_tf()
    try:
        if os.path.isdir(source):
            graph = _saved_model_graph(tf, source)
        else:
            gd = tf.compat.v1.GraphDef()
            with open(source, "rb") as fp:
                gd.ParseFromString(fp.read())
            graph = tf.Graph()
            with graph.as_default():
                tf.compat.v1.import_graph_def(gd, name="")
    except ConversionError:
        raise
    except Exception as exc:  # DecodeError, OSError, TF's own errors
        raise ConversionError(f"{source}: cannot load TensorFlow model: {exc}") from exc
    return _graph_to_ir(graph, source)


def _saved_model_graph(tf, path: str):
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    loaded = tf.saved_model.load(path)
    sigs = getattr(loaded, "signatures", {})
    if not sigs:
        raise ConversionError(f"{path}: SavedModel has no serving signature")
    fn = sigs.get("serving_default") or next(iter(sigs.values()))
    return convert_variables_to_constants_v2(fn).graph


_FOLD_INTO = frozenset({"Conv2D", "DepthwiseConv2dNative", "MatMul"})
_NOT_DATA = frozenset({"Shape", "Size", "Rank", "ShapeN"})
_PASS = frozenset({"Identity", "IdentityN", "StopGradient", "NoOp"})


def _graph_to_ir(graph, source: str) -> IRGraph:
    ir = IRGraph()
    producer: dict[str, str] = {}  # tensor name -> IR node
    unknown: list[str] = []
    for op in graph.get_operations():
        t = op.type
        if t == "Placeholder":
            ir.add_node(op.name, t, [], [_batch1(op.outputs[0].shape)])
            producer[op.outputs[0].name] = op.name
            continue
        data_ins = [x for x in op.inputs if x.name in producer]
        if not data_ins or t in _NOT_DATA or _is_resource(op):
            continue
        if t in _PASS:
            for o in op.outputs:
                producer[o.name] = producer[data_ins[0].name]
            continue
        src = producer[data_ins[0].name]
        if t == "BiasAdd" and ir.type_of(src) in _FOLD_INTO and len(ir.nodes[src]["outbounds"]) == 0:
            ir.nodes[src]["attr"]["attr"]["use_bias"] = True
            producer[op.outputs[0].name] = src
            continue
        if t not in ALIASES and t not in unknown:
            unknown.append(t)
        attr = _op_attr(op)
        in_shapes = [_batch1(x.shape) if x.shape.rank is not None else [] for x in data_ins]
        out_shapes = [_batch1(o.shape) if o.shape.rank is not None else [] for o in op.outputs[:1]]
        if t in ("Conv2D", "DepthwiseConv2dNative") and len(op.inputs) > 1:
            attr["weight_shape"] = _batch1(op.inputs[1].shape)
        ir.add_node(op.name, t, in_shapes, out_shapes, attr,
                    list(dict.fromkeys(producer[x.name] for x in data_ins)))
        for o in op.outputs:
            producer[o.name] = op.name
    if unknown:
        log.warning("%s: TF ops not understood, kept as typed nodes: %s", source, unknown)
    ir.unknown_ops = unknown
    return ir


def _is_resource(op) -> bool:
    return any(o.dtype.name == "resource" for o in op.outputs)


def _op_attr(op) -> dict:
    attr = {}
    for key in ("strides", "dilations", "ksize"):
        try:
            attr[key] = list(op.get_attr(key))
        except (ValueError, TypeError):
            pass
    for key in ("padding", "data_format"):
        try:
            v = op.get_attr(key)
            attr[key] = v.decode() if isinstance(v, bytes) else v
        except (ValueError, TypeError):
            pass
    # Mean / Split / ConcatV2 take their axes as const inputs: canonical_op and the
    # detector work from the shapes instead
    return attr
