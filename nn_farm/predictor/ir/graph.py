"""The IR graph: nn-Meter's IR graph JSON, held as a plain dict of nodes.

One node per operator, keyed by its unique name::

    {"conv1/Conv2D": {
        "inbounds": ["input"], "outbounds": ["conv1/Relu"],
        "attr": {"name": "conv1/Conv2D", "type": "Conv2D",
                 "input_shape": [[1, 224, 224, 3]], "output_shape": [[1, 112, 112, 32]],
                 "attr": {"strides": [2, 2], "kernel_shape": [3, 3], ...}}}}

Shapes are NHWC. ``type`` keeps the spelling of the framework the model came from
(``Conv`` from ONNX, ``Conv2D`` from TensorFlow), exactly as nn-Meter's converters
write it; :mod:`nn_farm.predictor.ir.ops` maps both spellings to one kernel-level
op. The JSON file is nothing but ``{name: node}``, so nn-Meter reads ours and we
read nn-Meter's.
"""

from __future__ import annotations

import json
import logging
import os

from nn_farm.errors import IRError

log = logging.getLogger(__name__)


class IRGraph:
    """A model as nn-Meter IR: operators with NHWC shapes and their connections.

    Args:
        nodes: ``{name: {"inbounds", "outbounds", "attr"}}`` as described above. The
            dict is kept, not copied: converters build it once and hand it over.
        unknown_ops: op types the converter did not understand. Such ops stay in
            the graph as typed nodes; this list reports them.

    Raises:
        IRError: from :meth:`validate` or :meth:`from_json` when the graph is malformed.
    """

    __slots__ = ("nodes", "unknown_ops", "_topo")

    def __init__(self, nodes: dict[str, dict] | None = None, unknown_ops: list[str] | None = None):
        self.nodes: dict[str, dict] = nodes if nodes is not None else {}
        self.unknown_ops: list[str] = list(unknown_ops or [])
        self._topo: list[str] | None = None

    # -- building ---------------------------------------------------------------
    def add_node(self, name: str, type: str, input_shape: list, output_shape: list,
                 attr: dict | None = None, inbounds: list[str] | None = None) -> dict:
        """Add one operator and link it after its ``inbounds`` (which must exist).

        Args:
            name: unique node name.
            type: the op type in its framework's spelling (``Conv``, ``Conv2D``).
            input_shape, output_shape: lists of NHWC shapes, one per data tensor.
            attr: op attributes (nn-Meter's keys: ``kernel_shape``, ``strides``, ...).
            inbounds: names of the nodes producing its inputs.

        Returns:
            The new node dict.

        Raises:
            IRError: duplicate name, or an inbound that is not in the graph.
        """
        if name in self.nodes:
            raise IRError(f"duplicate node name {name!r}")
        node = {
            "inbounds": list(inbounds or []),
            "attr": {"name": name, "type": type, "input_shape": input_shape,
                     "output_shape": output_shape, "attr": attr or {}},
            "outbounds": [],
        }
        for src in node["inbounds"]:
            try:
                self.nodes[src]["outbounds"].append(name)
            except KeyError:
                raise IRError(f"node {name!r}: inbound {src!r} is not in the graph") from None
        self.nodes[name] = node
        self._topo = None
        return node

    # -- reading ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, name: str) -> bool:
        return name in self.nodes

    def type_of(self, name: str) -> str:
        return self.nodes[name]["attr"]["type"]

    def op_types(self) -> dict[str, int]:
        """Count of nodes per ``type``."""
        counts: dict[str, int] = {}
        for node in self.nodes.values():
            t = node["attr"]["type"]
            counts[t] = counts.get(t, 0) + 1
        return counts

    def topological_order(self) -> list[str]:
        """Node names, every node after all its inbounds (Kahn; input order kept).

        Raises:
            IRError: the graph has a cycle or a dangling edge.
        """
        if self._topo is not None and len(self._topo) == len(self.nodes):
            return self._topo
        nodes = self.nodes
        indeg = {name: len(node["inbounds"]) for name, node in nodes.items()}
        # the order list is its own FIFO queue: the loop reaches what it appends
        order = [n for n, d in indeg.items() if d == 0]
        try:
            for name in order:
                for succ in nodes[name]["outbounds"]:
                    d = indeg[succ] = indeg[succ] - 1
                    if d == 0:
                        order.append(succ)
        except KeyError as exc:
            raise IRError(f"node {name!r}: outbound {exc.args[0]!r} is not in the graph") from None
        if len(order) != len(nodes):
            self.validate()
            stuck = sorted(n for n, d in indeg.items() if d > 0)[:5]
            raise IRError(f"IR graph has a cycle through {stuck}")
        self._topo = order
        return order

    def cached_topological_order(self) -> list[str] | None:
        """The order :meth:`topological_order` last found, or ``None`` when there is
        none yet (or nodes were added since)."""
        topo = self._topo
        return topo if topo is not None and len(topo) == len(self.nodes) else None

    def remember_topological_order(self, order: list[str]) -> None:
        """Cache ``order`` as :meth:`topological_order`'s answer.

        For code that runs the same Kahn pass itself, alongside its own per-node
        work (kernel detection does, to touch each node once). ``order`` must be
        what :meth:`topological_order` would return.
        """
        self._topo = order

    def to_networkx(self):
        """A ``networkx.DiGraph`` view: one graph node per IR node, with its ``attr``."""
        import networkx as nx

        g = nx.DiGraph()
        for name, node in self.nodes.items():
            g.add_node(name, **node["attr"])
        for name, node in self.nodes.items():
            for succ in node["outbounds"]:
                g.add_edge(name, succ)
        return g

    def validate(self) -> "IRGraph":
        """Check that every edge points at a node and is recorded at both ends.

        Returns:
            self.

        Raises:
            IRError: naming the node and the missing or one-sided neighbour.
        """
        nodes = self.nodes
        for name, node in nodes.items():
            for key in ("inbounds", "outbounds", "attr"):
                if key not in node:
                    raise IRError(f"node {name!r} has no {key!r}")
            for src in node["inbounds"]:
                if src not in nodes:
                    raise IRError(f"node {name!r}: inbound {src!r} is not in the graph")
                if name not in nodes[src]["outbounds"]:
                    raise IRError(f"node {name!r}: inbound {src!r} does not list it as an outbound")
            for dst in node["outbounds"]:
                if dst not in nodes:
                    raise IRError(f"node {name!r}: outbound {dst!r} is not in the graph")
                if name not in nodes[dst]["inbounds"]:
                    raise IRError(f"node {name!r}: outbound {dst!r} does not list it as an inbound")
        return self

    # -- nn-Meter JSON ----------------------------------------------------------
    def to_json(self) -> dict:
        """The nn-Meter IR JSON object ``{name: node}`` (the live dict; copy before mutating)."""
        return self.nodes

    @classmethod
    def from_json(cls, d: dict) -> "IRGraph":
        """Build from nn-Meter IR JSON. Missing ``attr.name`` is filled in from the key.

        Raises:
            IRError: ``d`` is not a dict of nodes, or a node lacks inbounds/outbounds/attr.
        """
        from nn_farm.predictor.ir.ops import canonical_type

        if not isinstance(d, dict):
            raise IRError(f"nn-Meter IR must be a JSON object of nodes, got {type(d).__name__}")
        unknown = []
        for name, node in d.items():
            if not isinstance(node, dict) or "attr" not in node:
                raise IRError(f"node {name!r} has no 'attr'")
            node.setdefault("inbounds", [])
            node.setdefault("outbounds", [])
            attr = node["attr"]
            attr.setdefault("name", name)
            attr.setdefault("attr", {})
            t = attr.get("type")
            if t is None:
                raise IRError(f"node {name!r} has no attr.type")
            if canonical_type(t) is None and t not in unknown:
                unknown.append(t)
        return cls(d, unknown)

    def save(self, path: str | os.PathLike) -> None:
        """Write nn-Meter IR JSON to ``path``."""
        with open(path, "w") as fp:
            json.dump(self.nodes, fp, indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "IRGraph":
        """Read nn-Meter IR JSON from ``path``.

        Raises:
            ConversionError: the file is missing or is not JSON (names the file).
            IRError: the JSON is not an IR graph.
        """
        from nn_farm.errors import ConversionError

        try:
            with open(path) as fp:
                d = json.load(fp)
        except (OSError, ValueError) as exc:
            raise ConversionError(f"{os.fspath(path)}: not a readable nn-Meter IR JSON file: {exc}") from exc
        try:
            return cls.from_json(d)
        except IRError as exc:
            raise IRError(f"{os.fspath(path)}: {exc}") from exc

    def __repr__(self) -> str:
        return f"IRGraph({len(self.nodes)} nodes, unknown_ops={self.unknown_ops})"
