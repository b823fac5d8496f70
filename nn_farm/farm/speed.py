"""The speed probe: a tiny fixed timing loop that shows the host's speed state.

A VM host drifts between speed states (10 to 40% slower for seconds to
minutes) and nothing inside the VM reports it: no steal time, no busy process.
A fixed piece of CPU work timed often does show it, so nn-farm times one beside
every model run and keeps only the runs taken while it reads fast.

The work is a few small single-precision matrix products (vector FMA units and
L1/L2 cache, like a network's kernels) plus the Python loop around them (like a
runtime's dispatch). The matrices are small enough that BLAS stays on one
thread, and the operands never change, so every probe does identical work.
"""

from __future__ import annotations

import bisect
import statistics
import time

import numpy as np

from nn_farm.farm.policy import SpeedGate


class SpeedProbe:
    """Times a fixed workload; remembers the fastest readings as the fast-state reference.

    Args:
        size: side of the square matrices (48: below OpenBLAS's threading threshold).
        reps: matrix products per probe (24: about 0.05 to 0.1 ms on a 2020s server core).
        rank: ``best_ms`` is the ``rank``-th fastest reading, so up to ``rank - 1``
            lucky readings (a timer quirk, a turbo blip) do not set the reference.
        window: probes per window while waiting for calm (see wait_for_calm).
        calm_period_s: how long the probe must read fast to call the host calm.

    Attributes:
        best_ms: the fast-state reference in ms; it only ever decreases, and
            lives as long as the probe (one per measuring process).

    Example:
        >>> probe = SpeedProbe()
        >>> probe.sample() > 0
        True
    """

    def __init__(self, size: int = 48, reps: int = 24, rank: int = 3,
                 window: int = 16, calm_period_s: float = 0.1) -> None:
        self.size, self.reps, self.rank = size, reps, rank
        self.window, self.calm_period_s = window, calm_period_s
        rng = np.random.default_rng(0)
        # Well-scaled operands: the products stay finite and never denormal.
        self._a = (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32)
        self._b = (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32)
        self._out = np.empty((size, size), np.float32)
        self._fastest: list[float] = []  # the `rank` lowest readings, sorted

    def _measure_ms(self) -> float:
        """Time the workload once, in ms (test doubles override this)."""
        a, b, out = self._a, self._b, self._out
        # One untimed product first: the model run just before evicted the
        # operands from cache, and the probe should time the CPU, not the refill.
        np.matmul(a, b, out=out)
        t0 = time.perf_counter()
        for _ in range(self.reps):
            np.matmul(a, b, out=out)
        return (time.perf_counter() - t0) * 1e3

    def sample(self) -> float:
        """Run the probe once.

        Returns:
            The probe's time in ms (also folded into ``best_ms``).
        """
        ms = self._measure_ms()
        if len(self._fastest) < self.rank or ms < self._fastest[-1]:
            bisect.insort(self._fastest, ms)
            del self._fastest[self.rank:]
        return ms

    def calibrate(self, n: int = 30) -> float:
        """Take ``n`` readings; returns ``best_ms``."""
        for _ in range(n):
            self.sample()
        return self.best_ms

    @property
    def best_ms(self) -> float:
        """The fast-state reference: the ``rank``-th fastest reading so far, in ms."""
        if len(self._fastest) < self.rank:
            self.calibrate(self.rank)
        return self._fastest[-1]

    def threshold_ms(self, tolerance: float) -> float:
        """The slowest probe time that still counts as fast, in ms."""
        return self.best_ms * (1.0 + tolerance)

    def is_fast(self, probe_ms: float, tolerance: float) -> bool:
        """Whether a probe reading is within ``tolerance`` of ``best_ms``."""
        return probe_ms <= self.threshold_ms(tolerance)

    def wait_for_calm(self, gate: SpeedGate) -> float:
        """Probe back to back until the host has read fast for ``calm_period_s``.

        Readings come in windows of ``window`` probes; a window is fast when
        its median is within ``gate.tolerance`` of ``best_ms`` (a median, so one
        preempted probe does not break a calm period). Probing never sleeps:
        a core that idles wakes up slow and would read slow.

        Args:
            gate: gives the tolerance and the longest wait, ``calm_wait_s``.

        Returns:
            Seconds waited: after a calm period, or about ``gate.calm_wait_s``
            if none came (the caller then measures anyway and gates runs).
        """
        if not gate.enabled or gate.calm_wait_s <= 0:
            return 0.0
        start = time.monotonic()
        calm_since = None
        while True:
            window_start = time.monotonic()
            readings = [self.sample() for _ in range(self.window)]
            now = time.monotonic()
            if self.is_fast(statistics.median(readings), gate.tolerance):
                calm_since = window_start if calm_since is None else calm_since
                if now - calm_since >= self.calm_period_s:
                    return now - start
            else:
                calm_since = None
            if now - start >= gate.calm_wait_s:
                return now - start


_default_probe: SpeedProbe | None = None


def default_probe() -> SpeedProbe:
    """The probe shared by every measurement in this process (its best_ms persists)."""
    global _default_probe
    if _default_probe is None:
        _default_probe = SpeedProbe()
    return _default_probe
