"""Wire a resolved :class:`~nn_farm.builder.models.spec.ModelSpec` into a Keras
functional model (batch 1, NHWC)."""

from __future__ import annotations

from nn_farm.builder.models.keras_operators import keras
from nn_farm.builder.models.spec import Resolved, parse_ref


def build_keras(resolved: Resolved):
    """Return a ``keras.Model`` for ``resolved``; see :func:`spec.build_model`."""
    k = keras()
    spec = resolved.spec
    inputs = [k.Input(shape=tuple(s), batch_size=1, name=f"input_{i}")
              for i, s in enumerate(spec.input_shapes)]
    values: list[list] = []

    def tensor(ref: str):
        kind, index, part = parse_ref(ref)
        return inputs[index] if kind == "input" else values[index][part]

    for node, op in zip(spec.nodes, resolved.operators):
        args = [tensor(r) for r in node.inputs]
        out = op.get_model()(args if len(args) > 1 else args[0])
        values.append(list(out) if isinstance(out, (list, tuple)) else [out])
    outputs = [tensor(r) for r in resolved.outputs]
    return k.Model(inputs if len(inputs) > 1 else inputs[0],
                   outputs if len(outputs) > 1 else outputs[0], name=_keras_name(spec.name))


def _keras_name(name: str) -> str:
    # Keras names may not hold '/' or '-' in every version.
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "model"
