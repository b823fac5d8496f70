"""Wire a resolved :class:`~nn_farm.builder.models.spec.ModelSpec` into a torch module."""

from __future__ import annotations

from torch import nn

from nn_farm.builder.models.spec import Resolved, parse_ref


class SpecModule(nn.Module):
    """Runs a DAG of operator modules on NCHW tensors (one positional arg per input).

    Attributes:
        input_shapes: NHWC shapes without batch, one per input.
        output_shapes: declared NHWC output shapes without batch.
    """

    def __init__(self, resolved: Resolved):
        super().__init__()
        spec = resolved.spec
        self.layers = nn.ModuleList(op.get_model() for op in resolved.operators)
        self.wiring = [tuple(parse_ref(r) for r in node.inputs) for node in spec.nodes]
        self.output_refs = [parse_ref(r) for r in resolved.outputs]
        self.input_shapes = [list(s) for s in spec.input_shapes]
        self.output_shapes = [list(s) for s in resolved.output_shapes]
        self.spec_name = spec.name

    def forward(self, *inputs):
        values: list[list] = []

        def tensor(ref):
            kind, index, part = ref
            return inputs[index] if kind == "input" else values[index][part]

        for layer, refs in zip(self.layers, self.wiring):
            out = layer(*(tensor(r) for r in refs))
            values.append(list(out) if isinstance(out, (list, tuple)) else [out])
        outputs = [tensor(r) for r in self.output_refs]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


def build_torch(resolved: Resolved) -> SpecModule:
    """Return a :class:`SpecModule` in eval mode (BN uses its running statistics)."""
    return SpecModule(resolved).eval()
