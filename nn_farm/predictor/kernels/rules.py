"""Fusion rules in nn-Meter's ``detected_fusion_rule.json`` format.

The builder's rule tester writes one entry per test case::

    {"BF_conv_relu": {"obey": true, ...},      # conv then relu run as one kernel
     "BF_dwconv_bn_relu": {"obey": true},      # a chain of more than two ops
     "MON": {"obey": 0}, ...}                  # multiple-outbound-node policy

Only ``obey`` is read; other keys (latencies, test names) are kept for round trips.
Op names are the canonical ops of :mod:`nn_farm.predictor.ir.ops`; framework
spellings (``Relu6``, ``Conv2D``) are accepted too.

MON (what to do when an op's output feeds several ops), as nn-Meter reads it:
    0  an op with more than one consumer fuses with none of them
    1  it may fuse with its first fusible consumer (the others read the fused output)
"""

from __future__ import annotations

import json
import os

from nn_farm.errors import ConfigError
from nn_farm.predictor.ir.ops import ALIASES

#: The default: a TFLite-like mobile CPU backend (TFLite 2.x, XNNPACK). TFLite's
#: converter folds BatchNorm into the conv before it and fuses RELU / RELU6 into
#: CONV_2D, DEPTHWISE_CONV_2D and ADD; HARD_SWISH, MEAN, CONCATENATION and pooling
#: stay separate ops. FULLY_CONNECTED can fuse a RELU too, but nn-Meter's kernel
#: list has no fc-relu predictor, so the relu after an fc stays a relu kernel.
DEFAULT_RULES: dict = {
    "BF_conv_bn": {"obey": True},
    "BF_conv_relu": {"obey": True},
    "BF_conv_relu6": {"obey": True},
    "BF_dwconv_bn": {"obey": True},
    "BF_dwconv_relu": {"obey": True},
    "BF_dwconv_relu6": {"obey": True},
    "BF_bn_relu": {"obey": True},
    "BF_bn_relu6": {"obey": True},
    "BF_add_relu": {"obey": True},
    "BF_add_relu6": {"obey": True},
    "BF_conv_hswish": {"obey": False},
    "BF_bn_hswish": {"obey": False},
    "BF_fc_relu": {"obey": False},
    "MON": {"obey": 0},
}


#: MON's winning case (what the rule tester writes) -> the MON value: case1 (the
#: branching op runs alone) means no fusion across an op with several consumers
#: (0); case2 and case3 fuse it with a consumer (1).
MON_CASES = {"case1": 0, "case2": 1, "case3": 1}


def mon_value(obey, source: str = "<fusion rules>") -> int:
    """MON's ``obey`` as 0/1, from a number or the rule tester's case name."""
    if isinstance(obey, str):
        if obey not in MON_CASES:
            raise ConfigError(f"MON's obey must be 0, 1 or one of {sorted(MON_CASES)}, got {obey!r}",
                              path=source, key="MON")
        return MON_CASES[obey]
    return int(obey or 0)


def _canon(op: str) -> str:
    return ALIASES.get(op, op)


class FusionRules:
    """Which consecutive ops a backend runs as one kernel.

    Args:
        rules: the ``detected_fusion_rule.json`` object.
        source: where the rules came from, for error messages.

    Raises:
        ConfigError: an entry is not ``{"obey": ...}`` (names the key).
    """

    def __init__(self, rules: dict, source: str = "<fusion rules>"):
        if not isinstance(rules, dict):
            raise ConfigError(f"fusion rules must be a JSON object, got {type(rules).__name__}", path=source)
        self.rules = rules
        self.source = source
        self.pairs: dict[tuple[str, str], bool] = {}
        self.chains: dict[tuple[str, ...], bool] = {}
        self.mon = 0
        for key, value in rules.items():
            obey = value.get("obey") if isinstance(value, dict) else value
            if isinstance(value, dict) and "obey" not in value:
                raise ConfigError("a rule needs an 'obey' value", path=source, key=key)
            if key == "MON":
                self.mon = mon_value(obey, source)
            elif key.startswith("BF_"):
                if obey is None:
                    continue  # rule tester could not decide: fall back to "not fusible"
                ops = tuple(_canon(op) for op in key[3:].split("_"))
                if len(ops) < 2:
                    raise ConfigError("a BF rule names at least two ops", path=source, key=key)
                (self.pairs if len(ops) == 2 else self.chains)[ops] = bool(obey)
        # every prefix of an obeyed chain may grow into it
        self._chain_prefixes = {c[:i] for c, ok in self.chains.items() if ok for i in range(2, len(c) + 1)}
        #: (block ops tuple, next op) -> fusible, filled by :meth:`fusible_memo`
        self.fusible_answers: dict[tuple, bool] = {}

    def fusible(self, block: list[str], nxt: str) -> bool:
        """May op ``nxt`` join a block whose ops so far are ``block``?

        The decision looks at ``block[-1]`` and ``nxt``, the two ops that are
        actually adjacent. (nn-Meter compares the block's *first* op with the next
        one, so conv-bn-relu needed a conv->relu rule instead of bn->relu.) An
        explicit chain rule for the whole sequence wins over the pair rule.
        """
        seq = (*block, nxt)
        # nn-Meter's rule files know relu only; a relu6 behaves alike unless a
        # rule names it
        for cand in (seq, tuple("relu" if op == "relu6" else op for op in seq)):
            if cand in self.chains:
                return self.chains[cand]
            if cand in self._chain_prefixes:
                return True
            if cand[-2:] in self.pairs:
                return self.pairs[cand[-2:]]
        return False

    def fusible_memo(self, block: tuple[str, ...], nxt: str) -> bool:
        """:meth:`fusible` for a block given as a tuple, memoised on this object.

        Kernel detection asks the same few questions (``("conv", "bn")`` then
        ``"relu"``?) for every op of every model; the answers depend on the rules
        only, which are not edited after loading.
        """
        key = (block, nxt)
        ok = self.fusible_answers.get(key)
        if ok is None:
            ok = self.fusible_answers[key] = self.fusible(list(block), nxt)
        return ok

    def to_json(self) -> dict:
        """The rules as nn-Meter's ``detected_fusion_rule.json`` object."""
        return self.rules

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w") as fp:
            json.dump(self.rules, fp, indent=2)

    def __repr__(self) -> str:
        fused = sorted("_".join(p) for p, ok in {**self.pairs, **self.chains}.items() if ok)
        return f"FusionRules(MON={self.mon}, fused={fused})"


_default: FusionRules | None = None


def load_fusion_rules(path_or_dict=None) -> FusionRules:
    """Load fusion rules.

    Args:
        path_or_dict: a ``detected_fusion_rule.json`` path, its parsed dict, a
            :class:`FusionRules` (returned as is), or ``None`` for
            :data:`DEFAULT_RULES` (a TFLite-like mobile CPU).

    Returns:
        The rules.

    Raises:
        ConfigError: unreadable file or malformed rules (names the file and key).
    """
    global _default
    if path_or_dict is None:
        if _default is None:  # built once: NAS loops call detect_kernels thousands of times
            _default = FusionRules(dict(DEFAULT_RULES), source="<default TFLite CPU rules>")
        return _default
    if isinstance(path_or_dict, FusionRules):
        return path_or_dict
    if isinstance(path_or_dict, dict):
        return FusionRules(path_or_dict)
    path = os.fspath(path_or_dict)
    try:
        with open(path) as fp:
            rules = json.load(fp)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read fusion rules: {exc}", path=path) from exc
    return FusionRules(rules, source=path)
