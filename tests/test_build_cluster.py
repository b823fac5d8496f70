"""`ray job submit -- nn-farm build` against a Ray cluster started here (stopped by PID).

The head node fixture is the rule tester's (tests/test_ruletest_cluster.py): a real
`ray start --head --block` with its dashboard, whose job API runs the entrypoint with
RAY_ADDRESS set, so the build's driver joins the cluster: kernel generation and
training run as tasks on it, and measurement on the embedded agent of the driver.
"""

from __future__ import annotations

import json

import pytest
import yaml

from test_ruletest_cluster import ray_head, submit_job  # noqa: F401  (the fixture)
from nn_farm.builder.workspace import create_workspace


@pytest.mark.slow
def test_ray_job_submit_runs_a_build_on_the_cluster(ray_head, tmp_path):  # noqa: F811
    address, env = ray_head
    ws = create_workspace(tmp_path / "ws", backend="host-cpu-onnxruntime")
    config = yaml.safe_load(ws.predbuild_config.read_text())
    config["KERNELS"] = {"conv-bn-relu": {"INIT_SAMPLE_NUM": 8, "FINEGRAINED_SAMPLE_NUM": 2, "ITERATION": 2,
                                          "ERROR_THRESHOLD": 0.1},
                         "relu": {"INIT_SAMPLE_NUM": 6, "FINEGRAINED_SAMPLE_NUM": 2, "ITERATION": 1,
                                  "ERROR_THRESHOLD": 0.1}}
    ws.predbuild_config.write_text(yaml.safe_dump(config))
    backend = yaml.safe_load(ws.backend_config.read_text())
    backend["POLICY"] = {"warmup_runs": 2, "min_runs": 10, "min_s": 0.05, "speed_gate": {"mode": "off"}}
    ws.backend_config.write_text(yaml.safe_dump(backend))

    code, out = submit_job(address, env, ["nn-farm", "build", "--workspace", str(ws.root), "--ruletest", "skip",
                                          "--no-progress", "--json"], timeout=1200)
    assert code == 0, out[-4000:]
    assert "Connecting to existing Ray cluster" in out, out[-4000:]  # joined, did not start its own
    summary = next(json.loads(line) for line in reversed(out.splitlines()) if line.startswith('{"workspace"'))
    assert set(summary["kernels"]) == {"conv-bn-relu", "relu"} and summary["measured"] >= 14
    assert (ws.root / "predictor_build" / "package" / "manifest.json").exists()
    registered = tmp_path / "home" / "predictors" / "host-cpu-onnxruntime" / "1.0"
    assert registered.is_dir()
