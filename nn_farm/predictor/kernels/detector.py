"""IR graph + fusion rules -> kernels, the units a backend actually runs.

    IRGraph --canonical ops--> WorkGraph --blocks (se, hswish, ...)--> contracted graph
            --fusion rules, in topological order--> basic blocks --> kernel dicts

The kernel dicts are what nn-Meter's ``KernelDetector.get_kernels()`` yields::

    {"op": "conv-bn-relu", "name": "<ir names joined by ;>#conv-bn-relu#<index>",
     "input_tensors": [[1, 56, 56, 24]], "output_tensors": [[1, 56, 56, 24]],
     "ks": [3, 3], "strides": [1, 1], "cin": 24, "cout": 24, "inputh": 56, "inputw": 56,
     "inbounds": [...kernel names], "outbounds": [...kernel names]}

``ks`` and ``strides`` are always ``[h, w]`` (nn-Meter passes TF's 4-element
``[1, s, s, 1]`` through for TF models and 2-element lists for ONNX ones).
"""

from __future__ import annotations

from nn_farm.predictor.ir.graph import IRGraph
from nn_farm.predictor.ir.ops import NO_KERNEL, canonical_op
from nn_farm.predictor.kernels.blocks import WorkGraph, fuse_blocks
from nn_farm.predictor.kernels.rules import FusionRules, load_fusion_rules

#: joined op sequence -> nn-Meter's kernel name. After bn, add or on its own a
#: relu6 is predicted as a relu (nn-Meter has relu6 kernels only behind convs).
KERNEL_NAMES = {
    "gap": "global-avgpool",
    "bn-relu": "bnrelu",
    "bn-relu6": "bnrelu",
    "add-relu": "addrelu",
    "add-relu6": "addrelu",
    "relu6": "relu",
}

_CONV_LIKE = frozenset({"conv", "dwconv", "maxpool", "avgpool"})
_BINARY = frozenset({"add", "mul", "div", "sub"})
_ONE_INPUT = frozenset({"hswish", "hsigmoid", "swish", "se", "gap", "channelshuffle"})


def detect_kernels(ir: IRGraph, fusion_rules: FusionRules | dict | str | None = None) -> list[dict]:
    """Split an IR graph into kernels by a backend's fusion rules.

    Args:
        ir: the model's IR (not modified).
        fusion_rules: :class:`FusionRules`, a ``detected_fusion_rule.json`` dict or
            path, or ``None`` for the default TFLite-like CPU rules.

    Returns:
        Kernel dicts in topological order (see the module docstring). Ops that are
        not understood become kernels named after their own type, so a predictor
        can report them rather than count them as 0 ms. The shape lists are the
        IR's own (not copied, for speed): copy before mutating them.

    Raises:
        IRError: the graph has a dangling edge or a cycle.
        ConfigError: malformed fusion rules.
    """
    rules = load_fusion_rules(fusion_rules)
    g = WorkGraph(ir, canonical_op)
    fuse_blocks(g, NO_KERNEL)
    blocks, owner = _basic_blocks(g, rules)
    return _to_kernels(ir, g, blocks, owner)


def _basic_blocks(g: WorkGraph, rules: FusionRules) -> tuple[list[list[str]], dict[str, int]]:
    """Greedy chains in topological order: a block grows from its last op into a
    consumer the rules say it fuses with.

    Returns:
        The blocks (work-graph node names) and each node's block index.
    """
    owner: dict[str, int] = {}
    blocks: list[list[str]] = []
    for n in g.live_order():
        if n in owner or g.op[n] in NO_KERNEL:  # a graph input: no work
            continue
        block = [n]
        types = [g.op[n]]
        owner[n] = len(blocks)
        last = n
        while True:
            outs = g.outs[last]
            if not outs or (len(outs) > 1 and rules.mon == 0):
                break
            nxt = next((o for o in outs if o not in owner and rules.fusible(types, g.op[o])), None)
            if nxt is None:
                break
            block.append(nxt)
            types.append(g.op[nxt])
            owner[nxt] = len(blocks)
            last = nxt
        blocks.append(block)
    return blocks, owner


def _to_kernels(ir: IRGraph, g: WorkGraph, blocks: list[list[str]], owner: dict[str, int]) -> list[dict]:
    nodes = ir.nodes
    kernels = []
    for index, block in enumerate(blocks):
        ops = [g.op[n] for n in block]
        joined = "-".join(ops)
        op = KERNEL_NAMES.get(joined, joined)
        members = [m for n in block for m in g.members[n]]
        head = nodes[members[0]]["attr"]
        tail = nodes[members[-1]]["attr"]
        inputs = [shape for shape in head.get("input_shape") or [] if shape]  # nn-Meter IR lists scalars as []
        if ops[0] in _ONE_INPUT:
            inputs = inputs[:1]  # x only, not the constant of "x + 3" (as nn-Meter does)
        elif ops[0] in _BINARY and len(inputs) == 1:
            # x + const: nn-Meter's feature code reads two input tensors
            inputs = [inputs[0], inputs[0]]
        outputs = tail.get("output_shape") or [[]]
        if op == "global-avgpool" and inputs and len(inputs[0]) == 4 and len(outputs[0]) == 2:
            # [n, c] (keepdims=False, or a Flatten absorbed) is the same kernel as
            # [n, 1, 1, c]: report one form so every converter's model agrees
            outputs = [[outputs[0][0], 1, 1, outputs[0][1]]]
        kernel = {"op": op, "name": f"{';'.join(members)}#{op}#{index}",
                  "input_tensors": inputs, "output_tensors": outputs}
        main = nodes[block[0]]["attr"]["attr"]
        if ops[0] in _CONV_LIKE:
            ks = _hw(main.get("kernel_shape") or main.get("ks") or main.get("ksize")
                     or (main.get("weight_shape") or [None, None])[:2])
            if ks and ks[0] is not None:
                kernel["ks"] = ks
            kernel["strides"] = _hw(main.get("strides") or [1, 1])
        if ops[0] == "split" and "split_dim" in main:
            kernel["split_dim"] = main["split_dim"]
        if inputs:
            first = inputs[0]
            if len(first) == 4:
                # global-avgpool included: the H x W it averages over, not the
                # 1 x 1 it produces (nn-Meter's feature code used a fixed 1 here)
                kernel["inputh"], kernel["inputw"] = first[1], first[2]
            if first:
                kernel["cin"] = first[-1]
        if outputs and outputs[0]:
            kernel["cout"] = outputs[0][-1]
        kernels.append(kernel)

    # connections between kernels, by kernel name (kernel i is block i)
    g_ins, g_outs = g.ins, g.outs
    for idx, k in enumerate(kernels):
        block = blocks[idx]
        ins = dict.fromkeys(owner[s] for n in block for s in g_ins[n] if s in owner)
        outs = dict.fromkeys(owner[o] for n in block for o in g_outs[n] if o in owner)
        k["inbounds"] = [kernels[b]["name"] for b in ins if b != idx]
        k["outbounds"] = [kernels[b]["name"] for b in outs if b != idx]
    return kernels


def _hw(v) -> list:
    """[h, w] from a 2-element list or TF's 4-element NHWC ``[1, h, w, 1]``."""
    v = list(v)
    return v[1:3] if len(v) == 4 else v
