"""Prediction-quality metrics, as nn-Meter reports them (``latency_metrics``).

All take predicted and true latencies (ms) of the same held-out configs:

    rmse    sqrt(mean((pred - true)^2))                      ms
    rmspe   sqrt(mean(((pred - true) / true)^2)) * 100       percent
    error   rmse / mean(true)                                 fraction
    accN    share of configs with |pred - true| / true <= N%  fraction in [0, 1]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["relative_errors", "accuracy", "rmse", "rmspe", "latency_metrics"]


def _pair(pred: Sequence[float], true: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    t = np.asarray(true, dtype=np.float64).reshape(-1)
    if p.shape != t.shape:
        raise ValueError(f"predicted and true latencies differ in length: {p.size} != {t.size}")
    if t.size == 0:
        raise ValueError("no latencies to score")
    if np.any(t <= 0):
        raise ValueError("true latencies must be positive (relative errors divide by them)")
    return p, t


def relative_errors(pred: Sequence[float], true: Sequence[float]) -> np.ndarray:
    """Signed relative errors ``(pred - true) / true``, one per config."""
    p, t = _pair(pred, true)
    return (p - t) / t


def accuracy(pred: Sequence[float], true: Sequence[float], threshold: float) -> float:
    """Share of configs whose absolute relative error is at most ``threshold`` (0.1 = +-10%)."""
    return float(np.mean(np.abs(relative_errors(pred, true)) <= threshold))


def rmse(pred: Sequence[float], true: Sequence[float]) -> float:
    """Root mean squared error, in the latencies' unit (ms)."""
    p, t = _pair(pred, true)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def rmspe(pred: Sequence[float], true: Sequence[float]) -> float:
    """Root mean squared percentage error, in percent."""
    return float(np.sqrt(np.mean(relative_errors(pred, true) ** 2)) * 100.0)


def latency_metrics(pred: Sequence[float], true: Sequence[float]) -> dict[str, float]:
    """All of nn-Meter's metrics at once.

    Returns:
        ``{"rmse", "rmspe", "error", "acc5", "acc10", "acc15"}`` (see the module docstring).

    Raises:
        ValueError: lengths differ, nothing to score, or a true latency is not positive.

    Example:
        >>> m = latency_metrics([1.0, 2.1], [1.0, 2.0])
        >>> m["acc5"], m["acc10"], round(m["rmspe"], 3)
        (0.5, 1.0, 3.536)
    """
    p, t = _pair(pred, true)
    err = np.abs((p - t) / t)
    r = rmse(p, t)
    return {
        "rmse": r,
        "rmspe": float(np.sqrt(np.mean(err ** 2)) * 100.0),
        "error": r / float(np.mean(t)),
        "acc5": float(np.mean(err <= 0.05)),
        "acc10": float(np.mean(err <= 0.10)),
        "acc15": float(np.mean(err <= 0.15)),
    }
