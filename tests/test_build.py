"""The kernel predictor build end to end on a real embedded farm (ONNX Runtime on this host's CPU).

A tiny build (three kernel types, a handful of configs each, round 1 and one adaptive
round) generates and converts its kernels as Ray tasks, measures them on a real agent,
trains on Ray, and writes a registered package that loads and predicts a torchvision
model. The same workspace then shows the files are nn-Meter's, that a rerun measures
nothing again, and that a longer rerun adds only the new round's kernels.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml

from nn_farm.builder.kernel_build.state import BuildState, KernelState, RoundRecord, is_better
from nn_farm.builder.workspace import create_workspace

# Short measurements: these tests check the flow, not the device's latencies.
FAST_POLICY = {"warmup_runs": 2, "min_runs": 10, "min_s": 0.05, "max_s": 2.0, "speed_gate": {"mode": "off"}}
KERNELS = {
    "conv-bn-relu": {"INIT_SAMPLE_NUM": 10, "FINEGRAINED_SAMPLE_NUM": 2, "ITERATION": 2, "ERROR_THRESHOLD": 0.1},
    "dwconv-bn-relu": {"INIT_SAMPLE_NUM": 8, "FINEGRAINED_SAMPLE_NUM": 2, "ITERATION": 2, "ERROR_THRESHOLD": 0.1},
    "relu": {"INIT_SAMPLE_NUM": 6, "FINEGRAINED_SAMPLE_NUM": 2, "ITERATION": 2, "ERROR_THRESHOLD": 0.1},
}
ID = re.compile(r"^[A-Z0-9]{6}$")
LATENCY = re.compile(r"^\d+(\.\d+)?(e-?\d+)? \+- \d+(\.\d+)?(e-?\d+)?$")


def make_workspace(root, kernels, backend="host-cpu-onnxruntime"):
    ws = create_workspace(root, backend=backend)
    predbuild = yaml.safe_load(ws.predbuild_config.read_text())
    predbuild["KERNELS"] = kernels
    ws.predbuild_config.write_text(yaml.safe_dump(predbuild))
    config = yaml.safe_load(ws.backend_config.read_text())
    config["POLICY"] = FAST_POLICY
    ws.backend_config.write_text(yaml.safe_dump(config))
    return ws


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("home")
    mp.setenv("NN_FARM_HOME", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def built(tmp_path_factory, home):
    """One tiny build, shared by the tests below: (workspace, BuildResult)."""
    from nn_farm.builder import build_latency_predictor

    ws = make_workspace(tmp_path_factory.mktemp("ws"), KERNELS)
    with pytest.warns(UserWarning, match="no detected fusion rules"):
        result = build_latency_predictor(workspace=ws.root, ruletest="skip", target_accuracy=None,
                                         progress=False, name="tiny-onnx")
    return ws, result


def test_tiny_build_writes_a_registered_package_that_predicts_a_real_model(built, home):
    from nn_farm.predictor.registry import list_predictors, load_latency_predictor

    ws, result = built
    assert result.failed == 0
    assert result.measured == sum(len(json.loads(p.read_text())[p.stem[len("profiled_"):]])
                                  for p in ws.results_dir.glob("profiled_*.json"))
    assert set(result.fits) == set(KERNELS)
    assert result.runtime == "onnxruntime" and result.runtime_version
    assert result.package.is_relative_to(home)
    assert any(p["name"] == "tiny-onnx" for p in list_predictors())

    predictor = load_latency_predictor("tiny-onnx")
    assert sorted(predictor.kernel_types) == sorted(KERNELS)
    detail = predictor.predict_detail("mobilenet_v2", "torchvision")
    priced = [k for k in detail["kernels"] if k.get("ms") is not None]
    assert detail["latency_ms"] > 0 and priced
    # Every conv of MobileNetV2 is priced by the conv or dwconv regressor this build fitted.
    assert {k["model"] for k in priced} & {"conv-bn-relu", "dwconv-bn-relu"}
    # The package ships each kernel's kept regressor: same numbers as the fit.
    fit = result.fits["conv-bn-relu"]
    config = fit.test_configs[0]
    from nn_farm.predictor.kernel_specs import features

    shipped = predictor.package.models["conv-bn-relu"]
    np.testing.assert_allclose(shipped.predict(features("conv-bn-relu", [config])),
                               fit.package_model.predict(features("conv-bn-relu", [config])))


def test_kernel_data_files_are_nn_meters(built):
    ws, result = built
    for kernel_type in KERNELS:
        prior = json.loads((ws.results_dir / f"{kernel_type}_prior.json").read_text())
        profiled = json.loads((ws.results_dir / f"profiled_{kernel_type}.json").read_text())
        assert list(prior) == [kernel_type] and list(profiled) == [kernel_type]
        records = prior[kernel_type]
        assert len(records) == KERNELS[kernel_type]["INIT_SAMPLE_NUM"]
        for kid, record in records.items():
            assert ID.match(kid), kid
            assert set(record) >= {"model", "config", "shapes"}
            assert (ws.kernels_dir / record["model"].rsplit("/", 1)[-1]).exists()
        latencies = profiled[kernel_type]
        assert set(records) <= set(latencies)
        for kid, entry in latencies.items():
            assert LATENCY.match(entry["latency"]), entry
        # Round 2 lives in its own file, with fresh ids.
        fine = ws.results_dir / f"{kernel_type}_finegrained1.json"
        if fine.exists():
            assert not set(json.loads(fine.read_text())[kernel_type]) & set(records)


def test_rounds_share_one_held_out_set_and_are_recorded(built):
    ws, result = built
    state = BuildState(ws.results_dir)
    for kernel_type in KERNELS:
        ks = state.kernel(kernel_type)
        assert [r["round"] for r in ks.rounds] == [1, 2][:len(ks.rounds)] and ks.rounds
        # The same held-out configs score every round, so rounds compare.
        assert len({r["n_test"] for r in ks.rounds}) == 1 and ks.test_ids
        kept = ks.kept
        assert kept is not None and kept["kept"]
        for r in ks.rounds:
            for name in ("rmse", "rmspe", "acc5", "acc10", "acc15"):
                assert name in r["metrics"]
        # A later round is kept only if it measured better than the one kept before it.
        if len(ks.rounds) == 2 and ks.rounds[1]["kept"]:
            assert is_better(ks.rounds[1]["metrics"], ks.rounds[0]["metrics"])
        elif len(ks.rounds) == 2:
            assert ks.kept_round == 1
    summary = json.loads((ws.results_dir / "build_summary.json").read_text())
    assert set(summary["kernels"]) == set(KERNELS) and summary["measured"] == result.measured


def test_a_rerun_measures_nothing_and_redoes_no_round(built):
    from nn_farm.builder import build_latency_predictor

    ws, result = built
    before = (ws.results_dir / "build_state.json").read_text()
    again = build_latency_predictor(workspace=ws.root, ruletest="skip", target_accuracy=None, progress=False,
                                    name="tiny-onnx")
    assert again.measured == 0
    assert (ws.results_dir / "build_state.json").read_text() == before
    assert set(again.fits) == set(KERNELS)


def test_a_longer_rerun_measures_only_the_new_round(tmp_path, home):
    """Round 1 finished (ITERATION 1), then ITERATION 2: round 1's kernels come from the store."""
    from nn_farm.builder import build_latency_predictor

    kernels = {"conv-bn-relu": {"INIT_SAMPLE_NUM": 8, "FINEGRAINED_SAMPLE_NUM": 3, "ITERATION": 1,
                                "ERROR_THRESHOLD": 0.01}}
    ws = make_workspace(tmp_path / "ws", kernels)
    first = build_latency_predictor(workspace=ws.root, ruletest="skip", target_accuracy=None, progress=False,
                                    register=False)
    assert first.measured == 8
    kernels["conv-bn-relu"]["ITERATION"] = 2
    config = yaml.safe_load(ws.predbuild_config.read_text())
    config["KERNELS"] = kernels
    ws.predbuild_config.write_text(yaml.safe_dump(config))
    second = build_latency_predictor(workspace=ws.root, ruletest="skip", target_accuracy=None, progress=False,
                                     register=False)
    rounds = BuildState(ws.results_dir).kernel("conv-bn-relu").rounds
    assert [r["round"] for r in rounds] == [1, 2]
    assert second.reused == 8  # round 1's kernels: looked up, not measured
    assert second.measured == rounds[1]["new_ids"] > 0


# ---------------------------------------------------------------- keep-if-better


def _conv_latency(configs):
    """A smooth stand-in for measured conv latency: MACs at a fixed rate plus overhead (ms)."""
    from nn_farm.predictor.kernel_specs import features

    flops = features("conv-bn-relu", configs)[:, 5]  # FLOPS column (M multiply-adds)
    return list(0.02 + flops / 5000.0)


def test_a_round_that_measures_worse_is_not_kept(tmp_path):
    """Round 2's data is round 1's configs measured again 3x slower (a throttled device):
    fed through the training API, it predicts the held-out set worse, so round 1 stays."""
    from nn_farm.builder.sampling import sample_kernel_configs
    from nn_farm.builder.training import fit_kernel, split_ids

    configs = sample_kernel_configs("conv-bn-relu", 60, seed=1)
    latency = _conv_latency(configs)
    train, test = split_ids(range(len(configs)), seed=0)
    pick = lambda idx, values: [values[i] for i in idx]  # noqa: E731
    test_c, test_l = pick(test, configs), pick(test, latency)

    state = BuildState(tmp_path)
    ks = state.kernel("conv-bn-relu")
    round1 = fit_kernel("conv-bn-relu", pick(train, configs), pick(train, latency), test_c, test_l, learner="rf")
    assert ks.consider(RoundRecord(1, "prior", len(train), len(train), len(test), round1.metrics, "rf",
                                   False, 0))
    slow = [3 * x for x in pick(train, latency)]
    round2 = fit_kernel("conv-bn-relu", pick(train, configs) * 2, pick(train, latency) + slow, test_c, test_l,
                        learner="rf")
    assert round2.metrics["acc10"] < round1.metrics["acc10"]
    assert not ks.consider(RoundRecord(2, "finegrained1", len(train), 2 * len(train), len(test), round2.metrics,
                                       "rf", False, 0))
    assert ks.kept_round == 1 and [r["kept"] for r in ks.rounds] == [True, False]
    state.save()
    assert BuildState(tmp_path).kernel("conv-bn-relu").kept_round == 1  # survives a rerun


def test_is_better_prefers_accuracy_then_rmspe():
    assert is_better({"acc10": 0.9, "rmspe": 9.0}, None)
    assert is_better({"acc10": 0.9, "rmspe": 9.0}, {"acc10": 0.8, "rmspe": 5.0})
    assert not is_better({"acc10": 0.8, "rmspe": 5.0}, {"acc10": 0.9, "rmspe": 9.0})
    assert is_better({"acc10": 0.9, "rmspe": 5.0}, {"acc10": 0.9, "rmspe": 9.0})
    assert not is_better({"acc10": 0.9, "rmspe": 9.0}, {"acc10": 0.9, "rmspe": 9.0})


def test_kernel_state_round_trips(tmp_path):
    state = BuildState(tmp_path)
    ks = state.kernel("relu")
    ks.test_ids = ["AAAAAA"]
    ks.consider(RoundRecord(1, "prior", 5, 4, 1, {"acc10": 1.0, "rmspe": 1.0}, "rf", False, 0))
    state.save()
    again = BuildState(tmp_path).kernel("relu")
    assert isinstance(again, KernelState) and again.test_ids == ["AAAAAA"] and again.kept_round == 1


# ---------------------------------------------------------------- nn-Meter's API and the command


def test_nn_meter_names_are_exported_lazily():
    code = ("import sys, nn_farm.builder as b; assert 'tensorflow' not in sys.modules and 'ray' not in sys.modules; "
            "from nn_farm.builder import (build_latency_predictor, build_predictor_for_kernel, "
            "build_initial_predictor_by_data, build_adaptive_predictor_by_data, sample_and_profile_kernel_data, "
            "generate_config_sample, convert_models, profile_models, build_predictor_by_data, builder_config); "
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_generate_config_sample_writes_nn_meters_config_file(tmp_path):
    from nn_farm.builder import builder_config, generate_config_sample

    ws = make_workspace(tmp_path / "ws", KERNELS)
    builder_config.init(ws.root)
    models = generate_config_sample("dwconv-bn-relu", 5, mark="prior")
    assert list(models) == ["dwconv-bn-relu"] and len(models["dwconv-bn-relu"]) == 5
    on_disk = json.loads((ws.results_dir / "dwconv-bn-relu_prior.json").read_text())
    assert on_disk == json.loads(json.dumps(models))
    fine = generate_config_sample("dwconv-bn-relu", 2, mark="finegrained1", sampling_mode="finegrained",
                                  configs=[r["config"] for r in models["dwconv-bn-relu"].values()][:2])
    assert 0 < len(fine["dwconv-bn-relu"]) <= 4
    assert all(r["model"].endswith(".onnx") for r in fine["dwconv-bn-relu"].values())


def test_build_command(tmp_path):
    """`nn-farm build` on a fresh workspace (created by the command), one kernel type, one round."""
    ws = tmp_path / "ws"
    env_home = tmp_path / "home"
    subprocess.run([sys.executable, "-m", "nn_farm.cli", "create", "--workspace", str(ws), "--backend",
                    "host-cpu-onnxruntime"], check=True, capture_output=True, timeout=120)
    make_workspace(ws, {"relu": {"INIT_SAMPLE_NUM": 6, "FINEGRAINED_SAMPLE_NUM": 2, "ITERATION": 1,
                                 "ERROR_THRESHOLD": 0.1}})
    import os

    out = subprocess.run([sys.executable, "-m", "nn_farm.cli", "build", "--workspace", str(ws), "--kernels", "relu",
                          "--ruletest", "skip", "--no-progress", "--json"], capture_output=True, text=True,
                         timeout=600, env={**{k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"},
                                           "NN_FARM_HOME": str(env_home)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "fork() handlers" not in out.stderr  # gRPC's fork notices no longer bury errors
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["measured"] == 6 and list(summary["kernels"]) == ["relu"]
    assert (env_home / "predictors" / "host-cpu-onnxruntime" / "1.0").is_dir()


def test_build_command_names_an_unknown_kernel(tmp_path):
    ws = make_workspace(tmp_path / "ws", KERNELS)
    out = subprocess.run([sys.executable, "-m", "nn_farm.cli", "build", "--workspace", str(ws.root),
                          "--kernels", "conv-bn-relux", "--ruletest", "skip"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1 and "conv-bn-relux" in out.stderr


@pytest.mark.slow
def test_nn_meter_scripts_port_with_an_import_change(tmp_path, home):
    """nn-Meter's per-kernel flow, by name and signature, on an open backend shared by the calls."""
    from nn_farm.builder import (build_adaptive_predictor_by_data, build_initial_predictor_by_data,
                                 build_predictor_for_kernel, builder_config, convert_models,
                                 generate_config_sample, profile_models, sample_and_profile_kernel_data)
    from nn_farm.builder.backend import open_backend
    from nn_farm.builder.kernel_data import load_kernel_data
    from nn_farm.predictor.kernel_specs import features

    ws = make_workspace(tmp_path / "ws", KERNELS)
    builder_config.init(ws.root)
    with open_backend(ws.root, progress=False) as backend:
        models = generate_config_sample("relu", 4, mark="mine")
        models = convert_models(backend, models, progress=False)
        assert all(pathlib_exists(r["converted_model"]) for r in models["relu"].values())
        profiled = profile_models(backend, models)
        assert all(LATENCY.match(r["latency"]) for r in profiled["relu"].values())

        data = sample_and_profile_kernel_data("add", 6, backend, sampling_mode="prior", mark="prior")
        ids, configs, latency = load_kernel_data(data, "add")
        assert len(ids) == 6 and all(x > 0 for x in latency)

        predictor, kernel_data = build_initial_predictor_by_data("add", backend, init_sample_num=6)
        assert predictor.predict(features("add", configs[:2])).shape == (2,)
        predictor, merged = build_adaptive_predictor_by_data("add", kernel_data, backend, finegrained_sample_num=2,
                                                             error_threshold=0.0)
        assert len(merged["add"]) > len(kernel_data["add"])  # the new round's kernels were measured and merged
        predictor, kernel_data = build_predictor_for_kernel("relu", backend, init_sample_num=6,
                                                            finegrained_sample_num=2, iteration=2,
                                                            error_threshold=0.1, target_accuracy=None)
        assert predictor is not None and len(kernel_data["relu"]) >= 6


def pathlib_exists(path) -> bool:
    import pathlib

    return pathlib.Path(path).exists()


def test_the_rule_testers_mon_verdict_reaches_the_predictor_as_a_number():
    from nn_farm.builder.kernel_builder import _predictor_rules
    from nn_farm.predictor.kernels import load_fusion_rules

    detected = {"BF_conv_relu": {"obey": True}, "MON": {"obey": "case1", "confidence": 0.99}}
    rules = _predictor_rules(detected)
    assert rules["MON"]["obey"] == 0 and rules["MON"]["case"] == "case1"
    assert detected["MON"]["obey"] == "case1"  # the rule tester's file is left as it is
    assert load_fusion_rules(rules).mon == 0
    assert load_fusion_rules(_predictor_rules({"MON": {"obey": "case2"}})).mon == 1


def test_build_command_refuses_another_backend_for_a_workspace(tmp_path):
    ws = make_workspace(tmp_path / "ws", KERNELS)
    out = subprocess.run([sys.executable, "-m", "nn_farm.cli", "build", "--workspace", str(ws.root),
                          "--backend", "host-cpu-litert", "--ruletest", "skip"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1 and "host-cpu-onnxruntime" in out.stderr
