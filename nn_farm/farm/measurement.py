"""A measurement: the raw samples of one model on one device, and their statistics.

Statistics are computed over the *kept* samples (the runs taken in the host's
fast state when speed gating is on; every run when it is off). The raw samples,
the probe beside each, and the policy that produced them are always kept, so a
reader can recompute anything.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from nn_farm.farm.policy import MeasurePolicy


@dataclass(frozen=True)
class Stats:
    mean_ms: float
    std_ms: float
    median_ms: float
    p10_ms: float
    p90_ms: float
    trimmed_mean_ms: float
    min_ms: float


def robust_stats(samples_ms: Sequence[float], trim_fraction: float = 0.1) -> Stats:
    """Mean, std, median, p10/p90, trimmed mean and minimum of ``samples_ms``."""
    x = np.sort(np.asarray(samples_ms, dtype=float))
    if x.size == 0:
        nan = float("nan")
        return Stats(nan, nan, nan, nan, nan, nan, nan)
    cut = int(x.size * trim_fraction)
    trimmed = x[cut: x.size - cut] if x.size - 2 * cut > 0 else x
    return Stats(
        mean_ms=float(x.mean()),
        std_ms=float(x.std(ddof=1)) if x.size > 1 else 0.0,
        median_ms=float(np.median(x)),
        p10_ms=float(np.percentile(x, 10)),
        p90_ms=float(np.percentile(x, 90)),
        trimmed_mean_ms=float(trimmed.mean()),
        min_ms=float(x[0]),
    )


@dataclass
class Measurement:
    """One model measured on one device.

    Attributes:
        samples_ms: every timed run, in order (all attempts).
        probe_ms: the speed probe's time beside each run (empty when ungated).
        kept: per run, whether it counts (taken in the fast state).
        speed_factor: median probe over best probe for the kept runs; 1.0 is the
            host's fast state, 1.25 means 25% slower.
        speed_state: "fast", "slow" (too few fast runs even after retries) or "ungated".
    """

    model_digest: str = ""
    device_id: str = ""
    device_class: str = ""
    runtime: str = ""
    runtime_version: str = ""
    device: dict = field(default_factory=dict)
    policy: MeasurePolicy = field(default_factory=MeasurePolicy)
    samples_ms: list[float] = field(default_factory=list)
    probe_ms: list[float] = field(default_factory=list)
    kept: list[bool] = field(default_factory=list)
    mean_ms: float = float("nan")
    std_ms: float = float("nan")
    median_ms: float = float("nan")
    p10_ms: float = float("nan")
    p90_ms: float = float("nan")
    trimmed_mean_ms: float = float("nan")
    min_ms: float = float("nan")
    runs: int = 0
    kept_runs: int = 0
    speed_factor: float = 1.0
    speed_state: str = "ungated"
    best_probe_ms: float = 0.0
    attempts: int = 1
    calm_wait_s: float = 0.0
    started_unix_s: float = 0.0
    finished_unix_s: float = 0.0

    def compute_stats(self) -> "Measurement":
        """Fill the statistics from samples_ms and kept; returns self."""
        kept = self.kept if len(self.kept) == len(self.samples_ms) else [True] * len(self.samples_ms)
        chosen = [s for s, k in zip(self.samples_ms, kept) if k]
        stats = robust_stats(chosen, self.policy.trim_fraction)
        for name, value in dataclasses.asdict(stats).items():
            setattr(self, name, value)
        self.runs = len(self.samples_ms)
        self.kept_runs = len(chosen)
        return self

    @property
    def latency_ms(self) -> float:
        """The one number to use: the mean of kept runs."""
        return self.mean_ms

    def nnmeter_latency(self) -> str:
        """nn-Meter's latency string, "mean +- std" in ms."""
        return f"{self.mean_ms} +- {self.std_ms}"

    def summary(self) -> str:
        return (f"{self.mean_ms:.3f} +- {self.std_ms:.3f} ms (median {self.median_ms:.3f}, "
                f"{self.kept_runs}/{self.runs} runs kept, speed {self.speed_state} x{self.speed_factor:.2f})")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["policy"] = self.policy.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Measurement":
        d = dict(d)
        d["policy"] = MeasurePolicy.from_dict(d.get("policy"))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_proto(self):
        from nn_farm.farm._proto import farm_pb2 as pb

        msg = pb.Measurement(
            model_digest=self.model_digest,
            device_id=self.device_id,
            device_class=self.device_class,
            runtime=self.runtime,
            runtime_version=self.runtime_version,
            device=identity_to_proto(self.device),
            policy=self.policy.to_proto(),
            samples_ms=self.samples_ms,
            probe_ms=self.probe_ms,
            kept=self.kept,
        )
        for name in _SCALARS:
            setattr(msg, name, getattr(self, name))
        return msg

    @classmethod
    def from_proto(cls, msg) -> "Measurement":
        m = cls(
            model_digest=msg.model_digest,
            device_id=msg.device_id,
            device_class=msg.device_class,
            runtime=msg.runtime,
            runtime_version=msg.runtime_version,
            device=identity_from_proto(msg.device),
            policy=policy_from_wire(msg.policy.SerializeToString()),
            samples_ms=list(msg.samples_ms),
            probe_ms=list(msg.probe_ms),
            kept=list(msg.kept),
        )
        for name in _SCALARS:
            setattr(m, name, getattr(msg, name))
        return m


@functools.lru_cache(maxsize=256)
def policy_from_wire(wire: bytes) -> MeasurePolicy:
    """:meth:`MeasurePolicy.from_proto` of a serialized ``MeasurePolicy``, memoised.

    Clients send (and read back) the same few policies call after call, and
    building one (defaults, validation) costs more than serializing the small
    message to look it up. The record is frozen, so sharing it is safe.

    Raises:
        PolicyError: a value out of range (errors are not memoised).
    """
    from nn_farm.farm._proto import farm_pb2 as pb

    return MeasurePolicy.from_proto(pb.MeasurePolicy.FromString(wire))


# Scalar fields that travel unchanged between the record and the wire message.
_SCALARS = ("mean_ms", "std_ms", "median_ms", "p10_ms", "p90_ms", "trimmed_mean_ms", "min_ms",
            "runs", "kept_runs", "speed_factor", "speed_state", "best_probe_ms", "attempts",
            "calm_wait_s", "started_unix_s", "finished_unix_s")
_IDENTITY_FIELDS = ("hostname", "cpu_model", "os", "serial", "threads", "delegate", "cpu_affinity")


def identity_to_proto(identity: dict):
    from nn_farm.farm._proto import farm_pb2 as pb

    known = {k: v for k, v in (identity or {}).items() if k in _IDENTITY_FIELDS}
    if "cpu_affinity" in known:
        known["cpu_affinity"] = list(known["cpu_affinity"])
    return pb.DeviceIdentity(**known)


def identity_from_proto(msg) -> dict:
    d = {name: getattr(msg, name) for name in _IDENTITY_FIELDS}
    d["cpu_affinity"] = list(d["cpu_affinity"])
    return d
