"""The fusion rule tester: test cases, noise-aware detection, and real runs on this host's LiteRT CPU.

The real runs check every verdict against what the TFLite converter really made of
the models, read independently from the .tflite files (``model_ops``): a block
that runs fewer ops than its two operators alone was fused.
"""

from __future__ import annotations

import dataclasses
import math
import os

import pytest

from nn_farm.builder.config import default_ruletest_config
from nn_farm.builder.ruletest import detect, io
from nn_farm.builder.ruletest.cases import BASIC, TestCase, dependency_order, load_testcases
from nn_farm.builder.ruletest import generate
from nn_farm.builder.ruletest.run import remeasure_policy
from nn_farm.errors import ConfigError
from nn_farm.farm.measurement import Measurement
from nn_farm.farm.policy import MeasurePolicy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- test cases


def _config(pairs, others=()):
    config = default_ruletest_config()
    config["BASIC_TESTCASES"], config["OTHER_TESTCASES"] = list(pairs), list(others)
    return config


def test_mon_pulls_in_its_dependency_first():
    cases = load_testcases(_config(["conv_relu"], ["MON"]), "tensorflow")
    assert [c.name for c in cases] == ["BF_conv_relu", "BF_dwconv_relu", "MON"]
    mon = cases[-1]
    assert mon.deps == {"BF_dwconv_relu": True} and mon.true_case == "case1"
    assert set(mon.models) == {"block", "relu_relu", "relu_dwconv", "dwconv", "dwconv_relu_relu",
                               "dwconv_relu"}
    same = load_testcases(_config(["relu_relu"]), "torch")[0]
    assert same.cases == {"ops": ["relu_1", "relu_2"]}  # nn-Meter's aliases
    fc = load_testcases(_config(["fc_relu"]), "tensorflow")[0]
    assert fc.models["block"] == [[428]]  # LAYERS_1D input


def test_dependency_order_and_cycles():
    def case(name, deps):
        return TestCase(name, "custom", {"block": [[1]]}, {"a": ["block"]}, "a", deps)

    ordered = dependency_order([case("C", {"B": True}), case("B", {"A": True}), case("A", {})])
    assert [c.name for c in ordered] == ["A", "B", "C"]
    with pytest.raises(ConfigError, match="cycle"):
        dependency_order([case("A", {"B": True}), case("B", {"A": True})])


def test_bad_test_case_names_are_config_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("NN_FARM_HOME", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_testcases(_config(["conv_relu_bn"]), "tensorflow")
    assert info.value.key == "BASIC_TESTCASES" and "conv_relu_bn" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_testcases(_config([], ["NoSuchCase"]), "tensorflow")
    assert info.value.key == "OTHER_TESTCASES" and "NoSuchCase" in str(info.value)


def test_jobs_name_the_model_and_change_with_the_config(tmp_path):
    cases = load_testcases(_config(["conv_relu"]), "tensorflow")
    jobs = generate.testcase_jobs(cases, _config(["conv_relu"]), "tensorflow", "tflite", tmp_path)
    assert sorted(j.meta["model"] for j in jobs) == ["block", "conv", "relu"]
    assert all(j.name.startswith("BF_conv_relu/") and j.group == "BF_conv_relu" for j in jobs)
    other = _config(["conv_relu"])
    other["HW"] = 14
    renamed = generate.testcase_jobs(load_testcases(other, "tensorflow"), other, "tensorflow", "tflite", tmp_path)
    assert not {j.name for j in jobs} & {j.name for j in renamed}
    # EMP_ALPHA and DETAIL do not change any model
    alpha = _config(["conv_relu"])
    alpha["EMP_ALPHA"], alpha["DETAIL"] = 0.9, False
    same = generate.testcase_jobs(cases, alpha, "tensorflow", "tflite", tmp_path)
    assert [j.name for j in same] == [j.name for j in jobs]


# ---------------------------------------------------------------- detection


def _m(mean, std=0.0, runs=100, state="fast", factor=1.0):
    return Measurement(mean_ms=mean, trimmed_mean_ms=mean, std_ms=std, p10_ms=mean - 1.2816 * std,
                       p90_ms=mean + 1.2816 * std, runs=runs, kept_runs=runs, speed_state=state,
                       speed_factor=factor)


def _basic(t1, t2, tb):
    case = TestCase("BF_a_b", BASIC, {"block": [[1]], "a": [[1]], "b": [[1]]}, {"ops": ["a", "b"]})
    est = {"a": detect.estimate([_m(t1)]), "b": detect.estimate([_m(t2)]), "block": detect.estimate([_m(tb)])}
    return detect.basic_verdict(case, est, 0.5)


def test_basic_rule_and_its_confidence():
    fused = _basic(1.0, 1.0, 1.0)  # block costs one op: 1 + 1 - 1 = 1 > 0.5
    assert fused.obey is True and fused.margin_ms == pytest.approx(0.5)
    assert fused.confidence > 0.999 and fused.z > 10
    apart = _basic(1.0, 1.0, 2.0)
    assert apart.obey is False and apart.margin_ms == pytest.approx(-0.5)
    # a margin inside the drift floor (2% of each latency) is not to be trusted
    close = _basic(1.0, 1.0, 1.49)
    assert close.obey is True and 0.5 < close.confidence < 0.9 and close.z < 2
    assert fused.latency["ops"].startswith("2.0 +- ")


def test_noise_floors_follow_the_speed_state():
    fast = detect.estimate([_m(10.0, 0.0)])
    slow = detect.estimate([_m(10.0, 0.0, state="slow", factor=1.3)])
    ungated = detect.estimate([_m(10.0, 0.0, state="ungated")])
    assert fast.u_ms == pytest.approx(0.2)
    assert slow.u_ms == pytest.approx(3.0) and slow.slow
    assert ungated.u_ms == pytest.approx(0.8)
    spread = detect.estimate([_m(10.0, 5.0, runs=25)])  # sem 1.0 beside a 0.2 floor
    assert spread.u_ms == pytest.approx(math.hypot(1.0, 0.2), rel=1e-3)
    # a few stalled runs move the mean, not the trimmed mean or the p10-p90 width
    stalled = Measurement(mean_ms=14.0, trimmed_mean_ms=10.0, std_ms=20.0, p10_ms=9.9, p90_ms=10.1,
                          runs=100, kept_runs=100, speed_state="fast")
    est = detect.estimate([stalled])
    assert est.mean_ms == 10.0 and est.std_ms == 20.0 and est.u_ms < 0.21


def test_pooling_narrows_agreeing_rounds_and_widens_disagreeing_ones():
    one = detect.estimate([_m(10.0)])
    agree = detect.estimate([_m(10.0), _m(10.0)])
    assert agree.u_ms == pytest.approx(one.u_ms / math.sqrt(2)) and agree.rounds == 2
    disagree = detect.estimate([_m(10.0), _m(12.0)])
    assert disagree.mean_ms == pytest.approx(11.0, rel=0.02)
    assert disagree.u_ms > agree.u_ms * 3  # Birge ratio: the rounds do not agree


def test_three_sessions_that_disagree_take_the_median():
    """One bad session (20% slow, as CI saw) cannot carry a verdict once re-measured."""
    pooled = detect.estimate([_m(12.0), _m(10.0), _m(10.1)])
    assert pooled.mean_ms == pytest.approx(10.1) and pooled.rounds == 3
    assert pooled.u_ms > detect.estimate([_m(10.0), _m(10.1)]).u_ms


def test_a_slow_phase_inside_a_measurement_widens_its_uncertainty():
    import random

    rng = random.Random(1)
    # 300 runs: the first 100 in a 20% slow phase; the p10-p90 width alone barely shows it.
    samples = [(12.0 if i < 100 else 10.0) + rng.gauss(0, 0.05) for i in range(300)]
    drifted = Measurement(samples_ms=samples, kept=[True] * 300, speed_state="fast").compute_stats()
    samples = samples[:]
    rng.shuffle(samples)  # the same runs in no time order: nothing to see
    mixed = Measurement(samples_ms=samples, kept=[True] * 300, speed_state="fast").compute_stats()
    assert detect.estimate([drifted]).u_ms > 1.5 * detect.estimate([mixed]).u_ms


def test_a_session_in_a_slow_mode_is_uncertain_by_its_gap():
    """Seen here: one reshape+concat block ran a whole session at 0.035 ms over a 0.019 ms
    floor, and every other session at the floor; only the minimum showed it."""
    slow_mode = Measurement(mean_ms=0.0346, trimmed_mean_ms=0.0346, median_ms=0.0346, min_ms=0.0192,
                            std_ms=0.009, p10_ms=0.0340, p90_ms=0.0352, runs=1271, kept_runs=1271,
                            speed_state="fast")
    usual = dataclasses.replace(slow_mode, mean_ms=0.0196, trimmed_mean_ms=0.0196, median_ms=0.0195,
                                min_ms=0.0190, p10_ms=0.0192, p90_ms=0.0200)
    assert detect.estimate([slow_mode]).u_ms >= (0.0346 - 0.0192) / 2
    assert detect.estimate([usual]).u_ms < 0.001  # 3% above its minimum: the drift floor only


def test_confidence_has_heavy_tails():
    # |margin| = 3 u: a normal model says 99.87%; one bad session in a few dozen says otherwise.
    assert 0.95 < detect._confidence(3.0) < detect.CONFIDENCE_REQUIRED < detect._confidence(5.0)
    assert detect._confidence(0.0) == pytest.approx(0.5) and detect._confidence(math.inf) == 1.0


def _pair(name):
    return TestCase(name, BASIC, {"block": [[1]], "a": [[1]], "b": [[1]]}, {"ops": ["a", "b"]})


def _pair_estimates(t1, t2, tb):
    return {"a": detect.estimate([_m(t1)]), "b": detect.estimate([_m(t2)]), "block": detect.estimate([_m(tb)])}


def test_a_verdict_inside_the_noise_keeps_its_prior():
    """Below the required confidence the sign is a coin toss between runs: the prior stands."""
    cases = [_pair("BF_conv_relu"), _pair("BF_relu_add"), _pair("BF_a_b")]
    estimates = {"BF_conv_relu": _pair_estimates(1.0, 1.0, 1.52),   # leans "not fused"; the default rule says fused
                 "BF_relu_add": _pair_estimates(1.0, 1.0, 1.48),    # leans "fused"; no default rule: not fused
                 "BF_a_b": _pair_estimates(1.0, 1.0, 1.0)}          # clear: the measurement decides
    verdicts = detect.analyze(cases, estimates, 0.5, required=0.99)
    conv_relu, relu_add, clear = (verdicts[c.name] for c in cases)
    assert conv_relu.prior and conv_relu.obey is True and conv_relu.measured is False
    assert relu_add.prior and relu_add.obey is False and relu_add.measured is True
    assert not clear.prior and clear.obey is True and clear.measured is None
    assert conv_relu.confidence < 0.99 and clear.confidence > 0.99
    rules = io.detected_rules(verdicts, {}, detail=False)
    assert rules["BF_relu_add"] == {**rules["BF_relu_add"], "obey": False, "prior": True, "measured_obey": True}
    assert "prior" not in rules["BF_a_b"]
    # without a bar, every verdict takes the measurement's sign (nn-Meter's behaviour)
    assert detect.analyze(cases, estimates, 0.5)["BF_relu_add"].obey is True


def test_a_lean_against_the_prior_measured_in_every_round_has_a_lower_bar():
    cases = [_pair("BF_relu_add")]  # no default rule: its prior is "not fused"
    estimates = {"BF_relu_add": _pair_estimates(1.0, 1.0, 1.38)}  # leans "fused", 0.97 sure
    strict = detect.analyze(cases, estimates, 0.5, required=detect.CONFIDENCE_REQUIRED)["BF_relu_add"]
    assert detect.CONFIDENCE_AFTER_ROUNDS < strict.confidence < detect.CONFIDENCE_REQUIRED
    assert strict.prior and strict.obey is False
    after = detect.analyze(cases, estimates, 0.5, required=detect.CONFIDENCE_REQUIRED,
                           all_rounds=["BF_relu_add"])["BF_relu_add"]
    assert not after.prior and after.obey is True and after.confidence == strict.confidence
    # a weaker lean keeps the prior even then
    estimates = {"BF_relu_add": _pair_estimates(1.0, 1.0, 1.47)}
    weak = detect.analyze(cases, estimates, 0.5, required=detect.CONFIDENCE_REQUIRED,
                          all_rounds=["BF_relu_add"])["BF_relu_add"]
    assert weak.confidence < detect.CONFIDENCE_AFTER_ROUNDS and weak.prior and weak.obey is False


def test_only_verdicts_leaning_against_their_prior_are_measured_again():
    from nn_farm.builder.ruletest.run import _contested, _open

    cases = [_pair("BF_conv_relu"), _pair("BF_relu_add"), _pair("BF_a_b")]
    estimates = {"BF_conv_relu": _pair_estimates(1.0, 1.0, 1.52),   # leans "not fused"; its prior: fused
                 "BF_relu_add": _pair_estimates(1.0, 1.0, 1.52),    # leans "not fused"; its prior too
                 "BF_a_b": _pair_estimates(1.0, 1.0, 1.0)}          # clear
    verdicts = detect.analyze(cases, estimates, 0.5, required=detect.CONFIDENCE_REQUIRED)
    assert set(_open(verdicts, detect.CONFIDENCE_REQUIRED)) == {"BF_conv_relu", "BF_relu_add"}
    assert [n for n, v in verdicts.items() if _contested(v)] == ["BF_conv_relu"]


def test_case_verdicts_and_unmet_dependencies():
    mon = load_testcases(_config([], ["MON"]), "tensorflow")
    est = {"BF_dwconv_relu": {"block": detect.estimate([_m(1.0)]), "dwconv": detect.estimate([_m(1.0)]),
                              "relu": detect.estimate([_m(1.0)])}}
    est["MON"] = {k: detect.estimate([_m(v)]) for k, v in {
        "block": 5.0, "relu_relu": 1.0, "relu_dwconv": 2.0, "dwconv": 2.0, "dwconv_relu_relu": 4.0,
        "dwconv_relu": 3.0}.items()}
    verdicts = detect.analyze(mon, est, 0.5)
    assert verdicts["BF_dwconv_relu"].obey is True
    assert verdicts["MON"].obey == "case1" and verdicts["MON"].confidence > 0.99  # 5 vs 5, 6, 6
    est["BF_dwconv_relu"]["block"] = detect.estimate([_m(2.0)])  # no longer fused
    verdicts = detect.analyze(mon, est, 0.5)
    assert verdicts["MON"].obey is False and "BF_dwconv_relu" in verdicts["MON"].note
    assert verdicts["MON"].latency is None
    verdicts = detect.analyze(mon, est, 0.5, errors={"BF_dwconv_relu": "model relu: GENERATION_ERROR"})
    assert verdicts["BF_dwconv_relu"].obey is None and verdicts["MON"].obey is None


def test_remeasure_policy_is_fresh_and_deterministic():
    from nn_farm.actors.jobs import policy_hash

    base = MeasurePolicy()
    one, two = remeasure_policy(base, 1), remeasure_policy(base, 2)
    # another session like the first, under its own store key
    assert (one.min_runs, one.min_s, two.max_s) == (base.min_runs, base.min_s, base.max_s)
    assert len({policy_hash(base), policy_hash(one), policy_hash(two)}) == 3
    assert policy_hash(remeasure_policy(base, 1)) == policy_hash(one)


def test_detected_rules_in_nn_meter_form():
    verdict = _basic(1.0, 1.0, 1.0)
    rules = io.detected_rules({"BF_a_b": verdict}, {"BF_a_b": 1}, detail=True)
    assert rules["BF_a_b"]["obey"] is True and set(rules["BF_a_b"]["latency"]) == {"block", "a", "b", "ops"}
    assert io.read_latency(rules["BF_a_b"]["latency"]["ops"])[0] == pytest.approx(2.0)
    assert "latency" not in io.detected_rules({"BF_a_b": verdict}, {}, detail=False)["BF_a_b"]
