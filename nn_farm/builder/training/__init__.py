"""Training kernel latency predictors: learners, metrics, fits, parallel training, packages.

    learners.py  one regressor per kernel type: nn-Meter's per-kernel forests and alternatives
    metrics.py   RMSE, RMSPE, +-5/10/15% accuracy
    fit.py       split_ids (8:2), fit_kernel, fit_kernel_data, build_predictor_by_data
    parallel.py  train_kernels: one Ray task per kernel type; joblib-on-Ray for big forests
    package.py   write_predictor_package: package, register, fusion rules

Names are loaded on first use, so importing this package pulls in neither
scikit-learn nor Ray.
"""

from __future__ import annotations

from nn_farm._lazy import lazy_exports

_EXPORTS = {
    "KernelFit": "nn_farm.builder.training.fit",
    "split_ids": "nn_farm.builder.training.fit",
    "fit_kernel": "nn_farm.builder.training.fit",
    "fit_kernel_data": "nn_farm.builder.training.fit",
    "build_predictor_by_data": "nn_farm.builder.training.fit",
    "train_kernels": "nn_farm.builder.training.parallel",
    "write_predictor_package": "nn_farm.builder.training.package",
    "latency_metrics": "nn_farm.builder.training.metrics",
    "LEARNERS": "nn_farm.builder.training.learners",
    "make_learner": "nn_farm.builder.training.learners",
}

__all__, __getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
