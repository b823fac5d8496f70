"""Kernel types, their configs and their feature vectors: the single source of truth.

A *kernel* is what a device runs as one unit after fusion (conv + bn + relu run as
one ``conv-bn-relu``). The builder samples kernel *configs* (dicts keyed by
nn-Meter's config names: ``HW``, ``CIN``, ``COUT``, ``KERNEL_SIZE``, ``STRIDES``,
``POOL_STRIDES``, ``NS``, ``CIN1``..``CIN4``), measures them, and fits one regressor
per kernel type on the *features* made here; the predictor turns detected kernel
units into the same features. Both sides import this module, so a package trained
by one predicts with the other.

    kernel unit (from kernel detection)  --config_from_kernel_unit-->  (type, config)
    configs of one type                  --features-->                 X (n, n_features)

Feature vectors follow nn-Meter's predictor (``get_predict_features``), so its
packages (kernel .pkl files) load and predict unchanged:

    conv-*      HW, CIN, COUT, KERNEL_SIZE, STRIDES, FLOPS, PARAMS
    dwconv-*    HW, CIN, COUT (= CIN), KERNEL_SIZE, STRIDES, FLOPS, PARAMS
    max/avgpool HW, CIN, COUT (= CIN), KERNEL_SIZE, POOL_STRIDES
    fc          CIN, COUT, FLOPS, PARAMS
    concat      HW, NS, CIN1, CIN2, CIN3, CIN4      (missing inputs are 0)
    add/addrelu HW, CIN1, CIN2                      (both = CIN)
    others      HW, CIN

``FLOPS`` is FLOPs / 2e6 (so, mega multiply-adds) and ``PARAMS`` is parameters / 1e6,
with nn-Meter's formulas (bias included; ``fc`` counts ``(2 CIN + 1) COUT`` for both).

Two places where nn-Meter is wrong and this module is not: ``global-avgpool`` gets its
real input size (nn-Meter always passes 1), and a concat with more than four inputs
keeps its real ``NS`` (nn-Meter writes 6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from nn_farm.errors import UnknownKernelError

__all__ = [
    "KernelSpec",
    "KERNEL_SPECS",
    "KERNEL_TYPES",
    "get_spec",
    "kernel_type_of",
    "fallback_kernel_type",
    "config_from_kernel_unit",
    "config_row_from_kernel_unit",
    "config_rows",
    "features",
    "cost_terms",
    "lane_terms",
    "feature_names",
]

_CONV_CONFIG = ("HW", "CIN", "COUT", "KERNEL_SIZE", "STRIDES")
_DWCONV_CONFIG = ("HW", "CIN", "KERNEL_SIZE", "STRIDES")
_POOL_CONFIG = ("HW", "CIN", "KERNEL_SIZE", "POOL_STRIDES")
_HW_CIN = ("HW", "CIN")


@dataclass(frozen=True)
class KernelSpec:
    """What one kernel type needs and what its regressor sees.

    Attributes:
        name: nn-Meter's kernel name, e.g. ``"conv-bn-relu"``.
        family: how features are computed: conv, dwconv, pool, fc, concat, add, hw_cin.
        config_keys: the config a builder samples and a kernel unit maps to.
        feature_names: the columns of :func:`features`, in nn-Meter's order.
    """

    name: str
    family: str
    config_keys: tuple[str, ...]
    feature_names: tuple[str, ...]


_FAMILY_LAYOUT = {
    "conv": (_CONV_CONFIG, ("HW", "CIN", "COUT", "KERNEL_SIZE", "STRIDES", "FLOPS", "PARAMS")),
    "dwconv": (_DWCONV_CONFIG, ("HW", "CIN", "COUT", "KERNEL_SIZE", "STRIDES", "FLOPS", "PARAMS")),
    "pool": (_POOL_CONFIG, ("HW", "CIN", "COUT", "KERNEL_SIZE", "POOL_STRIDES")),
    "fc": (("CIN", "COUT"), ("CIN", "COUT", "FLOPS", "PARAMS")),
    "concat": (
        ("HW", "NS", "CIN1", "CIN2", "CIN3", "CIN4"),
        ("HW", "NS", "CIN1", "CIN2", "CIN3", "CIN4"),
    ),
    "add": (_HW_CIN, ("HW", "CIN1", "CIN2")),
    "hw_cin": (_HW_CIN, _HW_CIN),
}

_FAMILIES = {
    "conv": [
        "conv-bn-relu", "conv-bn-relu6", "conv-bn", "conv-relu", "conv-relu6",
        "conv-hswish", "conv-block", "conv-bn-hswish",
    ],
    "dwconv": [
        "dwconv-bn", "dwconv-relu", "dwconv-relu6", "dwconv-bn-relu", "dwconv-bn-relu6",
        "dwconv-block", "dwconv-bn-hswish",
    ],
    "pool": ["maxpool", "avgpool"],
    "fc": ["fc"],
    "concat": ["concat"],
    "add": ["addrelu", "add"],
    "hw_cin": [
        "split", "channelshuffle", "se", "global-avgpool", "bnrelu", "bn", "hswish", "relu",
        # Not one of nn-Meter's: swish / SiLU, x * sigmoid(x), which EfficientNets use
        # everywhere and TFLite does not fuse. It costs 3.5-3.8x hswish here (sigmoid's
        # exp against a clamp), so pricing it as hswish put EfficientNets 10-16% low.
        "swish",
    ],
}

KERNEL_SPECS: dict[str, KernelSpec] = {
    name: KernelSpec(name, family, *_FAMILY_LAYOUT[family])
    for family, names in _FAMILIES.items()
    for name in names
}
KERNEL_TYPES: tuple[str, ...] = tuple(KERNEL_SPECS)

# Spellings nn-Meter's detectors and old packages use for the same kernels
# (nn_meter/predictor/prediction/utils.py: get_kernel_name).
_ALIASES = {
    "fc-relu": "fc",
    "max-pool": "maxpool",
    "avg-pool": "avgpool",
    "global-pool": "global-avgpool",
    "gap": "global-avgpool",
    "channel_shuffle": "channelshuffle",
    "bn-relu": "bnrelu",
    "add-relu": "addrelu",
    "SE": "se",
    "SE-relu": "se",
    "se-relu": "se",
}

# A package that lacks the exact conv / dwconv kernel predicts it with this one:
# nn-Meter ships and merges into exactly these two (merge_conv_kernels).
_FAMILY_FALLBACK = {"conv": "conv-bn-relu", "dwconv": "dwconv-bn-relu"}
# Packages built before nn-farm had a swish kernel (and nn-Meter's) price it as hswish,
# and so does every package for a conv fused with swish (kernel_type_of).
_STAND_INS = {"swish": "hswish"}


def get_spec(kernel_type: str) -> KernelSpec:
    """Return the spec of a kernel type.

    Args:
        kernel_type: a name from :data:`KERNEL_TYPES` or one of nn-Meter's aliases.

    Returns:
        The :class:`KernelSpec`.

    Raises:
        UnknownKernelError: no spec for that kernel type.
    """
    return KERNEL_SPECS[kernel_type_of(kernel_type)]


def feature_names(kernel_type: str) -> tuple[str, ...]:
    """Column names of :func:`features` for ``kernel_type`` (raises UnknownKernelError)."""
    return get_spec(kernel_type).feature_names


def kernel_type_of(op: str) -> str:
    """Map a detected kernel's ``op`` to the predictor kernel type that models it.

    Exact names and nn-Meter's aliases map to themselves. A conv kernel whose BN was
    folded away (ONNX exports: ``conv``, ``dwconv-hswish``) maps to the same kernel
    with ``bn`` (``conv-bn``, ``dwconv-bn-hswish``); any other op containing
    ``dwconv`` maps to ``dwconv-bn-relu`` and any other ``conv`` op to
    ``conv-bn-relu``, nn-Meter's merged kernels. A package without the exact kernel
    prices it with those merged ones (:func:`fallback_kernel_type`), so nn-Meter
    packages predict as nn-Meter does.

    Args:
        op: the kernel unit's ``op``, e.g. ``"conv-bn-relu"``, ``"gap"``, ``"conv"``.

    Returns:
        A name in :data:`KERNEL_TYPES`.

    Raises:
        UnknownKernelError: the op is no kernel type nn-farm knows (e.g. ``"sigmoid"``).
    """
    if op in KERNEL_SPECS:
        return op
    alias = _ALIASES.get(op)
    if alias is not None:
        return alias
    parts = op.split("-")
    if "swish" in parts:
        # swish fused behind a conv ("conv-swish", on runtimes that fuse it; TFLite
        # does not): nn-Meter has no such kernel, and neither has nn-farm. It is
        # priced as the hswish kernel of the same shape, one elementwise pass over
        # the conv's output, which leans low (sigmoid's exp costs more than a clamp).
        return kernel_type_of("-".join(_STAND_INS.get(p, p) for p in parts))
    head, _, rest = op.partition("-")
    if head in ("conv", "dwconv"):
        # BN folded into the conv (ONNX exports, TFLite): "conv" runs as "conv-bn",
        # "dwconv-hswish" as "dwconv-bn-hswish".
        with_bn = "-".join([head, "bn", rest]) if rest else f"{head}-bn"
        if with_bn in KERNEL_SPECS:
            return with_bn
    if "dwconv" in op:
        return "dwconv-bn-relu"
    if "conv" in op:
        return "conv-bn-relu"
    raise UnknownKernelError(f"no kernel spec for kernel type {op!r}")


def fallback_kernel_type(kernel_type: str) -> str | None:
    """The kernel type whose regressor may stand in for ``kernel_type``, or None.

    nn-Meter packages hold only ``conv-bn-relu`` and ``dwconv-bn-relu`` for the conv
    families; their features have the same layout, so the family's model is used.
    A package without ``swish`` prices it with ``hswish``, one elementwise pass too.
    """
    spec = KERNEL_SPECS.get(kernel_type)
    if spec is None:
        return None
    fallback = _STAND_INS.get(kernel_type) or _FAMILY_FALLBACK.get(spec.family)
    return fallback if fallback != kernel_type else None


# ---------------------------------------------------------------- kernel units


def _second(value: Any, default: int = 1) -> int:
    """nn-Meter stores ks / strides as [kh, kw] or [1, sh, sw, 1]; index 1 serves both."""
    if type(value) is list and len(value) >= 2:
        return int(value[1])
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return int(value)
    if len(value) >= 2:
        return int(value[1])
    return int(value[0]) if value else default


def _side(ks: Any) -> int | float:
    """A kernel's side, from ``ks`` as [kh, kw] or [1, kh, kw, 1].

    nn-Meter's one KERNEL_SIZE is index 1, which is all there is to a square
    kernel. A kh x kw kernel is read as the square with as many taps, of side
    sqrt(kh * kw): its multiply-adds are then its own, where index 1 would price a
    1x7 conv as a 7x7 and its 7x1 twin as a 1x1 (InceptionV3 was predicted +70%).
    """
    if not isinstance(ks, (list, tuple)) or len(ks) not in (2, 4):
        return _second(ks)
    kh, kw = (ks[0], ks[1]) if len(ks) == 2 else (ks[1], ks[2])
    return int(kw) if kh == kw else float(np.sqrt(kh * kw))


def _hw_of(unit: Mapping[str, Any], tensor: Sequence[int] | None = None) -> int:
    if tensor is None:
        if "inputh" in unit:
            return int(unit["inputh"])
        tensors = unit.get("input_tensors") or [[1]]
        tensor = tensors[0]
    # NHWC: H is index 1; a 2-d [N, C] tensor has no spatial size (nn-Meter uses N == 1).
    return int(tensor[1]) if len(tensor) == 4 else 1


def _cin_of(unit: Mapping[str, Any]) -> int:
    if "cin" in unit:
        return int(unit["cin"])
    return int(unit["input_tensors"][0][-1])


# Any unit shape; the detector's usual one is read faster in bulk (_BULK_ROWS below).
def _row_conv(unit):
    return (_hw_of(unit), _cin_of(unit), int(unit["cout"]), _side(unit.get("ks")),
            _second(unit.get("strides")))


def _row_dwconv(unit):
    return (_hw_of(unit), _cin_of(unit), _side(unit.get("ks")), _second(unit.get("strides")))


def _row_fc(unit):
    return (_cin_of(unit), int(unit["cout"]))


def _row_concat(unit):
    tensors = unit["input_tensors"]
    channels = [int(t[-1]) for t in tensors[:4]]
    channels += [0] * (4 - len(channels))
    return (_hw_of(unit, tensors[0]), len(tensors), *channels)


def _row_add(unit):
    tensors = unit.get("input_tensors") or []
    if len(tensors) == 2 and tensors[0] == tensors[1] and len(tensors[0]) == 4:
        return (int(tensors[0][1]), int(tensors[0][3]))
    # Broadcast adds ([1,1,1,C] + [1,H,W,C]) are sized by their largest input.
    hw = max((_hw_of(unit, t) for t in tensors), default=_hw_of(unit))
    cin = max((int(t[-1]) for t in tensors), default=_cin_of(unit))
    return (hw, cin)


def _row_hw_cin(unit):
    return (_hw_of(unit), _cin_of(unit))


def _row_se(unit):
    # The SE block's last input is the feature map it rescales.
    tensor = unit["input_tensors"][-1]
    return (_hw_of(unit, tensor), int(tensor[-1]))


def _row_split(unit):
    tensor = unit["input_tensors"][0]
    return (_hw_of(unit, tensor), int(tensor[-1]))


_ROW_OF_FAMILY = {
    "conv": _row_conv,
    "dwconv": _row_dwconv,
    "pool": _row_dwconv,
    "fc": _row_fc,
    "concat": _row_concat,
    "add": _row_add,
    "hw_cin": _row_hw_cin,
}
_ROW_OF_TYPE = {name: _ROW_OF_FAMILY[spec.family] for name, spec in KERNEL_SPECS.items()}
_ROW_OF_TYPE.update(se=_row_se, split=_row_split, channelshuffle=_row_split)


_TYPE_OF_OP: dict[str, str] = {}


def config_row_from_kernel_unit(unit: Mapping[str, Any]) -> tuple[str, tuple[int, ...]]:
    """Like :func:`config_from_kernel_unit`, but the config as a tuple in ``config_keys`` order.

    The fast path for prediction: no dict is built per kernel.
    """
    try:
        op = unit["op"]
    except (KeyError, TypeError, IndexError):
        op = None
    if type(op) is not str:
        raise UnknownKernelError(f"kernel unit has no 'op' string: {unit!r:.200}")
    kernel_type = _TYPE_OF_OP.get(op)
    if kernel_type is None:
        kernel_type = _TYPE_OF_OP[op] = kernel_type_of(op)
    try:
        return kernel_type, _ROW_OF_TYPE[kernel_type](unit)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        name = unit.get("name", op)
        raise UnknownKernelError(
            f"kernel unit {name!r} ({op}) lacks what a {kernel_type} config needs: {exc!r}"
        ) from exc


# The detector's usual unit shape, read for a whole list at once: the same rows as
# the per-unit functions above give for such units, without a call per unit (but
# for the rare kernel that is not square). ks[1] == ks[-2] is "square" in both of
# _side's spellings, [kh, kw] and [1, kh, kw, 1].
_BULK_ROWS = {
    "conv": lambda units: [(int(u["inputh"]), int(u["cin"]), int(u["cout"]),
                            int(ks[1]) if (ks := u["ks"])[1] == ks[-2] else _side(ks),
                            int(u["strides"][1])) for u in units],
    "dwconv": lambda units: [(int(u["inputh"]), int(u["cin"]),
                              int(ks[1]) if (ks := u["ks"])[1] == ks[-2] else _side(ks),
                              int(u["strides"][1])) for u in units],
}
_BULK_ROWS["pool"] = _BULK_ROWS["dwconv"]


def config_rows(kernel_type: str, units: Sequence[Mapping[str, Any]]) -> list[tuple[int, ...]]:
    """:func:`config_row_from_kernel_unit`'s rows for many units of one kernel type.

    The batch path of prediction: a NAS batch has tens of thousands of conv units.

    Raises:
        UnknownKernelError: some unit lacks what the config needs (price those one
            by one to find which).
    """
    bulk = _BULK_ROWS.get(get_spec(kernel_type).family)
    if bulk is not None:
        try:
            return bulk(units)
        except (KeyError, IndexError, TypeError, ValueError):
            pass  # some unit in another shape: the general reader below
    row = _ROW_OF_TYPE[kernel_type]
    try:
        return [row(u) for u in units]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise UnknownKernelError(f"a {kernel_type} kernel unit lacks what its config needs: {exc!r}") from exc


def config_from_kernel_unit(unit: Mapping[str, Any]) -> tuple[str, dict[str, int]]:
    """Map one detected kernel unit to its predictor kernel type and config.

    Args:
        unit: a kernel unit in nn-Meter's format, e.g. ``{"op": "conv-bn-relu",
            "inputh": 56, "cin": 24, "cout": 24, "ks": [3, 3], "strides": [1, 1],
            "input_tensors": [[1, 56, 56, 24]], ...}``.

    Returns:
        ``(kernel_type, config)``, config keyed by the spec's ``config_keys``.

    Raises:
        UnknownKernelError: the op has no spec, or the unit lacks a needed field.
    """
    kernel_type, row = config_row_from_kernel_unit(unit)
    return kernel_type, dict(zip(KERNEL_SPECS[kernel_type].config_keys, row))


# ---------------------------------------------------------------- features


def _as_matrix(spec: KernelSpec, configs) -> np.ndarray:
    if isinstance(configs, np.ndarray):
        matrix = np.asarray(configs, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != len(spec.config_keys):
            raise ValueError(
                f"{spec.name}: config array must have shape (n, {len(spec.config_keys)}) "
                f"for {spec.config_keys}, got {matrix.shape}"
            )
        return matrix
    rows = []
    for config in configs:
        if isinstance(config, Mapping):
            try:
                rows.append([config[key] for key in spec.config_keys])
            except KeyError as exc:
                raise ValueError(
                    f"{spec.name}: config {dict(config)} lacks key {exc.args[0]!r}"
                ) from None
        else:
            rows.append(list(config))
    if not rows:
        return np.zeros((0, len(spec.config_keys)))
    return _as_matrix(spec, np.asarray(rows, dtype=np.float64))


def _conv_flops_params(hw, cin, cout, ks, stride):
    params = cout * (ks * ks * cin + 1)
    return 2.0 * (hw / stride) ** 2 * params, params


def features(kernel_type: str, configs: Iterable[Mapping[str, float]] | np.ndarray) -> np.ndarray:
    """Feature matrix for many configs of one kernel type, vectorised.

    Args:
        kernel_type: a name in :data:`KERNEL_TYPES` (or an alias).
        configs: dicts keyed by the spec's ``config_keys``, or an array of shape
            ``(n, len(config_keys))`` in that order.

    Returns:
        ``X``: float64 array of shape ``(n, len(feature_names))``.

    Raises:
        UnknownKernelError: no spec for ``kernel_type``.
        ValueError: a config lacks a key, or the array has the wrong shape.

    Example:
        >>> features("conv-bn-relu", [{"HW": 56, "CIN": 24, "COUT": 24,
        ...                            "KERNEL_SIZE": 3, "STRIDES": 1}]).shape
        (1, 7)
    """
    spec = get_spec(kernel_type)
    c = _as_matrix(spec, configs)
    family = spec.family
    if family == "conv":
        hw, cin, cout, ks, stride = c.T
        flops, params = _conv_flops_params(hw, cin, cout, ks, stride)
        return np.column_stack([c, flops / 2e6, params / 1e6])
    if family == "dwconv":
        hw, cin, ks, stride = c.T
        params = cin * (ks * ks + 1)
        flops = 2.0 * (hw / stride) ** 2 * params
        return np.column_stack([hw, cin, cin, ks, stride, flops / 2e6, params / 1e6])
    if family == "pool":
        hw, cin, ks, stride = c.T
        return np.column_stack([hw, cin, cin, ks, stride])
    if family == "fc":
        cin, cout = c.T
        flops = (2.0 * cin + 1.0) * cout
        return np.column_stack([c, flops / 2e6, flops / 1e6])
    if family == "add":
        hw, cin = c.T
        return np.column_stack([hw, cin, cin])
    return c  # concat, hw_cin: the config is the feature vector


def cost_terms(X: np.ndarray, kernel_type: str, lanes: bool = False) -> np.ndarray:
    """The work a kernel does, from its :func:`features`: two cost terms, in millions.

    Mostly (multiply-adds, elements moved); element-wise kernels, which move what
    they compute on, take (elements, per-channel work) instead.

    With ``lanes``, a conv gets two more terms, between those two: its multiply-adds
    with the output channels rounded up to 8 and to 16 vector lanes (:func:`_padded`).
    A GEMM microkernel computes whole tiles of output channels (16 wide for f32 on
    this host's AVX), so a 1x1 conv to 17 channels took 0.094 ms where one to 15,
    with more work, took 0.058. The non-negative fit puts weight on whichever tile
    width the device has. On 975 conv configs of this host (five-fold
    cross-validation) they took ``roofline-gbm`` from 89.5% to 94.5% within +-10%;
    dwconv, whose boosted correction sees :func:`lane_terms`, gained nothing (95.0%
    to 95.2%), so only conv has them.

    A roofline's two costs: compute, and memory traffic (input, output and weights,
    in elements). A least-squares fit of latency on these and a constant (the
    call's fixed cost) extrapolates to sizes it was not trained on, which trees
    cannot; with the few dozen configs a small budget measures, that matters
    more than the detail trees find (``roofline`` learner of the builder).

    Args:
        X: :func:`features` of ``kernel_type``, shape (n, len(feature_names)).
        kernel_type: a kernel type (or alias).

    Returns:
        float64 array of shape (n, 2), (n, 4) for a conv with ``lanes``.
    """
    spec = get_spec(kernel_type)
    family = spec.family
    X = np.asarray(X, dtype=np.float64)
    if family in ("conv", "dwconv"):
        hw, cin, cout, _, stride, flops, params = X.T
        moved = hw * hw * cin + (hw / stride) ** 2 * cout + params * 1e6
        if lanes and family == "conv":
            return np.column_stack([flops, flops * _padded(cout, 8), flops * _padded(cout, 16), moved / 1e6])
        return np.column_stack([flops, moved / 1e6])
    if family == "pool":
        hw, cin, _, ks, stride = X.T
        out = (hw / stride) ** 2 * cin
        return np.column_stack([out * ks * ks / 1e6, (hw * hw * cin + out) / 1e6])
    if family == "fc":
        _, _, flops, params = X.T
        return np.column_stack([flops, params])
    if family == "concat":
        hw, _, *channels = X.T
        moved = 2.0 * hw * hw * np.sum(channels, axis=0)  # read once, written once
        return np.column_stack([np.zeros(len(X)), moved / 1e6])
    if family == "add":
        hw, cin1, cin2 = X.T
        moved = hw * hw * (cin1 + cin2 + np.maximum(cin1, cin2))
        return np.column_stack([hw * hw * np.maximum(cin1, cin2) / 1e6, moved / 1e6])
    hw, cin = X.T  # hw_cin: element-wise, a split, a pooling to 1 x 1, squeeze-excite
    # Elements, and what scales with channels alone: per-channel parameters, or the
    # squeeze-excite's two 1 x 1 convs on the pooled vector (CIN -> CIN/4 -> CIN).
    per_channel = cin * cin / 2.0 if spec.name == "se" else cin
    return np.column_stack([hw * hw * cin / 1e6, per_channel / 1e6])


def _padded(count: np.ndarray, lanes: int) -> np.ndarray:
    """``count`` rounded up to whole vector lanes, over ``count``: 1 when it fills them."""
    return np.ceil(count / lanes) * lanes / count


def lane_terms(X: np.ndarray, kernel_type: str) -> np.ndarray:
    """How much of its vector lanes a kernel's shape leaves idle, from its :func:`features`.

    For a depthwise conv: channels and output columns rounded up to 4, 8 and 16
    lanes (4 and 8 for columns), each over the real count. A depthwise conv has
    no reduction over channels to hide a part-filled lane in, so 65 channels cost
    nearly what 80 do. On this host's dwconv configs (five-fold cross-validation)
    these five columns lifted the boosted correction of
    :mod:`nn_farm.predictor.roofline_model` from 82% to 92% within +-10%; on conv
    configs they did nothing (86% to 83-85%), so every other family has none.

    Returns:
        float64 array of shape (n, 5) for the dwconv family, (n, 0) otherwise.
    """
    X = np.asarray(X, dtype=np.float64)
    if get_spec(kernel_type).family != "dwconv":
        return np.empty((len(X), 0))
    hw, cin, _, _, stride = X[:, :5].T
    out = np.ceil(hw / stride)  # "same" padding
    return np.column_stack([_padded(cin, 4), _padded(cin, 8), _padded(cin, 16),
                            _padded(out, 4), _padded(out, 8)])
