"""Multi-op blocks (hswish, hsigmoid, swish, se, channelshuffle, global pooling) found
by subgraph matching, then contracted to one node each.

A pattern is a tiny DAG over canonical ops, written in topological order. Each
entry is ``(id, allowed_ops, inputs)``; the input ``"x"`` is the one tensor that
enters the block from outside (a block may read it more than once: hswish is
``x * relu6(x + 3) / 6``). Constants are not graph nodes, so ``x + 3`` is an
``add`` with the single input ``x``. A match must be closed: only the last op's
output may leave the block, so a tensor that something else also reads is never
swallowed.

Both spellings of every block are covered: a single ONNX op (``HardSwish``,
``HardSigmoid``, ``GlobalAveragePool``) is already its canonical op, and the
decomposed TF / Keras / old-ONNX forms are the patterns below.
"""

from __future__ import annotations

Pattern = list[tuple[str, frozenset, tuple]]


def _p(*entries) -> Pattern:
    return [(pid, frozenset(ops.split("|")), tuple(ins)) for pid, ops, ins in entries]


#: (block op, pattern), tried in this order: bigger blocks first, and blocks that
#: others are built of (hsigmoid, swish) before those others (se).
PATTERNS: list[tuple[str, Pattern]] = [
    # shufflenet's channel shuffle: view(b, g, c/g, h, w) -> transpose -> view(b, c, h, w)
    ("channelshuffle", _p(("r1", "reshape", "x"), ("t", "transpose", ("r1",)), ("r2", "reshape", ("t",)))),
    # x * relu6(x + 3) / 6, both orders of the last two ops
    ("hswish", _p(("a", "add", "x"), ("r", "relu6", ("a",)), ("d", "div|mul", ("r",)), ("m", "mul", ("x", "d")))),
    ("hswish", _p(("a", "add", "x"), ("r", "relu6", ("a",)), ("m", "mul", ("x", "r")), ("d", "div|mul", ("m",)))),
    # hard sigmoid: relu6(x + 3) / 6
    ("hsigmoid", _p(("a", "add", "x"), ("r", "relu6", ("a",)), ("d", "div|mul", ("r",)))),
    # swish / SiLU: x * sigmoid(x)
    ("swish", _p(("s", "sigmoid", "x"), ("m", "mul", ("x", "s")))),
    # nn-Meter's ONNX global pooling: ReduceMean over W, then over H
    ("gap", _p(("m1", "mean", "x"), ("m2", "mean|gap", ("m1",)))),
    # squeeze-and-excitation: x * gate(fc(act(fc(gap(x)))))
    ("se", _p(("g", "gap", "x"), ("c1", "conv|fc", ("g",)), ("a", "relu|relu6|swish", ("c1",)),
              ("c2", "conv|fc", ("a",)), ("h", "hsigmoid|sigmoid", ("c2",)), ("m", "mul", ("x", "h")))),
    # the same where the TFLite converter folded hard-sigmoid's "+ 3" into the second
    # conv's bias and its relu6 into the conv: gate = relu6(conv(.)) / 6
    ("se", _p(("g", "gap", "x"), ("c1", "conv|fc", ("g",)), ("a", "relu|relu6|swish", ("c1",)),
              ("c2", "conv|fc", ("a",)), ("r", "relu6", ("c2",)), ("d", "div|mul", ("r",)),
              ("m", "mul", ("x", "d")))),
]


class WorkGraph:
    """The graph kernel detection edits: canonical ops, edges, and which IR nodes
    each (possibly contracted) node stands for. The IR graph itself is not touched.

    Built in one pass over the topological order (found in the same pass when the
    IR has none cached). The edge lists start out as the IR's own lists (no
    per-node copies: a NAS batch builds thousands of these) and are *replaced*,
    never edited in place, when a node is bypassed or contracted.
    ``members`` lists only contracted nodes; every other node stands for itself.

    Args:
        ir: the IR graph.
        canonical_op: ``node dict -> op`` (:func:`nn_farm.predictor.ir.ops.canonical_op`).
        simple_ops: framework type -> canonical op, for the types whose op does not
            depend on attributes or shapes (looked up first; ``canonical_op`` decides
            the rest).
        anchors: ops whose nodes are indexed in ``by_op`` (the first ops of patterns,
            pads, and the ops that get bypassed).
    """

    __slots__ = ("nodes", "op", "ins", "outs", "members", "order", "by_op", "removed")

    def __init__(self, ir, canonical_op, simple_ops: dict | None = None, anchors=frozenset()):
        nodes = self.nodes = ir.nodes
        get = (simple_ops or {}).get
        order = ir.cached_topological_order()
        if order is None:
            self._scan(ir, get, canonical_op, anchors)
        else:
            # comprehensions, not one loop: this runs for every op of every NAS model
            self.op = {n: get(nodes[n]["attr"]["type"]) or canonical_op(nodes[n]) for n in order}
            self.ins = {n: nodes[n]["inbounds"] for n in order}
            self.outs = {n: nodes[n]["outbounds"] for n in order}
            by_op: dict[str, list[str]] = {}
            for n, c in self.op.items():
                if c in anchors:
                    if c in by_op:
                        by_op[c].append(n)
                    else:
                        by_op[c] = [n]
            self.by_op = by_op
            self.order = order
        self.members: dict[str, list[str]] = {}
        self.removed = False

    def _scan(self, ir, get, canonical_op, anchors) -> None:
        """Kahn's topological order (as :meth:`IRGraph.topological_order` finds it)
        and every per-node field, in one visit per node: a fresh NAS graph is
        touched once instead of twice."""
        nodes = ir.nodes
        indeg = {name: len(node["inbounds"]) for name, node in nodes.items()}
        order = [n for n, d in indeg.items() if d == 0]  # also the FIFO queue
        op, ins, outs, by_op = {}, {}, {}, {}
        try:
            for n in order:
                node = nodes[n]
                c = get(node["attr"]["type"]) or canonical_op(node)
                op[n] = c
                if c in anchors:
                    if c in by_op:
                        by_op[c].append(n)
                    else:
                        by_op[c] = [n]
                ins[n] = node["inbounds"]
                succs = outs[n] = node["outbounds"]
                for succ in succs:
                    d = indeg[succ] = indeg[succ] - 1
                    if d == 0:
                        order.append(succ)
        except KeyError:
            ir.topological_order()  # a dangling edge: raises IRError naming it
            raise  # a node without attr.type or the like
        if len(order) != len(nodes):
            ir.topological_order()  # raises IRError naming the cycle
        ir.remember_topological_order(order)
        self.order, self.op, self.ins, self.outs, self.by_op = order, op, ins, outs, by_op

    def members_of(self, name: str) -> list[str]:
        """The IR nodes a work-graph node stands for, in pattern order."""
        return self.members.get(name) or [name]

    def bypass(self, name: str) -> None:
        """Remove a node that does no work, wiring its inputs straight to its outputs."""
        ins, outs = self.ins.pop(name), self.outs.pop(name)
        g_ins, g_outs = self.ins, self.outs
        for s in ins:
            lst = g_outs[s]
            i = lst.index(name)
            g_outs[s] = [*lst[:i], *(o for o in outs if o not in lst), *lst[i + 1:]]
        for o in outs:
            lst = g_ins[o]
            i = lst.index(name)
            g_ins[o] = [*lst[:i], *(s for s in ins if s not in lst), *lst[i + 1:]]
        del self.op[name]
        self.members.pop(name, None)
        self.removed = True

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
        members = [m for n in matched for m in self.members_of(n)]
        for n in matched[1:]:
            del self.op[n], self.ins[n], self.outs[n]
            self.members.pop(n, None)
        self.op[head], self.ins[head], self.outs[head], self.members[head] = op, ext_in, outs, members
        for s in ext_in:
            self.outs[s] = _dedup([head if o in inside else o for o in self.outs[s]])
        for o in outs:
            self.ins[o] = _dedup([head if s == tail else s for s in self.ins[o]])
        self.removed = True
        return head

    def live_order(self) -> list[str]:
        """Topological order of the nodes still present (heads keep their first member's place)."""
        if not self.removed:
            return self.order
        op = self.op
        return [n for n in self.order if n in op]


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


#: ops that head a pattern, and explicit pads: only their nodes are tried as anchors
ANCHOR_OPS = frozenset(ops for _, pattern in PATTERNS for ops in pattern[0][1]) | {"pad"}


def fuse_blocks(g: WorkGraph, no_kernel: frozenset) -> None:
    """Find and contract every multi-op block; drop ops that do no work.

    Channel shuffles are matched first because they are made of reshapes; then
    reshapes and identities are bypassed, so the other patterns see through a
    Flatten between a pooling and an fc. Graph inputs (placeholders) stay, as the
    ``x`` that a block reading the model input hangs from; they become no kernel.

    ``g`` must index (``by_op``) at least :data:`ANCHOR_OPS` and ``no_kernel``.
    """
    ops = g.op
    by_op = g.by_op  # anchors by op, so each pattern visits only its own
    if not by_op:
        return  # nothing to match and nothing to bypass
    _apply(g, PATTERNS[:1], by_op)
    for n in by_op.get("reshape", []) + by_op.get("dummy", []):
        if n in ops and ops[n] in no_kernel and g.ins[n]:  # graph inputs stay: blocks anchor on them
            g.bypass(n)
    for n in by_op.get("pad", ()):
        _fold_pad(g, n)
    _apply(g, PATTERNS[1:], by_op)


#: ops an explicit pad before them is folded into
_PADDED_OPS = frozenset({"conv", "dwconv", "maxpool", "avgpool"})


def _fold_pad(g: WorkGraph, pad: str) -> None:
    """Fold an explicit spatial pad into the conv or pooling it feeds.

    TFLite files converted from other frameworks (and Keras' ZeroPadding2D) pad
    explicitly before a stride-2 conv whose own padding is VALID. The runtimes
    run the pair as one padded conv (TFLite's converter folds the pad when it
    equals SAME padding, XNNPACK fuses a constant pad into the convolution that
    follows), and the builder measures conv kernels with SAME padding: so the
    kernel is the conv, sized by the *unpadded* input (224 x 224 in, 112 x 112
    out at stride 2), and the pad is one of its members. A max pool padded with
    -inf (torch's padded MaxPool, through onnx_to_keras) is the same case with a
    pooling kernel. Only a pad with one consumer, a conv, dwconv or pooling
    reading nothing else, and padding H and W only (same N and C) is folded;
    any other pad stays a ``pad`` kernel and is reported as one that no
    predictor prices.
    """
    ins, outs = g.ins[pad], g.outs[pad]
    if len(ins) != 1 or len(outs) != 1:
        return
    conv = outs[0]
    if g.op.get(conv) not in _PADDED_OPS or len(g.ins[conv]) != 1:
        return
    attr = g.nodes[pad]["attr"]
    before, after = attr.get("input_shape") or [[]], attr.get("output_shape") or [[]]
    x, y = before[0], after[0]
    if len(x) != 4 or len(y) != 4 or x[0] != y[0] or x[3] != y[3]:
        return
    g.bypass(pad)
    g.members[conv] = [pad, *g.members_of(conv)]


def _apply(g: WorkGraph, patterns, by_op: dict[str, list[str]]) -> None:
    ops = g.op
    for op, pattern in patterns:
        for first in pattern[0][1]:
            for n in by_op.get(first, ()):
                if ops.get(n) == first:  # still there, still that op
                    matched = _match(g, n, pattern)
                    if matched:
                        by_op.setdefault(op, []).append(g.contract(matched, op))
