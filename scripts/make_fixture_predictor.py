#!/usr/bin/env python
"""Generate the SYNTHETIC test-fixture predictor package.

    random configs per kernel type -> kernel_specs.features -> made-up latency
    -> tiny random forest per kernel type -> save_package

The latencies are invented (proportional to FLOPs plus a memory term), not measured
on any device: the package exists so tests and demos can exercise loading,
prediction and the CLI. Its name says so: ``synthetic-fixture``. Real packages come
from ``nn-farm build``.

Usage:
    .venv/bin/python scripts/make_fixture_predictor.py [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestRegressor

from nn_farm.predictor.kernel_specs import KERNEL_SPECS, features
from nn_farm.predictor.package import save_package

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "nn_farm/predictor/fixtures/synthetic_fixture_cpu"
N_SAMPLES = 400
HW_CHOICES = np.array([1, 3, 7, 14, 28, 56, 112, 224])

# nn-Meter's detected_fusion_rule.json format: "BF_<a>_<b>" obeyed means a and b fuse.
FUSION_RULES = {
    **{f"BF_{a}_{b}": {"obey": True} for a, b in [
        ("conv", "bn"), ("conv", "relu"), ("conv", "relu6"), ("conv", "hswish"),
        ("dwconv", "bn"), ("dwconv", "relu"), ("dwconv", "relu6"), ("dwconv", "hswish"),
        ("bn", "relu"), ("bn", "relu6"), ("bn", "hswish"), ("add", "relu"), ("fc", "relu"),
    ]},
    **{f"BF_{a}_{b}": {"obey": False} for a, b in [
        ("conv", "add"), ("add", "add"), ("relu", "add"), ("concat", "conv"),
    ]},
}


def sample_configs(kernel_type: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """Random configs of one kernel type, as rows in the spec's config_keys order."""
    family = KERNEL_SPECS[kernel_type].family
    hw = rng.choice(HW_CHOICES, n)
    cin = rng.integers(3, 513, n)
    if family == "conv":
        return np.column_stack([hw, cin, rng.integers(8, 1025, n), rng.choice([1, 3, 5, 7], n),
                                rng.choice([1, 2], n)])
    if family == "dwconv":
        return np.column_stack([hw, cin, rng.choice([3, 5, 7], n), rng.choice([1, 2], n)])
    if family == "pool":
        return np.column_stack([hw, cin, rng.choice([2, 3], n), rng.choice([1, 2], n)])
    if family == "fc":
        return np.column_stack([rng.integers(16, 2049, n), rng.integers(10, 1001, n)])
    if family == "concat":
        ns = rng.integers(2, 5, n)
        cins = rng.integers(8, 513, (n, 4)) * (np.arange(4) < ns[:, None])
        return np.column_stack([hw, ns, cins])
    return np.column_stack([hw, cin])  # add, hw_cin


def made_up_latency_ms(kernel_type: str, configs: np.ndarray, rng: np.random.Generator):
    """Invented latency: 0.1 ms per mega multiply-add plus a memory-traffic term."""
    X = features(kernel_type, configs)
    names = KERNEL_SPECS[kernel_type].feature_names
    col = {name: X[:, i] for i, name in enumerate(names)}
    hw = col.get("HW", np.ones(len(X)))
    channels = sum(col[k] for k in ("CIN", "CIN1", "CIN2", "CIN3", "CIN4", "COUT") if k in col)
    memory_m = hw * hw * channels / 1e6
    compute_m = col.get("FLOPS", np.zeros(len(X)))
    latency = 0.01 + 0.1 * compute_m + 0.3 * memory_m
    return latency * rng.normal(1.0, 0.02, len(X))  # a little measurement noise


def build(out_dir: Path) -> Path:
    rng = np.random.default_rng(20261122)
    models, metrics = {}, {}
    for kernel_type in KERNEL_SPECS:
        configs = sample_configs(kernel_type, rng, N_SAMPLES)
        y = made_up_latency_ms(kernel_type, configs, rng)
        X = features(kernel_type, configs)
        split = int(0.8 * N_SAMPLES)
        model = RandomForestRegressor(n_estimators=3, max_depth=6, random_state=0)
        model.fit(X[:split], y[:split])
        pred, true = model.predict(X[split:]), y[split:]
        error = (pred - true) / true
        metrics[kernel_type] = {
            "rmse_ms": float(np.sqrt(np.mean((pred - true) ** 2))),
            "rmspe_percent": float(np.sqrt(np.mean(error ** 2)) * 100),
            "acc10": float(np.mean(np.abs(error) <= 0.10)),
            "n_train": split,
            "n_test": N_SAMPLES - split,
        }
        models[kernel_type] = model
    return save_package(
        out_dir, "synthetic-fixture", "1.0", models, FUSION_RULES,
        device="synthetic-cpu", runtime="synthetic", runtime_version="0",
        metrics=metrics,
        extra={"note": "SYNTHETIC test fixture: invented latencies, not measured on any device"},
        overwrite=True,
    )


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    path = build(out)
    size_kb = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1024
    print(f"wrote {path} ({size_kb:.0f} KiB)")
