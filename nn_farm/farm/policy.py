"""Measurement policy: how many runs, how long, which cores, and how host noise is handled.

A policy is a small frozen record with units in the field names. Every field has
a default, a bad value fails at construction naming the field, and the wire form
(``MeasurePolicy`` in farm.proto) uses 0 for "default", so an empty proto message
means the default policy.

Why speed gating is on by default: a VM host drifts between speed states (10 to
40% slower for seconds to minutes) and nothing inside the VM shows it, except a
tiny fixed timing loop. Timing a model while that probe says "slow" gives a
different number from the same model timed a minute later. Keeping only runs
taken in the fast state, after waiting for a calm moment, makes two passes agree
to about 1-2% instead of ~16% (see benchmarks/measure_stability.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from nn_farm.errors import PolicyError

GATE_MODES = ("off", "filter")


@dataclass(frozen=True)
class SpeedGate:
    """How a measurement treats the host's speed state.

    Attributes:
        mode: "filter" keeps only runs whose neighbouring probe is within
            ``tolerance`` of the best probe seen on this device; "off" keeps all.
        tolerance: relative slack over the best probe time that still counts as fast.
        calm_wait_s: before measuring, wait at most this long for the probe to
            read fast several times in a row.
        min_fast: a measurement with fewer fast runs than this is retried.
        max_attempts: attempts in all (first try plus retries); the last attempt's
            result is reported with speed_state "slow" if it is still short.
    """

    mode: str = "filter"
    tolerance: float = 0.05
    calm_wait_s: float = 15.0
    min_fast: int = 10
    max_attempts: int = 4

    def __post_init__(self) -> None:
        if self.mode not in GATE_MODES:
            raise PolicyError(f"speed_gate.mode must be one of {GATE_MODES}, got {self.mode!r}")
        _check_nonneg("speed_gate.tolerance", self.tolerance)
        _check_nonneg("speed_gate.calm_wait_s", self.calm_wait_s)
        _check_positive("speed_gate.min_fast", self.min_fast)
        _check_positive("speed_gate.max_attempts", self.max_attempts)

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


@dataclass(frozen=True)
class MeasurePolicy:
    """How to measure one model on one device.

    Sampling stops when both ``min_runs`` and ``min_s`` are reached, or at
    ``max_runs`` or ``max_s``, whichever comes first. ``runs_exact`` overrides
    all four. Warm-up runs ``warmup_runs`` times and at least ``warmup_s``.

    Attributes:
        warmup_runs, warmup_s: warm-up before sampling (not recorded).
        min_runs, min_s: the least sampling per attempt.
        max_runs, max_s: caps on sampling per attempt.
        trim_fraction: fraction cut from each end for ``trimmed_mean_ms``.
        cpu_affinity: cores the measuring process is pinned to (empty: the device's).
        speed_gate: see :class:`SpeedGate`.
        timeout_s: the whole measurement, retries included, is killed past this.
        runs_exact: if > 0, sample exactly this many runs.

    Example:
        >>> MeasurePolicy(min_runs=50, cpu_affinity=(1,)).min_runs
        50
    """

    warmup_runs: int = 5
    warmup_s: float = 0.2
    min_runs: int = 30
    min_s: float = 0.3
    max_runs: int = 2000
    max_s: float = 10.0
    trim_fraction: float = 0.1
    cpu_affinity: tuple[int, ...] = ()
    speed_gate: SpeedGate = field(default_factory=SpeedGate)
    timeout_s: float = 300.0
    runs_exact: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "cpu_affinity", tuple(int(c) for c in self.cpu_affinity))
        if isinstance(self.speed_gate, dict):
            object.__setattr__(self, "speed_gate", SpeedGate(**self.speed_gate))
        _check_nonneg("warmup_runs", self.warmup_runs)
        _check_nonneg("warmup_s", self.warmup_s)
        _check_positive("min_runs", self.min_runs)
        _check_nonneg("min_s", self.min_s)
        _check_positive("max_runs", self.max_runs)
        _check_positive("max_s", self.max_s)
        _check_positive("timeout_s", self.timeout_s)
        _check_nonneg("runs_exact", self.runs_exact)
        if not 0 <= self.trim_fraction < 0.5:
            raise PolicyError(f"trim_fraction must be in [0, 0.5), got {self.trim_fraction}")
        if self.min_runs > self.max_runs:
            raise PolicyError(f"min_runs ({self.min_runs}) exceeds max_runs ({self.max_runs})")
        if self.min_s > self.max_s:
            raise PolicyError(f"min_s ({self.min_s}) exceeds max_s ({self.max_s})")
        if any(c < 0 for c in self.cpu_affinity):
            raise PolicyError(f"cpu_affinity has a negative core: {self.cpu_affinity}")

    def replace(self, **changes: Any) -> "MeasurePolicy":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["cpu_affinity"] = list(self.cpu_affinity)
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> "MeasurePolicy":
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise PolicyError(f"unknown policy field(s): {sorted(unknown)}")
        gate = d.pop("speed_gate", None)
        if isinstance(gate, dict):
            gknown = {f.name for f in dataclasses.fields(SpeedGate)}
            bad = set(gate) - gknown
            if bad:
                raise PolicyError(f"unknown speed_gate field(s): {sorted(bad)}")
            d["speed_gate"] = SpeedGate(**gate)
        elif gate is not None:
            d["speed_gate"] = gate
        return cls(**d)

    # The wire form: 0 / empty means "default".
    def to_proto(self):
        from nn_farm.farm._proto import farm_pb2 as pb

        g = self.speed_gate
        return pb.MeasurePolicy(
            warmup_runs=self.warmup_runs,
            warmup_s=self.warmup_s,
            min_runs=self.min_runs,
            min_s=self.min_s,
            max_runs=self.max_runs,
            max_s=self.max_s,
            trim_fraction=self.trim_fraction,
            cpu_affinity=list(self.cpu_affinity),
            speed_gate=pb.SpeedGate(
                mode=pb.GATE_OFF if g.mode == "off" else pb.GATE_FILTER,
                tolerance=g.tolerance,
                calm_wait_s=g.calm_wait_s,
                min_fast=g.min_fast,
                max_attempts=g.max_attempts,
            ),
            timeout_s=self.timeout_s,
            runs_exact=self.runs_exact,
        )

    @classmethod
    def from_proto(cls, msg, base: "MeasurePolicy | None" = None) -> "MeasurePolicy":
        """Read a wire policy, taking every zero field from ``base`` (default: defaults)."""
        from nn_farm.farm._proto import farm_pb2 as pb

        base = base or cls()
        changes: dict[str, Any] = {}
        for name in ("warmup_runs", "warmup_s", "min_runs", "min_s", "max_runs", "max_s",
                     "trim_fraction", "timeout_s", "runs_exact"):
            value = getattr(msg, name)
            if value:
                changes[name] = value
        if msg.cpu_affinity:
            changes["cpu_affinity"] = tuple(msg.cpu_affinity)
        g, bg = msg.speed_gate, base.speed_gate
        gate = SpeedGate(
            mode={pb.GATE_OFF: "off", pb.GATE_FILTER: "filter"}.get(g.mode, bg.mode),
            tolerance=g.tolerance or bg.tolerance,
            calm_wait_s=g.calm_wait_s or bg.calm_wait_s,
            min_fast=g.min_fast or bg.min_fast,
            max_attempts=g.max_attempts or bg.max_attempts,
        )
        changes["speed_gate"] = gate
        # A caller that raises min_runs above the base max_runs means "more runs".
        if changes.get("min_runs", 0) > changes.get("max_runs", base.max_runs):
            changes["max_runs"] = changes["min_runs"]
        if changes.get("min_s", 0) > changes.get("max_s", base.max_s):
            changes["max_s"] = changes["min_s"]
        return dataclasses.replace(base, **changes)


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise PolicyError(f"{name} must be positive, got {value!r}")


def _check_nonneg(name: str, value: float) -> None:
    if not value >= 0:
        raise PolicyError(f"{name} must be non-negative, got {value!r}")


DEFAULT_POLICY = MeasurePolicy()
