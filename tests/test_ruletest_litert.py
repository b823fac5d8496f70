"""Real rule tests on this host's LiteRT CPU device (embedded agent, real Ray, real converter).

Every verdict is checked against what the runtime really runs, read independently
from the converted files with ``model_ops``: a block that runs fewer ops than its
two operators alone was fused (the converter folded BN into the depthwise conv, a
ReLU into the conv as its fused activation, a repeated ReLU away); one that runs
all of them was not.

The pairs in the default-suite test are ones whose latency verdict is not left to
chance on this device: both operators cost enough that a fusion saves clearly
more (or less) than alpha * min(T1, T2). conv_relu is not among them with the
default config: a ReLU costs ~1% of the 3x3 conv before it, inside the conv's own
session-to-session drift, so its verdict comes with a low confidence (see the
slow test of the full default suite, which reports every confidence).
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap

import pytest
import yaml

from nn_farm import cli
from nn_farm.builder.convert import model_ops
from nn_farm.builder.ruletest.run import MAX_ROUNDS, ruletest
from nn_farm.builder.workspace import create_workspace
from nn_farm.errors import BuilderError

#: Pairs with a clear verdict on a 1-thread LiteRT CPU at nn-Meter's default sizes.
PAIRS = ["dwconv_relu", "dwconv_bn", "relu_relu", "avgpool_relu", "dwconv_dwconv", "dwconv_add", "relu_add"]

PACKAGE = {
    "rt_custom/__init__.py": "",
    "rt_custom/ops.py": """
        from nn_farm.builder.models.base import BaseOperator


        class Swish(BaseOperator):
            \"\"\"x * sigmoid(x): the TFLite converter has no fused form of it.\"\"\"

            name = "silu"

            def get_model(self):
                from nn_farm._compat import import_tensorflow

                return import_tensorflow().keras.layers.Activation("swish")
    """,
    "rt_custom/cases.py": """
        from nn_farm.builder.models.spec import ModelSpec, Node
        from nn_farm.builder.ruletest import BaseTestCase


        class DwconvReluRelu(BaseTestCase):
            \"\"\"Does a second ReLU after a fused dwconv-relu still run?\"\"\"

            name = "DRR"
            cases = {"case1": ["dwconv_relu"], "case2": ["dwconv_relu", "relu"]}
            true_case = "case2"
            deps = {"BF_dwconv_relu": True}

            def _chain(self, name, ops) -> ModelSpec:
                nodes = tuple(Node(op, ("x0",) if i == 0 else (str(i - 1),)) for i, op in enumerate(ops))
                return ModelSpec(f"DRR_{name}", (tuple(self.input_shape),), nodes, self.config)

            def _model_block(self) -> ModelSpec:
                return self._chain("block", ["dwconv", "relu", "relu"])

            def _model_dwconv_relu(self) -> ModelSpec:
                return self._chain("dwconv_relu", ["dwconv", "relu"])
    """,
}


def _write_package(root, module="rt_custom"):
    for rel, text in PACKAGE.items():
        rel = rel.replace("rt_custom", module)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))


def _register(root, home):
    """Register a silu operator (swish is builtin now) and the DRR test case under NN_FARM_HOME=home."""
    from nn_farm.builder import registry

    metas = {
        "operator": {"builtin_name": "silu", "implement": "tensorflow", "class_module": "rt_custom.ops",
                     "class_name": "Swish"},
        "testcase": {"builtin_name": "DRR", "class_module": "rt_custom.cases",
                     "class_name": "DwconvReluRelu"},
    }
    for kind, meta in metas.items():
        path = home / f"{kind}.yaml"
        path.write_text(yaml.safe_dump({**meta, "package_location": str(root)}))
        registry.register(kind, path)


def _workspace(path, pairs, others=()):
    ws = create_workspace(path, backend="host-cpu-litert")
    config = yaml.safe_load(ws.ruletest_config.read_text())
    config["BASIC_TESTCASES"], config["OTHER_TESTCASES"] = list(pairs), list(others)
    ws.ruletest_config.write_text(yaml.safe_dump(config))
    return ws


@pytest.fixture(scope="module")
def custom_home(tmp_path_factory):
    """NN_FARM_HOME with the custom operator and test case registered, for this module.

    Ray's workers inherit the environment of the Ray that this process starts, so
    a Ray left running by an earlier test (without NN_FARM_HOME) is shut down first.
    """
    import ray

    from nn_farm.builder.models.registry import unregister_operator

    if ray.is_initialized():
        ray.shutdown()
    root = tmp_path_factory.mktemp("custom")
    saved = os.environ.get("NN_FARM_HOME")
    os.environ["NN_FARM_HOME"] = str(root / "home")
    (root / "home").mkdir()
    _write_package(root / "pkg")
    try:
        _register(root / "pkg", root / "home")
        yield root
    finally:
        if ray.is_initialized():
            ray.shutdown()
        unregister_operator("silu", "tensorflow")
        if saved is None:
            os.environ.pop("NN_FARM_HOME", None)
        else:
            os.environ["NN_FARM_HOME"] = saved


@pytest.fixture(scope="module")
def subset_run(custom_home, tmp_path_factory):
    """One real rule test over PAIRS, a pair with the custom operator, MON and the custom case."""
    ws = _workspace(tmp_path_factory.mktemp("ws") / "ws", PAIRS + ["dwconv_silu"], ["MON", "DRR"])
    report = ruletest(ws.root, progress=False)
    return ws, report


def _ops(origin, case):
    return {key: model_ops(info["model"]) for key, info in origin[case].items()}


def test_verdicts_match_what_the_runtime_runs(subset_run):
    ws, report = subset_run
    origin = json.loads((ws.fusion_rule_test / "origin_testcases.json").read_text())
    rules = json.loads((ws.fusion_rule_test / "detected_fusion_rule.json").read_text())
    assert rules == report.rules
    for pair in PAIRS + ["dwconv_silu"]:
        name = f"BF_{pair}"
        ops = _ops(origin, name)
        k1, k2 = [k for k in ops if k != "block"]
        structurally_fused = len(ops["block"]) < len(ops[k1]) + len(ops[k2])
        assert rules[name]["obey"] is structurally_fused, (name, ops, rules[name])
        assert 0.5 <= rules[name]["confidence"] <= 1.0 and 1 <= rules[name]["rounds"] <= 1 + MAX_ROUNDS
        assert set(rules[name]["latency"]) == {"block", k1, k2, "ops"}
    # the independent facts these verdicts stand for
    assert _ops(origin, "BF_dwconv_bn")["block"] == ["DEPTHWISE_CONV_2D"]
    assert _ops(origin, "BF_dwconv_silu")["block"][0] == "DEPTHWISE_CONV_2D"
    assert len(_ops(origin, "BF_dwconv_silu")["block"]) > 1


def test_mon_and_the_custom_test_case_with_deps(subset_run):
    ws, report = subset_run
    origin = json.loads((ws.fusion_rule_test / "origin_testcases.json").read_text())
    rules = report.rules
    names = list(rules)
    assert names.index("BF_dwconv_relu") < names.index("MON")
    assert names.index("BF_dwconv_relu") < names.index("DRR")  # dependency order
    assert rules["BF_dwconv_relu"]["obey"] is True
    # The converter drops the repeated ReLU: the DRR block runs exactly what the
    # fused dwconv-relu model runs, so its latency is case1's, not case2's.
    drr = _ops(origin, "DRR")
    assert drr["block"] == drr["dwconv_relu"] == ["DEPTHWISE_CONV_2D"]
    assert rules["DRR"]["obey"] == "case1"
    assert set(rules["DRR"]["latency"]) == {"block", "dwconv_relu", "relu", "case1", "case2"}
    assert origin["DRR"]["relu"]["shapes"] == [[28, 28, 64]]  # a key without a method: the operator
    assert rules["MON"]["obey"] in ("case1", "case2", "case3")
    assert set(origin["MON"]) == {"block", "relu_relu", "relu_dwconv", "dwconv", "dwconv_relu_relu",
                                  "dwconv_relu"}


def test_profiled_results_in_nn_meter_form(subset_run):
    ws, report = subset_run
    profiled = json.loads((ws.fusion_rule_test / "profiled_results.json").read_text())
    origin = json.loads((ws.fusion_rule_test / "origin_testcases.json").read_text())
    assert set(profiled) == set(origin)
    entry = profiled["BF_dwconv_relu"]["block"]
    assert set(entry) == {"model", "shapes", "latency"}
    avg, std = (float(x) for x in entry["latency"].split("+-"))
    assert avg > 0 and std >= 0
    assert report.models == sum(len(m) for m in origin.values())
    assert report.measured > 0


def test_a_second_run_measures_nothing(subset_run):
    ws, first = subset_run
    again = ruletest(ws.root, progress=False)
    assert again.measured == 0
    assert again.skipped == first.measured + first.skipped
    assert again.remeasured == first.remeasured
    assert again.rules == first.rules


def test_a_moved_package_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from nn_farm.builder import registry

    monkeypatch.setenv("NN_FARM_HOME", str(tmp_path / "home"))
    pkg = tmp_path / "pkg"
    _write_package(pkg, "rt_moved")
    meta = tmp_path / "drr.yaml"
    meta.write_text(yaml.safe_dump({"builtin_name": "DRR", "class_module": "rt_moved.cases",
                                    "class_name": "DwconvReluRelu", "package_location": str(pkg)}))
    registry.register("testcase", meta)
    ws = _workspace(tmp_path / "ws", ["dwconv_relu"], ["DRR"])
    shutil.rmtree(pkg / "rt_moved")  # the package moved after registration
    assert cli.main(["ruletest", "--workspace", str(ws.root), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "rt_moved.cases" in err and str(pkg) in err and "DRR" in err
    assert not (ws.fusion_rule_test / "origin_testcases.json").exists()


def test_an_unknown_operator_in_a_pair_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("NN_FARM_HOME", str(tmp_path / "home"))
    ws = _workspace(tmp_path / "ws", ["dwconv_nosuchop"])
    with pytest.raises(BuilderError) as info:
        ruletest(ws.root, progress=False)
    assert "nosuchop" in str(info.value)
    assert not (ws.fusion_rule_test / "origin_testcases.json").exists()


@pytest.mark.slow
def test_the_full_default_rule_test(tmp_path):
    """nn-Meter's 79 default pairs and MON, with every structural fact beside its verdict."""
    ws = create_workspace(tmp_path / "ws", backend="host-cpu-litert")
    report = ruletest(ws.root, progress=False)
    origin = json.loads((ws.fusion_rule_test / "origin_testcases.json").read_text())
    assert len(report.rules) == 80
    for name in PAIRS:
        assert f"BF_{name}" in report.rules
    disagree = []
    for name, rule in report.rules.items():
        if not name.startswith("BF_") or rule["obey"] is None:
            continue
        ops = _ops(origin, name)
        k1, k2 = [k for k in ops if k != "block"]
        fused = len(ops["block"]) < len(ops[k1]) + len(ops[k2])
        if rule["obey"] is not fused and rule["confidence"] >= 0.99:
            disagree.append((name, rule["obey"], rule["confidence"], ops))
    for pair in PAIRS:
        assert report.rules[f"BF_{pair}"]["obey"] is (
            len(_ops(origin, f"BF_{pair}")["block"]) < sum(len(v) for k, v in _ops(origin, f"BF_{pair}").items()
                                                           if k != "block"))
    print("confident verdicts that differ from the op count:", disagree)
