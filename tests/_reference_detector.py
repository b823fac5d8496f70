"""A straightforward kernel detector, the reference for the fast one in
nn_farm/predictor/kernels (tests/test_detection.py compares the two).

This is the detector as it was before it was tuned for NAS batches (commit
45c42f4): per-node copies of every edge list, a dict per work graph for each
field, fusion rules asked afresh for every op, all ops indexed as pattern
anchors. Same algorithm, written for reading; the patterns are the package's.
It predates folding explicit pads into convs (blocks._fold_pad), so the two are
compared on graphs without Pad ops.
"""

from __future__ import annotations

from nn_farm.predictor.ir.graph import IRGraph
from nn_farm.predictor.ir.ops import NO_KERNEL, canonical_op
from nn_farm.predictor.kernels.rules import FusionRules, load_fusion_rules
from nn_farm.predictor.kernels.blocks import PATTERNS
from nn_farm.predictor.kernels.detector import KERNEL_NAMES

_CONV_LIKE = frozenset({"conv", "dwconv", "maxpool", "avgpool"})
_BINARY = frozenset({"add", "mul", "div", "sub"})
_ONE_INPUT = frozenset({"hswish", "hsigmoid", "swish", "se", "gap", "channelshuffle"})


def detect_kernels_reference(ir: IRGraph, fusion_rules: FusionRules | dict | str | None = None) -> list[dict]:
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


# ---------------------------------------------------------------- blocks

class WorkGraph:
    """The graph kernel detection edits: canonical ops, edges, and which IR nodes
    each (possibly contracted) node stands for. The IR graph itself is not copied
    or touched."""

    __slots__ = ("op", "ins", "outs", "members", "order")

    def __init__(self, ir, canonical_op):
        nodes = ir.nodes
        self.order = ir.topological_order()
        self.op = {n: canonical_op(nodes[n]) for n in self.order}
        self.ins = {n: list(nodes[n]["inbounds"]) for n in self.order}
        self.outs = {n: list(nodes[n]["outbounds"]) for n in self.order}
        self.members = {n: [n] for n in self.order}

    def bypass(self, name: str) -> None:
        """Remove a node that does no work, wiring its inputs straight to its outputs."""
        ins, outs = self.ins.pop(name), self.outs.pop(name)
        for s in ins:
            lst = self.outs[s]
            i = lst.index(name)
            lst[i:i + 1] = [o for o in outs if o not in lst]
        for o in outs:
            lst = self.ins[o]
            i = lst.index(name)
            lst[i:i + 1] = [s for s in ins if s not in lst]
        del self.op[name], self.members[name]

    def contract(self, matched: list[str], op: str) -> str:
        """Replace ``matched`` (pattern order; last is the block output) by one node
        named after the first. Returns that name."""
        head, tail = matched[0], matched[-1]
        inside = set(matched)
        ext_in = []
        for n in matched:
            for s in self.ins[n]:
                if s not in inside and s not in ext_in:
                    ext_in.append(s)
        outs = self.outs[tail]
        members = [m for n in matched for m in self.members[n]]
        for n in matched[1:]:
            del self.op[n], self.ins[n], self.outs[n], self.members[n]
        self.op[head], self.ins[head], self.outs[head], self.members[head] = op, ext_in, outs, members
        for s in ext_in:
            self.outs[s] = _dedup([head if o in inside else o for o in self.outs[s]])
        for o in outs:
            self.ins[o] = _dedup([head if s == tail else s for s in self.ins[o]])
        return head

    def live_order(self) -> list[str]:
        """Topological order of the nodes still present (heads keep their first member's place)."""
        return [n for n in self.order if n in self.op]


def _dedup(xs: list) -> list:
    seen = set()
    return [x for x in xs if not (x in seen or seen.add(x))]


def _match(g: WorkGraph, anchor: str, pattern: Pattern) -> list[str] | None:
    ins = g.ins[anchor]
    if len(ins) != 1:
        return None
    x = ins[0]
    bound = {pattern[0][0]: anchor}
    used = {anchor}

    def extend(k: int) -> bool:
        if k == len(pattern):
            return _closed(g, bound, pattern)
        pid, ops, pins = pattern[k]
        want = {x if p == "x" else bound[p] for p in pins}
        first = pins[0]
        for cand in g.outs[x if first == "x" else bound[first]]:
            if cand in used or g.op[cand] not in ops or set(g.ins[cand]) != want:
                continue
            bound[pid] = cand
            used.add(cand)
            if extend(k + 1):
                return True
            del bound[pid]
            used.discard(cand)
        return False

    if extend(1):
        return [bound[pid] for pid, _, _ in pattern]
    return None


def _closed(g: WorkGraph, bound: dict, pattern: Pattern) -> bool:
    inside = set(bound.values())
    for pid, _, _ in pattern[:-1]:
        if any(o not in inside for o in g.outs[bound[pid]]):
            return False
    return True


def fuse_blocks(g: WorkGraph, no_kernel: frozenset) -> None:
    """Find and contract every multi-op block; drop ops that do no work.

    Channel shuffles are matched first because they are made of reshapes; then
    reshapes and identities are bypassed, so the other patterns see through a
    Flatten between a pooling and an fc. Graph inputs (placeholders) stay, as the
    ``x`` that a block reading the model input hangs from; they become no kernel.
    """
    ops = g.op
    by_op: dict[str, list[str]] = {}  # anchors by op, so each pattern visits only its own
    for n in g.order:
        by_op.setdefault(ops[n], []).append(n)
    _apply(g, PATTERNS[:1], by_op)
    for n in by_op.get("reshape", []) + by_op.get("dummy", []):
        if n in ops and ops[n] in no_kernel and g.ins[n]:  # graph inputs stay: blocks anchor on them
            g.bypass(n)
    _apply(g, PATTERNS[1:], by_op)


def _apply(g: WorkGraph, patterns, by_op: dict[str, list[str]]) -> None:
    ops = g.op
    for op, pattern in patterns:
        for first in pattern[0][1]:
            for n in by_op.get(first, ()):
                if ops.get(n) == first:  # still there, still that op
                    matched = _match(g, n, pattern)
                    if matched:
                        by_op.setdefault(op, []).append(g.contract(matched, op))
