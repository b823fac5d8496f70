"""Kernel models for the predictor builder, after nn-Meter's kernel generators
(``nn_meter/builder/nn_modules/*_networks/blocks.py``).

Every kernel type of :mod:`nn_farm.predictor.kernel_specs` is a chain of operators
(:data:`KERNEL_RECIPES`) on inputs made from the kernel's config, in the config keys
that module declares:

    conv-*      HW, CIN, COUT, KERNEL_SIZE, STRIDES     input [HW, HW, CIN]
    dwconv-*    HW, CIN, KERNEL_SIZE, STRIDES           input [HW, HW, CIN]
    max/avgpool HW, CIN, KERNEL_SIZE, POOL_STRIDES      input [HW, HW, CIN]
    fc          CIN, COUT                               input [CIN]
    concat      HW, NS, CIN1..CIN4                      NS inputs [HW, HW, CINi]
    add/addrelu HW, CIN                                 two inputs [HW, HW, CIN]
    others      HW, CIN                                 input [HW, HW, CIN]

nn-Meter's add kernels add a tensor to itself; here they add two model inputs, as
a residual add does (the same kernel, and the IR shows two inbound tensors).
"""

from __future__ import annotations

import numbers
from typing import Any, Mapping

from nn_farm.builder.models.spec import ModelSpec, Node, build_model
from nn_farm.errors import ConfigError, UnknownKernelError

#: kernel type -> operators chained in that order
KERNEL_RECIPES: dict[str, tuple[str, ...]] = {
    "conv-bn-relu": ("conv", "bn", "relu"),
    "conv-bn-relu6": ("conv", "bn", "relu6"),
    "conv-bn": ("conv", "bn"),
    "conv-relu": ("conv", "relu"),
    "conv-relu6": ("conv", "relu6"),
    "conv-hswish": ("conv", "hswish"),
    "conv-block": ("conv",),
    "conv-bn-hswish": ("conv", "bn", "hswish"),
    "dwconv-bn": ("dwconv", "bn"),
    "dwconv-relu": ("dwconv", "relu"),
    "dwconv-relu6": ("dwconv", "relu6"),
    "dwconv-bn-relu": ("dwconv", "bn", "relu"),
    "dwconv-bn-relu6": ("dwconv", "bn", "relu6"),
    "dwconv-block": ("dwconv",),
    "dwconv-bn-hswish": ("dwconv", "bn", "hswish"),
    "maxpool": ("maxpool",),
    "avgpool": ("avgpool",),
    "fc": ("fc",),
    "concat": ("concat",),
    "split": ("split",),
    "channelshuffle": ("channelshuffle",),
    "se": ("se",),
    "global-avgpool": ("globalavgpool",),
    "bnrelu": ("bn", "relu"),
    "bn": ("bn",),
    "hswish": ("hswish",),
    "swish": ("swish",),
    "relu": ("relu",),
    "addrelu": ("add", "relu"),
    "add": ("add",),
}
KERNEL_TYPES: tuple[str, ...] = tuple(KERNEL_RECIPES)

_REQUIRED = {
    "conv": ("HW", "CIN", "COUT", "KERNEL_SIZE", "STRIDES"),
    "dwconv": ("HW", "CIN", "KERNEL_SIZE", "STRIDES"),
    "pool": ("HW", "CIN", "KERNEL_SIZE", "POOL_STRIDES"),
    "fc": ("CIN", "COUT"),
    "concat": ("HW",),
    "hw_cin": ("HW", "CIN"),
}

# Customized kernels: (name, implement) -> class built as cls(config) with get_model().
_CUSTOM_KERNELS: dict[tuple[str, str], type] = {}


def _family(kernel_type: str) -> str:
    first = KERNEL_RECIPES[kernel_type][0]
    if first in ("conv", "dwconv", "fc", "concat"):
        return first
    return "pool" if first in ("maxpool", "avgpool") else "hw_cin"


def _check(kernel_type: str, config: Mapping[str, Any]) -> dict[str, Any]:
    if kernel_type not in KERNEL_RECIPES:
        raise UnknownKernelError(f"no kernel model for kernel type {kernel_type!r}; "
                                 f"known: {', '.join(KERNEL_TYPES)}")
    if not isinstance(config, Mapping):
        raise ConfigError(f"kernel {kernel_type!r}: config must be a mapping, got {config!r}")
    for key in _REQUIRED[_family(kernel_type)]:
        value = config.get(key)
        if value is None:
            raise ConfigError(f"kernel {kernel_type!r} needs config key {key}", key=key)
        # numbers.Real also admits numpy scalars, which samplers produce.
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or value <= 0 \
                or int(value) != value:
            raise ConfigError(f"kernel {kernel_type!r}: {key} must be a positive integer, "
                              f"got {value!r}", key=key)
    return dict(config)


def _concat_channels(config: Mapping[str, Any]) -> list[int]:
    ns = config.get("NS")
    keys = [f"CIN{i}" for i in range(1, (int(ns) if ns else 4) + 1)]
    channels = []
    for key in keys:
        value = config.get(key, 0 if not ns else None)
        if value is None:
            raise ConfigError(f"kernel 'concat' with NS={ns} needs config key {key}", key=key)
        if int(value) > 0:
            channels.append(int(value))
        elif ns:
            raise ConfigError(f"kernel 'concat' with NS={ns}: {key} must be positive", key=key)
    if len(channels) < 2:
        raise ConfigError(f"kernel 'concat' needs at least two inputs, got CIN1..CIN4 "
                          f"{[config.get(f'CIN{i}') for i in range(1, 5)]}", key="CIN1")
    return channels


def kernel_input_shapes(kernel_type: str, config: Mapping[str, Any]) -> list[list[int]]:
    """The NHWC input shapes (no batch) of a kernel model, one per model input.

    Raises:
        UnknownKernelError: no such kernel type.
        ConfigError: a missing or bad config key (names it).

    Example:
        >>> kernel_input_shapes("concat", {"HW": 8, "NS": 2, "CIN1": 4, "CIN2": 6})
        [[8, 8, 4], [8, 8, 6]]
    """
    custom = _custom_kernel(kernel_type, None)
    if custom is not None:
        return [list(s) for s in custom(dict(config)).input_tensor_shape]
    config = _check(kernel_type, config)
    family = _family(kernel_type)
    if family == "fc":
        return [[int(config["CIN"])]]
    hw = int(config["HW"])
    if family == "concat":
        return [[hw, hw, c] for c in _concat_channels(config)]
    shape = [hw, hw, int(config["CIN"])]
    return [shape, list(shape)] if KERNEL_RECIPES[kernel_type][0] == "add" else [shape]


def kernel_spec(kernel_type: str, config: Mapping[str, Any]) -> ModelSpec:
    """The :class:`ModelSpec` of a kernel model (framework-free)."""
    shapes = kernel_input_shapes(kernel_type, config)
    config = dict(config)
    ops = KERNEL_RECIPES[kernel_type]
    first = Node(ops[0], tuple(f"x{i}" for i in range(len(shapes))))
    rest = [Node(op, (str(i),)) for i, op in enumerate(ops[1:])]
    return ModelSpec(kernel_type, tuple(tuple(s) for s in shapes), (first, *rest), config)


def register_kernel(name: str, implement: str, cls: type) -> None:
    """Register a customized kernel generator (nn-Meter's kernel ``BaseBlock`` API).

    Args:
        name: kernel type name.
        implement: ``"tensorflow"`` or ``"torch"``.
        cls: built as ``cls(config)``; ``get_model()`` returns the model and
            ``input_tensor_shape`` lists its input shapes, NHWC without batch as
            everywhere here (nn-Meter's torch blocks list NCHW: convert them).
    """
    from nn_farm.builder.models.registry import normalize_implement

    if not callable(getattr(cls, "get_model", None)):
        raise ConfigError(f"kernel class {cls!r} for {name!r} has no get_model()")
    _CUSTOM_KERNELS[(name, normalize_implement(implement))] = cls


def unregister_kernel(name: str, implement: str) -> None:
    """Remove a customized kernel (KeyError if absent)."""
    from nn_farm.builder.models.registry import normalize_implement

    del _CUSTOM_KERNELS[(name, normalize_implement(implement))]


def build_kernel_model(kernel_type: str, config: Mapping[str, Any], implement: str):
    """Build one kernel model from its config.

    Args:
        kernel_type: a name in :data:`KERNEL_TYPES` (or a registered kernel).
        config: the kernel's nn-Meter config (keys above; extra keys are ignored).
        implement: ``"tensorflow"`` (a Keras model, batch 1, NHWC) or ``"torch"``
            (a module on NCHW tensors; see :func:`spec.build_model`).

    Returns:
        The model.

    Raises:
        UnknownKernelError: no such kernel type.
        ConfigError: a missing or bad config key, or a bad implement.

    Example:
        >>> model = build_kernel_model("conv-bn-relu", {"HW": 8, "CIN": 4, "COUT": 8,
        ...     "KERNEL_SIZE": 3, "STRIDES": 1}, "torch")
    """
    custom = _custom_kernel(kernel_type, implement)
    if custom is not None:
        block = custom(dict(config))
        model = block.get_model()
        if not hasattr(model, "input_shapes") and hasattr(model, "named_modules"):
            # torch modules carry their NHWC input shapes for to_onnx, as ours do.
            model.input_shapes = [list(s) for s in block.input_tensor_shape]
        return model
    return build_model(kernel_spec(kernel_type, config), implement)


def _custom_kernel(kernel_type: str, implement: str | None):
    """The registered class for ``kernel_type`` (any implementation if None), or None."""
    from nn_farm.builder.models.registry import normalize_implement

    if implement is not None:
        return _CUSTOM_KERNELS.get((kernel_type, normalize_implement(implement)))
    return next((cls for (name, _), cls in _CUSTOM_KERNELS.items() if name == kernel_type), None)
