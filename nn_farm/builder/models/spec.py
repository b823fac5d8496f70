"""A model to generate, described without any framework: a small DAG of operators.

Test cases, kernels and single-operator models are all :class:`ModelSpec` objects;
:func:`resolve` walks one through the operator registry to get every operator's
shapes (no tensorflow or torch needed), and :func:`build_model` turns it into a
Keras model or a torch module.

    ModelSpec --resolve--> operators + declared output shapes --build_model--> model

Node inputs are references: ``"x0"``, ``"x1"`` for the model inputs, ``"3"`` for the
(first) output of node 3, ``"3:1"`` for its second output (split).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from nn_farm.builder.models.operators import output_shapes
from nn_farm.builder.models.registry import get_operator, normalize_implement
from nn_farm.errors import BuilderError, ConfigError


@dataclass(frozen=True)
class Node:
    """One operator in a :class:`ModelSpec`.

    Attributes:
        op: operator name in the registry (``"conv"``).
        inputs: references to the tensors it consumes (``("x0",)``, ``("0", "x1")``).
        config: keys that override the model config for this node only.
    """

    op: str
    inputs: tuple[str, ...]
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    """What to build.

    Attributes:
        name: the model's name (``"conv-bn-relu"``, ``"BF_conv_relu_block"``).
        input_shapes: NHWC shapes without batch, one per model input.
        nodes: the operators in topological order.
        config: nn-Meter config keys shared by every node.
        outputs: references to the model outputs; empty means every output of the
            last node.
    """

    name: str
    input_shapes: tuple[tuple[int, ...], ...]
    nodes: tuple[Node, ...]
    config: Mapping[str, Any] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()


@dataclass
class Resolved:
    """A :class:`ModelSpec` with its operator instances and shapes (NHWC, no batch)."""

    spec: ModelSpec
    implement: str
    operators: list
    node_output_shapes: list[list[list[int]]]
    outputs: tuple[str, ...]
    output_shapes: list[list[int]]


def parse_ref(ref: str) -> tuple[str, int, int]:
    """``"x1"`` -> ("input", 1, 0); ``"3:1"`` -> ("node", 3, 1)."""
    try:
        if ref.startswith("x"):
            return "input", int(ref[1:]), 0
        node, _, part = ref.partition(":")
        return "node", int(node), int(part or 0)
    except (AttributeError, ValueError):
        raise BuilderError(f"bad tensor reference {ref!r}") from None


def resolve(spec: ModelSpec, implement: str) -> Resolved:
    """Instantiate every operator of ``spec`` with its input shapes.

    Args:
        spec: the model description.
        implement: ``"tensorflow"`` or ``"torch"``.

    Returns:
        A :class:`Resolved` with the operators and every declared shape.

    Raises:
        BuilderError: unknown operator or dangling reference (names the model).
        ConfigError: a missing or bad config key (names the key).
    """
    implement = normalize_implement(implement)
    inputs = [list(s) for s in spec.input_shapes]
    operators, node_shapes = [], []

    def shape_of(ref: str) -> list[int]:
        kind, index, part = parse_ref(ref)
        table = [[s] for s in inputs] if kind == "input" else node_shapes
        if index >= len(table) or part >= len(table[index]):
            raise BuilderError(f"model {spec.name!r}: reference {ref!r} points at nothing")
        return table[index][part]

    for i, node in enumerate(spec.nodes):
        shapes = [shape_of(r) for r in node.inputs]
        cls = get_operator(node.op, implement)
        config = {**spec.config, **node.config}
        try:
            op = cls(shapes if len(shapes) > 1 else shapes[0], config)
            node_shapes.append([list(s) for s in output_shapes(op)])
        except ConfigError as exc:
            raise ConfigError(f"model {spec.name!r}, node {i} ({node.op}): {exc}",
                              key=exc.key) from exc
        operators.append(op)
    if not operators:
        raise BuilderError(f"model {spec.name!r} has no operators")
    last = len(operators) - 1
    outputs = spec.outputs or tuple(f"{last}:{p}" for p in range(len(node_shapes[last])))
    return Resolved(spec, implement, operators, node_shapes, outputs,
                    [shape_of(r) for r in outputs])


def build_model(spec: ModelSpec, implement: str):
    """Build ``spec`` as a Keras model (``"tensorflow"``) or a torch module (``"torch"``).

    The torch module takes NCHW tensors (``[1, N]`` for vectors), one positional
    argument per input, and carries ``input_shapes`` / ``output_shapes`` (NHWC, no
    batch). The Keras model has batch size 1 baked in, as TFLite needs.

    Raises:
        BuilderError, ConfigError: as :func:`resolve`.
    """
    resolved = resolve(spec, implement)
    if resolved.implement == "tensorflow":
        from nn_farm.builder.models.keras_builder import build_keras

        return build_keras(resolved)
    from nn_farm.builder.models.torch_builder import build_torch

    return build_torch(resolved)
