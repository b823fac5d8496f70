"""Which test cases a rule test runs: basic pairs, MON and registered ones, in dependency order.

A test case is a handful of models and a question about their latencies:

    basic "BF_conv_relu"   models block, conv, relu; cases {"ops": ["conv", "relu"]}
                           fused when T_conv + T_relu - T_block > alpha * min(T_conv, T_relu)
    "MON"                  models block + the partial models of each case; the case whose
                           sum is closest to T_block says how the device splits the block
    registered "MyCase"    a :class:`BaseTestCase` subclass (nn-Meter's keys: ``name``,
                           ``cases``, ``true_case``, ``deps`` and ``_model_<key>`` methods)

``deps`` maps another test case to the verdict it must have for this one to be
tested at all (MON needs ``BF_dwconv_relu`` fused); :func:`dependency_order` sorts
test cases so every dependency is decided first.

Example:
    >>> from nn_farm.builder.config import default_ruletest_config
    >>> config = default_ruletest_config()
    >>> config["BASIC_TESTCASES"], config["OTHER_TESTCASES"] = ["conv_relu"], ["MON"]
    >>> [c.name for c in load_testcases(config, "tensorflow")]
    ['BF_conv_relu', 'BF_dwconv_relu', 'MON']
"""

from __future__ import annotations

import graphlib
import hashlib
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

from nn_farm.builder.models import testcases as tc
from nn_farm.errors import BuilderError, ConfigError

log = logging.getLogger(__name__)

__all__ = [
    "BASIC",
    "MON",
    "CUSTOM",
    "BaseTestCase",
    "TestCase",
    "basic_testcase",
    "mon_testcase",
    "custom_testcase",
    "load_testcases",
    "dependency_order",
    "model_config",
]

BASIC, MON, CUSTOM = "basic", "mon", "custom"

#: Rule-test keys that do not change any generated model (left out of file names,
#: so changing EMP_ALPHA or the case list never regenerates a model).
_NON_MODEL_KEYS = ("DETAIL", "IMPLEMENT", "EMP_ALPHA", "BASIC_TESTCASES", "OTHER_TESTCASES",
                   "WORKSPACE", "MODEL_DIR")


def model_config(config: Mapping[str, Any]) -> dict:
    """The part of a rule-test config that shapes the models (what generators get)."""
    return {k: v for k, v in config.items() if k not in _NON_MODEL_KEYS}


@dataclass(frozen=True)
class TestCase:
    """One test case, described without building anything.

    Attributes:
        name: ``BF_<op1>_<op2>``, ``MON`` or a registered test case's name.
        kind: :data:`BASIC`, :data:`MON` or :data:`CUSTOM`.
        models: model key -> input shapes (nn-Meter's ``"shapes"``), ``block`` first.
        cases: case name -> the model keys whose latencies add up to that case.
        true_case: the case assumed unless another fits better (MON, custom).
        deps: test case name -> the verdict it must have for this one to run.
        source: custom test cases: a hash of the class's source, so an edited
            class gets new model files.
    """

    __test__ = False  # not a pytest class, despite the name

    name: str
    kind: str
    models: dict[str, list[list[int]]]
    cases: dict[str, list[str]]
    true_case: str = ""
    deps: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def ops(self) -> tuple[str, str]:
        """A basic test case's two operators."""
        if self.kind != BASIC:
            raise BuilderError(f"test case {self.name!r} is not a basic pair")
        op1, op2 = self.name.removeprefix("BF_").split("_")
        return op1, op2

    def model_name(self, key: str) -> str:
        """The generator's name of one model: ``BF_conv_relu/block``, ``MON/relu_dwconv``."""
        return f"{self.name}/{key}"


class BaseTestCase:
    """Base class of a registered (customized) test case, nn-Meter's ``BaseTestCase`` API.

    Subclasses set ``name``, ``cases`` (case -> model keys), ``true_case`` and
    ``deps``, and define ``_model_block`` plus ``_model_<key>`` for every key
    that is not a single operator (a key with no method is built as that
    operator alone, on ``input_shape``). A ``_model_*`` method returns a
    :class:`~nn_farm.builder.models.spec.ModelSpec` (built in either
    implementation) or, as in nn-Meter, ``(model, shapes)`` with a Keras model or
    torch module. A method annotated ``-> ModelSpec`` is called in the driver to
    read its input shapes for ``origin_testcases.json``; the others run only in the
    generator task, and ``shapes`` (key -> input shapes) may declare theirs
    (default ``[input_shape]``).

    Attributes set by :meth:`load_config`: ``input_shape`` (default
    ``[HW, HW, CIN]``), ``kernel_size``, ``cout``, ``padding``, ``config``.
    """

    name = ""
    cases: dict[str, list[str]] | None = None
    true_case = ""
    deps: dict[str, Any] = {}
    input_shape: list[int] | None = None
    implement: str | None = None
    shapes: dict[str, list[list[int]]] = {}

    def __init__(self, config: Mapping[str, Any], **kwargs):
        self._kwargs = kwargs
        self.config = dict(config)
        self.load_config()

    def load_config(self) -> None:
        config = self.config
        if not self.input_shape:
            self.input_shape = [config["HW"], config["HW"], config["CIN"]]
        self.kernel_size = config["KERNEL_SIZE"]
        self.cout = config["COUT"]
        self.padding = config["PADDING"]

    def _model_block(self):
        raise NotImplementedError(f"test case {self.name!r} defines no _model_block")


def basic_testcase(pair: str, config: Mapping[str, Any], implement: str) -> TestCase:
    """The basic test case of ``"<op1>_<op2>"`` from BASIC_TESTCASES.

    Raises:
        ConfigError: not two operator names joined by '_', or a shape/config problem
            (names BASIC_TESTCASES and the pair).
        BuilderError: an unknown operator.
    """
    ops = pair.split("_")
    if len(ops) != 2 or not all(ops):
        raise ConfigError(f"{pair!r} is not '<op1>_<op2>'", key="BASIC_TESTCASES")
    try:
        specs = tc.basic_fusion_specs(ops[0], ops[1], model_config(config), implement)
    except ConfigError as exc:
        raise ConfigError(f"test case {pair!r}: {exc}", key=exc.key or "BASIC_TESTCASES") from exc
    except BuilderError as exc:
        raise BuilderError(f"BASIC_TESTCASES: test case {pair!r}: {exc}") from exc
    models = {key: [list(s) for s in spec.input_shapes] for key, spec in specs.items()}
    alias1, alias2 = [k for k in specs if k != "block"]
    return TestCase(name=f"BF_{pair}", kind=BASIC, models=models, cases={"ops": [alias1, alias2]})


def mon_testcase(config: Mapping[str, Any]) -> TestCase:
    """nn-Meter's multiple-outbound-nodes test case."""
    specs = tc.mon_specs(model_config(config))
    models = {key: [list(s) for s in spec.input_shapes] for key, spec in specs.items()}
    return TestCase(name=tc.MON_NAME, kind=MON, models=models,
                    cases={k: list(v) for k, v in tc.MON_CASES.items()},
                    true_case=tc.MON_TRUE_CASE, deps=dict(tc.MON_DEPS))


def load_custom_class(name: str) -> type:
    """Import a registered test case's class (and the customized operators it may use).

    Raises:
        ConfigError: ``name`` is not registered, or its package no longer imports.
    """
    from nn_farm.builder import registry

    if registry.get_meta("testcase", name) is None:
        known = ", ".join(["MON"] + [n for n, custom in registry.listing("testcase") if custom])
        raise ConfigError(f"unknown test case {name!r}: neither MON nor registered "
                          f"(known: {known}); register it with `nn-farm register --testcase "
                          f"META_YAML`", key="OTHER_TESTCASES")
    registry.activate()
    return registry.load_class("testcase", name)


def custom_testcase(name: str, config: Mapping[str, Any], implement: str) -> TestCase:
    """Describe a registered test case from its class's attributes (nothing is built).

    Raises:
        ConfigError: not registered, or the class lacks ``cases``/``true_case`` or
            names a ``true_case`` or dependency that makes no sense.
    """
    cls = load_custom_class(name)
    where = f"test case {name!r} ({cls.__module__}.{cls.__name__})"
    cases = getattr(cls, "cases", None)
    if not isinstance(cases, dict) or not cases or not all(
            isinstance(v, (list, tuple)) and v for v in cases.values()):
        raise ConfigError(f"{where}: 'cases' must map case names to lists of model keys",
                          key="OTHER_TESTCASES")
    true_case = getattr(cls, "true_case", "")
    if true_case not in cases:
        raise ConfigError(f"{where}: true_case {true_case!r} is not one of {sorted(cases)}",
                          key="OTHER_TESTCASES")
    deps = dict(getattr(cls, "deps", {}) or {})
    instance = cls(dict(config))
    input_shape = list(instance.input_shape)
    declared = dict(getattr(cls, "shapes", {}) or {})
    models: dict[str, list[list[int]]] = {}
    for key in ["block"] + [k for ks in cases.values() for k in ks]:
        if key in models:
            continue
        if key in declared:
            models[key] = [list(s) for s in declared[key]]
        elif key == "block" or hasattr(instance, f"_model_{key}"):
            shapes = _spec_shapes(instance, key)
            models[key] = shapes if shapes is not None else [input_shape]
        else:  # a single operator on the test case's input, as nn-Meter falls back to
            try:
                spec = tc.operator_spec(key, input_shape, model_config(config), implement)
            except BuilderError as exc:
                raise ConfigError(f"{where}: model key {key!r} has no _model_{key} method and "
                                  f"is no operator ({exc})", key="OTHER_TESTCASES") from exc
            models[key] = [list(s) for s in spec.input_shapes]
    try:
        source = hashlib.sha256(inspect.getsource(cls).encode()).hexdigest()[:10]
    except (OSError, TypeError):
        source = ""
    return TestCase(name=name, kind=CUSTOM, models=models,
                    cases={k: list(v) for k, v in cases.items()}, true_case=true_case,
                    deps=deps, source=source)


def _spec_shapes(instance, key: str):
    """Input shapes of a ``_model_<key>`` that returns a ModelSpec; None for framework models.

    Only methods that return a ModelSpec are cheap to call here; a method that
    builds a framework model is left for the generator task.
    """
    from nn_farm.builder.models.spec import ModelSpec

    method = getattr(instance, f"_model_{key}")
    hint = inspect.signature(method).return_annotation
    if hint is inspect.Signature.empty or "ModelSpec" not in str(hint):
        return None
    spec = method()
    return [list(s) for s in spec.input_shapes] if isinstance(spec, ModelSpec) else None


def load_testcases(config: Mapping[str, Any], implement: str) -> list[TestCase]:
    """Every test case of a rule-test config, dependencies first.

    BASIC_TESTCASES pairs become basic cases; OTHER_TESTCASES names ``MON`` or
    registered test cases. A dependency on a basic pair that is not listed is
    added (MON needs ``BF_dwconv_relu``); a dependency on anything else must be
    listed.

    Args:
        config: a checked rule-test config (``builder_config.get_module("ruletest")``).
        implement: ``"tensorflow"`` or ``"torch"``: the models' framework.

    Raises:
        ConfigError: a bad pair, an unknown or broken test case, a missing or
            circular dependency (each names the config key).
    """
    from nn_farm.builder.models.registry import BUILTIN_OPERATORS

    pairs = list(config.get("BASIC_TESTCASES") or [])
    if any(op not in BUILTIN_OPERATORS for pair in pairs for op in pair.split("_")):
        from nn_farm.builder import registry

        registry.activate()  # customized operators, from their registered packages
    found: dict[str, TestCase] = {}
    for pair in pairs:
        case = basic_testcase(pair, config, implement)
        found.setdefault(case.name, case)
    for name in config.get("OTHER_TESTCASES") or []:
        if name in found:
            continue
        found[name] = mon_testcase(config) if name == tc.MON_NAME else custom_testcase(name, config, implement)
    pending = [c for c in found.values()]
    while pending:
        case = pending.pop()
        for dep in case.deps:
            if dep in found:
                continue
            if dep.startswith("BF_"):
                log.info("test case %s depends on %s: adding it", case.name, dep)
                found[dep] = basic_testcase(dep[3:], config, implement)
                pending.append(found[dep])
            else:
                raise ConfigError(f"test case {case.name!r} depends on {dep!r}, which is not in "
                                  f"OTHER_TESTCASES", key="OTHER_TESTCASES")
    return dependency_order(found.values())


def dependency_order(testcases) -> list[TestCase]:
    """Sort test cases so each comes after the ones in its ``deps`` (stable otherwise).

    Raises:
        ConfigError: the dependencies form a cycle.
    """
    by_name = {c.name: c for c in testcases}
    sorter = graphlib.TopologicalSorter()
    for name, case in by_name.items():
        sorter.add(name, *[d for d in case.deps if d in by_name])
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError as exc:
        raise ConfigError(f"test case dependencies form a cycle: {exc.args[1]}",
                          key="OTHER_TESTCASES") from exc
    # static_order is a valid order; prefer the config's order among equals.
    position = {name: i for i, name in enumerate(by_name)}
    done: set[str] = set()
    result: list[TestCase] = []
    remaining = sorted(order, key=position.__getitem__)
    while remaining:
        for name in remaining:
            if all(d in done or d not in by_name for d in by_name[name].deps):
                result.append(by_name[name])
                done.add(name)
                remaining.remove(name)
                break
    return result
