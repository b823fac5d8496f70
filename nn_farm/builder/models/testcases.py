"""Fusion-rule test-case models, after nn-Meter's fusion rule tester.

A basic fusion test case ``BF_<op1>_<op2>`` has three models: the two operators
chained (``"block"``) and each operator alone (T1 and T2); the rule tester compares
T1 + T2 - T12 with alpha * min(T1, T2). When both operators have the same name the
single models are keyed ``<op>_1`` and ``<op>_2``, as in nn-Meter's
``origin_testcases.json``.

The multiple-outbound-nodes case ``MON`` checks whether a device fuses an operator
whose output feeds two branches: a dwconv feeding relu-relu and leaky-relu-dwconv.

Input shapes follow nn-Meter: ``[SHAPE_1D]`` if either operator is in ``LAYERS_1D``
(default ``["fc"]``), else ``[HW, HW, CIN]``.
"""

from __future__ import annotations

from typing import Any, Mapping

from nn_farm.builder.models.registry import get_operator
from nn_farm.builder.models.spec import ModelSpec, Node, build_model
from nn_farm.errors import ConfigError

MON_NAME = "MON"
#: nn-Meter's MON cases: which single models add up to what the block should cost.
MON_CASES = {
    "case1": ["relu_relu", "relu_dwconv", "dwconv"],
    "case2": ["dwconv_relu_relu", "relu_dwconv"],
    "case3": ["dwconv_relu", "dwconv", "relu_relu"],
}
MON_TRUE_CASE = "case1"
MON_DEPS = {"BF_dwconv_relu": True}

_DEFAULT_LAYERS_1D = ("fc",)


def _int_key(config: Mapping[str, Any], key: str) -> int:
    if config.get(key) is None:
        raise ConfigError(f"test cases need config key {key}", key=key)
    try:
        return int(config[key])
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be an integer, got {config[key]!r}", key=key) from None


def testcase_input_shape(op1: str, op2: str, config: Mapping[str, Any]) -> list[int]:
    """The input shape nn-Meter gives test case ``op1_op2`` (NHWC, no batch)."""
    layers_1d = config.get("LAYERS_1D") or _DEFAULT_LAYERS_1D
    if op1 in layers_1d or op2 in layers_1d:
        return [_int_key(config, "SHAPE_1D")]
    hw = _int_key(config, "HW")
    return [hw, hw, _int_key(config, "CIN")]


def _num_inputs(op) -> int:
    n = getattr(op, "num_inputs", None)
    return int(n) if n else (2 if op.get_is_two_inputs() else 1)


def _inputs(start: int, count: int) -> tuple[str, ...]:
    return tuple(f"x{start + i}" for i in range(count))


def operator_spec(op: str, input_shape, config: Mapping[str, Any], implement: str,
                  name: str | None = None) -> ModelSpec:
    """A model of one operator alone (nn-Meter's SingleOpModel).

    Args:
        op: operator name.
        input_shape: its NHWC input shape without batch; an operator with two
            inputs gets two of them.
        config: nn-Meter config keys.
        implement: ``"tensorflow"`` or ``"torch"`` (customized operators differ).
        name: model name; defaults to ``op``.
    """
    layer = get_operator(op, implement)(list(input_shape), dict(config))
    n = _num_inputs(layer)
    return ModelSpec(name or op, (tuple(input_shape),) * n, (Node(op, _inputs(0, n)),), dict(config))


def basic_fusion_specs(op1: str, op2: str, config: Mapping[str, Any], implement: str,
                       input_shape=None) -> dict[str, ModelSpec]:
    """The three models of basic fusion test case ``BF_<op1>_<op2>``.

    Returns:
        ``{"block": op1 -> op2, op1: op1 alone, op2: op2 alone}`` (aliases ``_1`` /
        ``_2`` when the names are equal). Two-input operators get their second input
        as an extra model input, as nn-Meter's TwoOpModel does; a split feeds its
        first part to op2.
    """
    config = dict(config)
    shape = list(input_shape) if input_shape is not None else testcase_input_shape(op1, op2, config)
    first = get_operator(op1, implement)(shape, config)
    n1 = _num_inputs(first)
    mid = list(first.get_output_shape())
    second = get_operator(op2, implement)(mid, config)
    n2 = _num_inputs(second)
    alias1, alias2 = (f"{op1}_1", f"{op2}_2") if op1 == op2 else (op1, op2)
    prefix = f"BF_{op1}_{op2}"
    block = ModelSpec(
        f"{prefix}_block",
        (tuple(shape),) * n1 + (tuple(mid),) * (n2 - 1),
        (Node(op1, _inputs(0, n1)), Node(op2, ("0",) + _inputs(n1, n2 - 1))),
        config,
    )
    return {
        "block": block,
        alias1: operator_spec(op1, shape, config, implement, f"{prefix}_{alias1}"),
        alias2: operator_spec(op2, mid, config, implement, f"{prefix}_{alias2}"),
    }


def mon_specs(config: Mapping[str, Any]) -> dict[str, ModelSpec]:
    """The models of nn-Meter's MON test case: ``block`` plus the five partial models
    of :data:`MON_CASES` (input ``[HW, HW, CIN]``, dwconv of ``KERNEL_SIZE``, stride 1)."""
    config = {**config, "STRIDES": 1}
    hw = _int_key(config, "HW")
    shape = ((hw, hw, _int_key(config, "CIN")),)
    _int_key(config, "KERNEL_SIZE")
    leaky = {"NEGATIVE_SLOPE": 2}

    def chain(name, ops):
        nodes = [Node(op, ("x0",) if i == 0 else (str(i - 1),)) for i, op in enumerate(ops)]
        return ModelSpec(f"{MON_NAME}_{name}", shape, tuple(nodes), config)

    block = ModelSpec(
        f"{MON_NAME}_block", shape,
        (Node("dwconv", ("x0",)), Node("relu", ("0",)), Node("relu", ("1",)),
         Node("relu", ("0",), leaky), Node("dwconv", ("3",))),
        config, outputs=("2", "4"),
    )
    specs = {"block": block}
    for ops in dict.fromkeys(m for models in MON_CASES.values() for m in models):
        specs[ops] = chain(ops, ops.split("_"))
    return specs


def build_testcase_models(op1: str, op2: str, config: Mapping[str, Any],
                          implement: str) -> dict:
    """Build basic fusion test case ``op1_op2`` in one implementation.

    Args:
        op1, op2: operator names (built-in or registered).
        config: nn-Meter rule-test config: ``HW``, ``CIN``, ``SHAPE_1D``, ``COUT``,
            ``KERNEL_SIZE``, ``STRIDES``, ``POOL_STRIDES``, ``LAYERS_1D``.
        implement: ``"tensorflow"`` (Keras models) or ``"torch"`` (modules).

    Returns:
        ``{"block": model, op1: model, op2: model}`` (see :func:`basic_fusion_specs`).

    Raises:
        BuilderError: unknown operator.  ConfigError: a missing or bad config key.

    Example:
        >>> models = build_testcase_models("conv", "relu", {"HW": 8, "CIN": 4,
        ...     "COUT": 4, "KERNEL_SIZE": 3, "STRIDES": 1}, "torch")
        >>> sorted(models)
        ['block', 'conv', 'relu']
    """
    return {key: build_model(spec, implement)
            for key, spec in basic_fusion_specs(op1, op2, config, implement).items()}


def build_mon_models(config: Mapping[str, Any], implement: str) -> dict:
    """Build the MON test case's models (``block`` and the keys of :data:`MON_CASES`)."""
    return {key: build_model(spec, implement) for key, spec in mon_specs(config).items()}
