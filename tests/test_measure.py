"""The measurement loop: policy bounds on a real runtime, and the speed-gating logic.

The gating logic is checked with a scripted speed probe (readings we control);
the model runs are always real (ONNX Runtime on the bundled conv network).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from nn_farm.errors import PolicyError
from nn_farm.farm.measure import measure_file, measure_session
from nn_farm.farm.measurement import Measurement
from nn_farm.farm.policy import MeasurePolicy, SpeedGate
from nn_farm.farm.runtimes import bundled_model, get_runtime

from test_speed import ScriptedProbe

OFF = SpeedGate(mode="off")
NO_WARMUP = dict(warmup_runs=0, warmup_s=0.0)


class CountingSession:
    """A real session that counts its runs."""

    def __init__(self, session):
        self.session, self.calls = session, 0
        self.inputs, self.identity = session.inputs, session.identity

    def run(self):
        self.calls += 1
        self.session.run()


@pytest.fixture(scope="module")
def real_session():
    session = get_runtime("onnxruntime").load(str(bundled_model("onnxruntime")))
    yield session
    session.close()


@pytest.fixture
def session(real_session):
    return CountingSession(real_session)


def test_runs_exact_overrides_min_and_max(session):
    policy = MeasurePolicy(runs_exact=7, min_runs=50, warmup_runs=3, warmup_s=0.0, speed_gate=OFF)
    m = measure_session(session, policy)
    assert m.runs == 7 and m.kept_runs == 7 and session.calls == 3 + 7
    assert m.speed_state == "ungated" and m.probe_ms == [] and all(m.kept)


def test_min_runs_reached_then_stops(session):
    m = measure_session(session, MeasurePolicy(min_runs=15, min_s=0.0, max_s=60.0, speed_gate=OFF, **NO_WARMUP))
    assert m.runs == 15


def test_min_s_keeps_sampling_past_min_runs(session):
    # max_runs out of the way: the bundled model runs in about 50 us, so the default
    # 2,000 runs could end sampling before min_s (they did, at 0.099 s).
    started = time.perf_counter()
    m = measure_session(session, MeasurePolicy(min_runs=1, min_s=0.1, max_s=60.0, max_runs=10**6,
                                               speed_gate=OFF, **NO_WARMUP))
    assert m.runs > 1
    assert time.perf_counter() - started >= 0.1


def test_max_s_caps_sampling(session):
    policy = MeasurePolicy(min_runs=10**6, max_runs=10**6, min_s=0.0, max_s=0.2, speed_gate=OFF, **NO_WARMUP)
    m = measure_session(session, policy)
    assert 0 < m.runs < 10**6


def test_max_runs_caps_sampling(session):
    policy = MeasurePolicy(min_runs=5, max_runs=9, min_s=30.0, max_s=30.0, speed_gate=OFF, **NO_WARMUP)
    assert measure_session(session, policy).runs == 9


def test_warmup_runs_at_least_count_and_seconds(session):
    measure_session(session, MeasurePolicy(runs_exact=1, warmup_runs=4, warmup_s=0.0, speed_gate=OFF))
    assert session.calls == 5
    session.calls = 0
    measure_session(session, MeasurePolicy(runs_exact=1, warmup_runs=1, warmup_s=0.05, speed_gate=OFF))
    assert session.calls > 2  # one run takes far less than 50 ms


def test_stats_are_over_kept_samples(session):
    m = measure_session(session, MeasurePolicy(runs_exact=40, trim_fraction=0.1, speed_gate=OFF))
    x = np.sort(m.samples_ms)
    assert m.mean_ms == pytest.approx(x.mean())
    assert m.trimmed_mean_ms == pytest.approx(x[4:36].mean())
    assert m.min_ms == x[0]


def _gated(runs=6, min_fast=2, max_attempts=3, tolerance=0.05):
    gate = SpeedGate(tolerance=tolerance, calm_wait_s=0.0, min_fast=min_fast, max_attempts=max_attempts)
    return MeasurePolicy(runs_exact=runs, speed_gate=gate, **NO_WARMUP)


def _probe(script, then=1.0):
    probe = ScriptedProbe([1.0] * 3 + list(script), then=then)
    probe.calibrate(3)  # best_ms = 1.0
    return probe


def test_a_run_is_kept_when_both_probes_around_it_read_fast(session):
    # The probe before the first run, then one after each run.
    probe = _probe([1.0, 1.0, 1.5, 1.0, 1.0, 1.5, 1.0])
    m = measure_session(session, _gated(), probe)
    assert m.probe_ms == [1.0, 1.5, 1.5, 1.0, 1.5, 1.5]
    assert m.kept == [True, False, False, True, False, False]
    assert (m.attempts, m.speed_state, m.kept_runs) == (1, "fast", 2)
    kept = [s for s, k in zip(m.samples_ms, m.kept) if k]
    assert m.median_ms == pytest.approx(np.median(kept))
    assert m.best_probe_ms == 1.0 and m.speed_factor == 1.0


def test_tolerance_sets_the_fast_threshold(session):
    probe = _probe([1.0, 1.04, 1.04, 1.06, 1.06, 1.06, 1.06])
    m = measure_session(session, _gated(tolerance=0.05), probe)
    assert m.kept == [True, True, False, False, False, False]
    assert m.speed_factor == pytest.approx(1.04)  # median kept probe / best


def test_too_few_fast_runs_retries_and_accumulates(session):
    # Attempt 1 all slow (7 probes), attempt 2 all fast.
    probe = _probe([1.3] * 7 + [1.0] * 7)
    m = measure_session(session, _gated(min_fast=4), probe)
    assert m.attempts == 2 and m.runs == 12
    assert m.kept == [False] * 6 + [True] * 6
    assert m.speed_state == "fast" and m.kept_runs == 6


def test_still_slow_after_all_attempts_is_reported_slow(session):
    probe = _probe([], then=1.3)
    m = measure_session(session, _gated(min_fast=4, max_attempts=3), probe)
    assert m.attempts == 3 and m.runs == 18
    assert m.speed_state == "slow"
    # No fast run at all: the min_fast runs with the lowest probes (ties: earliest) count.
    assert m.kept == [True] * 4 + [False] * 14
    assert m.speed_factor == pytest.approx(1.3)


def test_slow_keeps_the_runs_closest_to_the_fast_state(session):
    # Bracketing probes: 1.0, 1.0, 1.4, 1.4, 1.4, 1.2; two fast runs, three wanted.
    probe = _probe([1.0, 1.0, 1.0, 1.4, 1.4, 1.2, 1.2])
    m = measure_session(session, _gated(min_fast=3, max_attempts=1), probe)
    assert m.speed_state == "slow"
    assert m.kept == [True, True, False, False, False, True]
    assert m.speed_factor == pytest.approx(1.0)


class OffCpuSession(CountingSession):
    """A real session that also blocks off the CPU in every run, as if preempted."""

    def run(self):
        super().run()
        time.sleep(0.002)


@pytest.mark.parametrize("cpu_bound", [True, False])
def test_runs_interrupted_off_cpu_are_not_kept(real_session, cpu_bound):
    sleepy = OffCpuSession(real_session)
    sleepy.cpu_bound = cpu_bound  # False: a device that computes elsewhere (GPU, NPU, a sleep)
    probe = _probe([], then=1.0)  # the probe always reads fast
    m = measure_session(sleepy, _gated(min_fast=3, max_attempts=2), probe)
    if cpu_bound:
        assert m.speed_state == "slow" and m.attempts == 2
    else:
        assert m.speed_state == "fast" and m.attempts == 1 and all(m.kept)


def test_calm_wait_happens_before_each_attempt(session):
    probe = _probe([], then=1.3)
    gate = SpeedGate(calm_wait_s=0.05, min_fast=2, max_attempts=2)
    m = measure_session(session, MeasurePolicy(runs_exact=3, speed_gate=gate, **NO_WARMUP), probe)
    assert m.attempts == 2 and m.calm_wait_s >= 2 * 0.05


def test_gate_off_never_probes(session):
    probe = _probe([])
    before = probe.readings
    m = measure_session(session, MeasurePolicy(runs_exact=5, speed_gate=OFF), probe)
    assert probe.readings == before and m.speed_state == "ungated" and m.speed_factor == 1.0


def test_measure_file_fills_identity_and_pins_then_restores_affinity():
    before = os.sched_getaffinity(0)
    core = min(before)
    policy = MeasurePolicy(runs_exact=5, cpu_affinity=(core,), speed_gate=OFF)
    m = measure_file("onnxruntime", str(bundled_model("onnxruntime")), policy=policy)
    assert m.device["cpu_affinity"] == [core]
    assert os.sched_getaffinity(0) == before
    assert m.runtime == "onnxruntime" and m.runtime_version
    assert m.policy is policy and m.runs == 5
    # The wire form keeps everything the agent sends back.
    back = Measurement.from_proto(m.to_proto())
    assert back.samples_ms == pytest.approx(m.samples_ms) and back.device["cpu_affinity"] == [core]


def test_impossible_affinity_is_a_policy_error():
    with pytest.raises(PolicyError, match="cpu_affinity"):
        measure_file("onnxruntime", str(bundled_model("onnxruntime")),
                     policy=MeasurePolicy(runs_exact=1, cpu_affinity=(4096,)))


@pytest.mark.slow
def test_stability_benchmark_runs_and_ends_with_json(tmp_path):
    import json
    import pathlib
    import subprocess
    import sys

    script = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "measure_stability.py"
    out = subprocess.run([sys.executable, str(script), "--models", "1", "--min-s", "0.05",
                          "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["models"] == 1
    for mode in ("gated", "ungated"):
        assert summary[f"{mode}_median_rel_diff"] >= 0 and summary[f"{mode}_p90_rel_diff"] >= 0
