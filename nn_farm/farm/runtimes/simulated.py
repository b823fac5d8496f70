"""A SIMULATED runtime: it sleeps instead of running a model.

Only for benchmarks of the farm's scaling (many devices, no hardware); never a
default device and never what a feature is tested on. Its "model file" is JSON:

    {"simulated_latency_ms": 3.0, "jitter": 0.05}

and each run sleeps a latency drawn lognormally around the nominal value
(``jitter`` is the log-space standard deviation).
"""

from __future__ import annotations

import json
import time

import numpy as np

from nn_farm.farm.runtimes.base import Runtime, RuntimeStatus, Session


class SimulatedSession(Session):
    cpu_bound = False  # it sleeps

    def __init__(self, latency_ms: float, jitter: float, seed: int, identity: dict) -> None:
        super().__init__([], identity)
        self._latency_ms, self._jitter = latency_ms, jitter
        self._rng = np.random.default_rng(seed)

    def run(self) -> None:
        time.sleep(self._latency_ms * float(self._rng.lognormal(0.0, self._jitter)) / 1000.0)


class SimulatedRuntime(Runtime):
    name = "simulated"
    formats = ("json",)
    defaults = {"seed": 0}

    def status(self, options: dict | None = None) -> RuntimeStatus:
        return RuntimeStatus(True, "simulated")

    def load(self, path, inputs=None, options=None) -> Session:
        opts = self.options(options)
        path = self.check_file(path)
        try:
            with open(path) as f:
                spec = json.load(f)
            latency_ms = float(spec["simulated_latency_ms"])
            jitter = float(spec.get("jitter", 0.05))
            if not latency_ms >= 0 or not jitter >= 0:
                raise ValueError(f"latency and jitter must be non-negative, got {latency_ms}, {jitter}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise self.invalid(path, exc) from exc
        return SimulatedSession(latency_ms, jitter, int(opts["seed"]), {"threads": 1, "delegate": "simulated"})
