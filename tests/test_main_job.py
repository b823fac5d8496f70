"""README's main job (`nn-farm demo`): its report pieces, and (slow) the whole job on LiteRT."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from nn_farm.builder.main_job import BUDGETS, accuracy_stats, estimate_minutes, write_scatter


def test_accuracy_stats_counts_models_within_the_band():
    stats = accuracy_stats([10.5, 12.0, 8.0, 1.0], [10.0, 10.0, 10.0, 1.0])
    assert stats["n"] == 4
    assert stats["acc10"] == pytest.approx(0.5)  # 10.5 (+5%) and 1.0 (0%); 12 (+20%) and 8 (-20%) are out
    assert stats["acc5"] == pytest.approx(0.5) and stats["acc15"] == pytest.approx(0.5)
    assert stats["rmspe"] == pytest.approx(100 * math.sqrt((0.05 ** 2 + 0.2 ** 2 + 0.2 ** 2) / 4))
    assert accuracy_stats([], [])["n"] == 0


def test_scatter_is_a_png(tmp_path):
    path = write_scatter(tmp_path / "s.png", {"a": ([1.0, 2.0], [1.1, 2.5], ["x", "y"]), "b": ([3.0], [3.0], None)},
                         "t")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    # No data: still a plot, not a crash.
    assert open(write_scatter(tmp_path / "e.png", {"none": ([], [], None)}, "t"), "rb").read(4) == b"\x89PNG"


def test_the_default_budget_is_estimated_under_20_minutes():
    from nn_farm.builder.config import default_predbuild_config
    from nn_farm.builder.zoo_models import DEMO_MODELS

    kernels = default_predbuild_config()["KERNELS"]
    (conv, dwconv, other), fine, iteration = BUDGETS["default"]
    for name, entry in kernels.items():
        entry.update(INIT_SAMPLE_NUM=conv if name == "conv-bn-relu" else dwconv if name == "dwconv-bn-relu"
                     else other, FINEGRAINED_SAMPLE_NUM=fine, ITERATION=iteration)
    assert estimate_minutes(kernels, models=len(DEMO_MODELS), ruletest=True) < 20


@pytest.mark.slow
def test_demo_command_builds_predicts_and_reports(tmp_path):
    """`nn-farm demo --budget tiny` on LiteRT with two real models: table, report.json, scatter.png."""
    ws = tmp_path / "demo"
    out = subprocess.run([sys.executable, "-m", "nn_farm.cli", "demo", "--workspace", str(ws), "--budget", "tiny",
                          "--models", "MobileNetV3Small", "MobileNetV2", "--ruletest", "skip", "--no-progress"],
                         capture_output=True, text=True, timeout=3000,
                         env=dict(os.environ, NN_FARM_HOME=str(tmp_path / "home")))
    assert out.returncode == 0, out.stderr[-4000:]
    assert "+-10% accuracy:" in out.stdout
    report = json.loads((ws / "main_job" / "report.json").read_text())
    assert [m["model"] for m in report["models"]] == ["MobileNetV3Small", "MobileNetV2"]
    for row in report["models"]:
        assert row["predicted_ms"] > 0 and row["measured_ms"] > 0
    assert report["runtime"] == "litert" and report["build"]["measured"] > 0
    assert (ws / "main_job" / "scatter.png").read_bytes()[:4] == b"\x89PNG"
    # Resumable: a second run measures nothing again.
    again = subprocess.run([sys.executable, "-m", "nn_farm.cli", "demo", "--workspace", str(ws), "--models",
                            "MobileNetV3Small", "MobileNetV2", "--ruletest", "skip", "--no-progress"],
                           capture_output=True, text=True, timeout=1200,
                           env=dict(os.environ, NN_FARM_HOME=str(tmp_path / "home")))
    assert again.returncode == 0, again.stderr[-4000:]
    assert json.loads((ws / "main_job" / "report.json").read_text())["build"]["measured"] == 0


def test_the_demo_workspace_gets_a_short_speed_gate(tmp_path):
    from nn_farm.builder.config import ConfigManager
    from nn_farm.builder.main_job import DEMO_POLICY, _apply_policy
    from nn_farm.builder.workspace import create_workspace
    from nn_farm.farm.policy import MeasurePolicy

    ws = create_workspace(tmp_path / "ws", backend="host-cpu-litert")
    _apply_policy(ws)
    policy = ConfigManager().init(ws.root).get("POLICY", "backend")
    assert policy == DEMO_POLICY
    gate = MeasurePolicy.from_dict(policy).speed_gate
    assert gate.calm_wait_s == 1.0 and gate.max_attempts == 2 and gate.tolerance == 0.10
