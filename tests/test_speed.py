"""The speed probe: real readings, a robust fast-state reference, and the calm wait."""

from __future__ import annotations

import math

import pytest

from nn_farm.farm.policy import SpeedGate
from nn_farm.farm.speed import SpeedProbe, default_probe


class ScriptedProbe(SpeedProbe):
    """A SpeedProbe whose readings (ms) come from a script; then ``then`` forever.

    Only the timing of the workload is replaced; the reference, the fast test
    and the calm wait are the real code.
    """

    def __init__(self, script=(), then=1.0, **kwargs):
        super().__init__(**kwargs)
        self.script, self.then, self.readings = list(script), then, 0

    def _measure_ms(self) -> float:
        self.readings += 1
        return self.script.pop(0) if self.script else self.then


def test_real_probe_reads_positive_and_best_is_a_reading():
    probe = SpeedProbe()
    readings = sorted(probe.sample() for _ in range(50))
    assert all(math.isfinite(r) and r > 0 for r in readings)
    assert probe.best_ms == readings[probe.rank - 1]


def test_best_ignores_lucky_readings():
    probe = ScriptedProbe([1.0] * 10 + [0.2, 0.3] + [1.0] * 10, rank=3)
    for _ in range(22):
        probe.sample()
    assert probe.best_ms == 1.0  # two lucky readings are below rank 3
    probe.sample()  # then = 1.0
    assert probe.is_fast(1.05, 0.05) and not probe.is_fast(1.06, 0.05)


def test_best_calibrates_on_first_use():
    probe = ScriptedProbe([2.0, 1.5, 1.8], then=3.0)
    assert probe.best_ms == 2.0
    assert probe.readings == 3


def test_calm_wait_returns_once_calm():
    probe = ScriptedProbe([1.0] * 3, then=1.01, calm_period_s=0.02)
    waited = probe.wait_for_calm(SpeedGate(tolerance=0.05, calm_wait_s=30.0))
    assert waited < 30.0
    assert probe.readings >= probe.window * 2  # at least two windows read fast


def test_calm_wait_gives_up_at_the_cap_when_slow():
    probe = ScriptedProbe([1.0] * 3, then=1.3)
    waited = probe.wait_for_calm(SpeedGate(tolerance=0.05, calm_wait_s=0.2))
    assert waited >= 0.2


def test_a_slow_spell_restarts_the_calm_period():
    # calm_period_s 0: the first fast window is calm enough.
    probe = ScriptedProbe([1.0] * 3, then=1.0, calm_period_s=0.0)
    probe.calibrate(3)
    probe.wait_for_calm(SpeedGate(calm_wait_s=10.0))
    assert probe.readings == 3 + probe.window
    # One whole slow window does not count; calm comes with the next fast one.
    probe = ScriptedProbe([1.0] * 3 + [1.5] * 16, then=1.0, calm_period_s=0.0, window=16)
    probe.calibrate(3)
    probe.wait_for_calm(SpeedGate(calm_wait_s=10.0))
    assert probe.readings == 3 + 32
    # A single slow reading inside a window is outvoted by the window's median.
    probe = ScriptedProbe([1.0] * 3 + [9.0] + [1.0] * 15, then=2.0, calm_period_s=0.0, window=16)
    probe.calibrate(3)
    probe.wait_for_calm(SpeedGate(calm_wait_s=10.0))
    assert probe.readings == 3 + 16


def test_gate_off_never_waits():
    probe = ScriptedProbe(then=5.0)
    assert probe.wait_for_calm(SpeedGate(mode="off")) == 0.0
    assert probe.readings == 0


def test_default_probe_is_shared():
    assert default_probe() is default_probe()
