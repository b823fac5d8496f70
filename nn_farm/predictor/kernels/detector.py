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
from nn_farm.predictor.ir.ops import ALIASES, NO_KERNEL, canonical_op
from nn_farm.predictor.kernels.blocks import ANCHOR_OPS, WorkGraph, fuse_blocks
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

#: framework types whose canonical op needs no look at attributes or shapes
#: (canonical_op decides conv / dwconv, clip / relu6 and mean / gap itself)
_SIMPLE_OPS = {t: c for t, c in ALIASES.items() if c not in ("conv", "clip", "relu", "mean")}
_INDEXED = ANCHOR_OPS | NO_KERNEL

# what a block's first op asks of its kernel dict
_OTHER, _CONV, _ONE, _TWO, _SPLIT = range(5)
# block op tuple -> (kernel op name, _OTHER.._SPLIT); a handful of entries per model zoo
_BLOCK_INFO: dict[tuple[str, ...], tuple[str, int]] = {}


def detect_kernels(ir: IRGraph, fusion_rules: FusionRules | dict | str | None = None,
                   *, connections: bool = True) -> list[dict]:
    """Split an IR graph into kernels by a backend's fusion rules.

    Args:
        ir: the model's IR (not modified).
        fusion_rules: :class:`FusionRules`, a ``detected_fusion_rule.json`` dict or
            path, or ``None`` for the default TFLite-like CPU rules.
        connections: give each kernel its ``name``, ``inbounds`` and ``outbounds``.
            Pricing needs none of them; leaving them out saves a third of the work
            in a NAS batch. The other fields are the same either way.

    Returns:
        Kernel dicts in topological order (see the module docstring). Ops that are
        not understood become kernels named after their own type, so a predictor
        can report them rather than count them as 0 ms. The shape lists, and
        ``ks`` / ``strides`` where the IR has them as ``[h, w]`` lists, are the
        IR's own (not copied, for speed): copy before mutating them.

    Raises:
        IRError: the graph has a dangling edge or a cycle.
        ConfigError: malformed fusion rules.
    """
    rules = load_fusion_rules(fusion_rules)
    g = WorkGraph(ir, canonical_op, _SIMPLE_OPS, _INDEXED)
    fuse_blocks(g, NO_KERNEL)
    blocks, types, owner = _basic_blocks(g, rules)
    return _to_kernels(ir, g, blocks, types, owner, connections)


def _basic_blocks(g: WorkGraph, rules: FusionRules):
    """Greedy chains in topological order: a block grows from its last op into a
    consumer the rules say it fuses with.

    Returns:
        The blocks (work-graph node names), each block's op tuple, and each node's
        block index.
    """
    owner: dict[str, int] = {}
    blocks: list[list[str]] = []
    block_types: list[tuple[str, ...]] = []
    op, g_outs = g.op, g.outs
    memo = rules.fusible_memo  # (ops so far, next op) -> bool, memoised per rules
    answers = rules.fusible_answers  # the memo's dict, read inline (most questions are repeats)
    single_consumer = rules.mon == 0
    get_op = op.get
    for n in g.order:  # the live order, filtered here rather than in a pass of its own
        if n in owner:
            continue
        t = get_op(n)
        if t is None or t in NO_KERNEL:  # gone (bypassed, contracted), or a graph input
            continue
        index = len(blocks)
        owner[n] = index
        block = [n]
        types = (t,)
        outs = g_outs[n]
        while outs and not (single_consumer and len(outs) > 1):
            for o in outs:
                if o not in owner:
                    ok = answers.get((types, op[o]))
                    if ok is None:
                        ok = memo(types, op[o])
                    if ok:
                        break
            else:
                break
            block.append(o)
            types += (op[o],)
            owner[o] = index
            outs = g_outs[o]
        blocks.append(block)
        block_types.append(types)
    return blocks, block_types, owner


def _block_info(types: tuple[str, ...]) -> tuple[str, int]:
    """(nn-Meter's kernel name, what the first op needs) for a block's op tuple, cached."""
    info = _BLOCK_INFO.get(types)
    if info is None:
        joined = "-".join(types)
        first = types[0]
        kind = (_CONV if first in _CONV_LIKE else _ONE if first in _ONE_INPUT
                else _TWO if first in _BINARY else _SPLIT if first == "split" else _OTHER)
        info = _BLOCK_INFO[types] = (KERNEL_NAMES.get(joined, joined), kind)
    return info


def _to_kernels(ir: IRGraph, g: WorkGraph, blocks: list[list[str]], block_types: list[tuple],
                owner: dict[str, int], connections: bool = True) -> list[dict]:
    nodes = ir.nodes
    members_of = g.members_of if g.members else None
    kernels = []
    names = []
    block_info = _BLOCK_INFO.get
    for index, block in enumerate(blocks):
        types = block_types[index]
        op, kind = block_info(types) or _block_info(types)
        if members_of is None:
            members = block
        elif len(block) == 1:
            members = members_of(block[0])
        else:
            members = [m for n in block for m in members_of(n)]
        head = nodes[members[0]]["attr"]
        tail = head if len(members) == 1 else nodes[members[-1]]["attr"]
        inputs = head.get("input_shape") or []
        if type(inputs) is not list or not all(inputs):
            inputs = [shape for shape in inputs if shape]  # nn-Meter IR lists scalars as []
        if kind == _ONE:
            inputs = inputs[:1]  # x only, not the constant of "x + 3" (as nn-Meter does)
        elif kind == _TWO and len(inputs) == 1:
            # x + const: nn-Meter's feature code reads two input tensors
            inputs = [inputs[0], inputs[0]]
        outputs = tail.get("output_shape") or [[]]
        if op == "global-avgpool" and inputs and len(inputs[0]) == 4 and len(outputs[0]) == 2:
            # [n, c] (keepdims=False, or a Flatten absorbed) is the same kernel as
            # [n, 1, 1, c]: report one form so every converter's model agrees
            outputs = [[outputs[0][0], 1, 1, outputs[0][1]]]
        if kind == _CONV:
            main = nodes[block[0]]["attr"]["attr"]
            ks = (main.get("kernel_shape") or main.get("ks") or main.get("ksize")
                  or (main.get("weight_shape") or [None, None])[:2])
            if len(ks) == 4:
                ks = list(ks[1:3])  # [h, w] from TF's [1, h, w, 1]
            elif type(ks) is not list:
                ks = list(ks)
            strides = main.get("strides") or [1, 1]
            if len(strides) == 4:
                strides = list(strides[1:3])
            elif type(strides) is not list:
                strides = list(strides)
            first = inputs[0] if inputs else None
            out0 = outputs[0] if outputs else None
            if ks and ks[0] is not None and first and len(first) == 4 and out0:
                # the usual conv / pool kernel, built in one go (no dict growing on the way);
                # the same fields, in the same order, as the general path below
                if connections:
                    name = f"{';'.join(members)}#{op}#{index}"
                    names.append(name)
                    kernel = {"op": op, "name": name, "input_tensors": inputs, "output_tensors": outputs,
                              "ks": ks, "strides": strides, "inputh": first[1], "inputw": first[2],
                              "cin": first[-1], "cout": out0[-1]}
                else:
                    kernel = {"op": op, "input_tensors": inputs, "output_tensors": outputs,
                              "ks": ks, "strides": strides, "inputh": first[1], "inputw": first[2],
                              "cin": first[-1], "cout": out0[-1]}
                kernels.append(kernel)
                continue
        if connections:
            name = f"{';'.join(members)}#{op}#{index}"
            names.append(name)
            kernel = {"op": op, "name": name, "input_tensors": inputs, "output_tensors": outputs}
        else:
            kernel = {"op": op, "input_tensors": inputs, "output_tensors": outputs}
        if kind == _CONV:
            if ks and ks[0] is not None:
                kernel["ks"] = ks
            kernel["strides"] = strides
        elif kind == _SPLIT:
            main = nodes[block[0]]["attr"]["attr"]
            if "split_dim" in main:
                kernel["split_dim"] = main["split_dim"]
        if inputs:
            first = inputs[0]
            if len(first) == 4:
                # global-avgpool included: the H x W it averages over, not the
                # 1 x 1 it produces (nn-Meter's feature code used a fixed 1 here)
                kernel["inputh"] = first[1]
                kernel["inputw"] = first[2]
            if first:
                kernel["cin"] = first[-1]
        out0 = outputs[0] if outputs else None
        if out0:
            kernel["cout"] = out0[-1]
        kernels.append(kernel)
    if not connections:
        return kernels

    # connections between kernels, by kernel name (kernel i is block i), each
    # neighbour once, in the order first met
    g_ins, g_outs = g.ins, g.outs
    get = owner.get
    for index, block in enumerate(blocks):
        ins: list[int] = []
        outs: list[int] = []
        for n in block:
            for s in g_ins[n]:
                b = get(s)
                if b is not None and b != index and b not in ins:
                    ins.append(b)
            for o in g_outs[n]:
                b = get(o)
                if b is not None and b != index and b not in outs:
                    outs.append(b)
        kernel = kernels[index]
        kernel["inbounds"] = [names[b] for b in ins]
        kernel["outbounds"] = [names[b] for b in outs]
    return kernels
