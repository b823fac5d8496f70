"""The regressors a kernel type can be fitted with, by name.

Every learner here is scikit-learn or built of it in the predictor, so a package's
pickled models load wherever the predictor does (it never imports the builder), and each
``predict(X)`` returns latency in ms from the features of
:func:`nn_farm.predictor.kernel_specs.features`.

    rf         nn-Meter's random forest, with its per-kernel hyperparameters
               (``predictor_builder/predictor_lib.py``: tree count, depth, max_features
               per kernel type and backend). The default.
    rf-log     the same forest grown on log latency, each leaf then holding the
               geometric mean latency of its samples. Relative errors are what the
               accuracy targets count, and on log latency a split weighs a 0.1 ms
               kernel as much as a 50 ms one. Still an exact RandomForestRegressor,
               so the predictor's compiled forest path serves it.
    gbm-log    gradient-boosted trees on log latency (TransformedTargetRegressor).
    linear     least squares on the feature vector (for conv/dwconv/fc that includes
               FLOPs and params), each config weighted by 1 / latency^2 so the fit
               minimises relative, not absolute, error: the FLOPs-linear baseline.
    loglinear  least squares of log latency on log features: a power law, which
               suits element-wise kernels (latency ~ HW^2 * CIN) that trees cannot
               extrapolate.
    roofline   latency = fixed cost + a * multiply-adds + b * elements moved (for a
               conv, multiply-adds in whole output-channel tiles too), the
               coefficients non-negative, fitted for relative error on
               :func:`nn_farm.predictor.kernel_specs.cost_terms`: few parameters, so it
               holds with few configs and beyond the sampled sizes.
    roofline-gbm  the roofline times a boosted correction factor learnt on
               log(latency / roofline): the scale from the roofline, the shape
               effects (vector lanes, cache tiles) from the trees
               (:class:`nn_farm.predictor.roofline_model.RooflineBoosted`, the one
               learner that is not plain scikit-learn; it lives in the predictor).

:func:`make_learner` builds an unfitted one; :func:`fit_learner` fits it (the log
forest needs its post-fit step).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nn_farm.predictor.kernel_specs import KERNEL_SPECS, feature_names, get_spec
from nn_farm.predictor.roofline_model import RooflineBoosted, fit_roofline, roofline

__all__ = [
    "LEARNERS",
    "SMALL_DATA_LEARNER",
    "DEFAULT_CANDIDATES",
    "HARDWARE",
    "NNMETER_RF_PARAMS",
    "hardware_of",
    "rf_params",
    "make_learner",
    "fit_learner",
    "is_forest",
]

LEARNERS = ("rf", "rf-log", "gbm-log", "linear", "loglinear", "roofline", "roofline-gbm")
# Below fit.MIN_TRAIN_FOR_CHOICE configs there is no choice to make by cross-validation
# (a fold holds three configs), and a forest cannot fill in between ten points. The
# roofline's three coefficients can: trained on 10 configs of each of the 14 small
# kernel types of three demo builds, it put 57% of the rest within +-10%, the forest 15%.
SMALL_DATA_LEARNER = "roofline"
# Tried per kernel on the training part; the best by cross-validated +-10% accuracy (then RMSPE) is kept.
DEFAULT_CANDIDATES = LEARNERS
HARDWARE = ("cpu", "gpu", "vpu")

# nn-Meter's per-kernel random-forest settings (max_depth, n_estimators, max_features)
# for its TFLite CPU, TFLite GPU and OpenVINO VPU predictors; every entry also has
# min_samples_leaf=1, min_samples_split=2 (scikit-learn's defaults). A missing
# backend falls back to the cpu entry.
NNMETER_RF_PARAMS: dict[str, dict[str, tuple[int, int, int]]] = {
    "conv-bn-relu": {"cpu": (70, 320, 6), "gpu": (80, 550, 5), "vpu": (100, 500, 5)},
    "dwconv-bn-relu": {"cpu": (50, 240, 6), "gpu": (40, 240, 7), "vpu": (100, 650, 5)},
    "fc": {"cpu": (50, 370, 2), "gpu": (70, 330, 4), "vpu": (70, 330, 4)},
    "channelshuffle": {"cpu": (50, 370, 2), "vpu": (50, 370, 2)},
    "se": {"cpu": (20, 290, 2), "gpu": (50, 190, 2), "vpu": (50, 110, 2)},
    "maxpool": {"cpu": (50, 210, 5), "gpu": (50, 370, 5), "vpu": (50, 370, 5)},
    "global-avgpool": {"cpu": (70, 370, 2)},
    "hswish": {"cpu": (50, 190, 2), "gpu": (50, 190, 2), "vpu": (50, 110, 2)},
    "swish": {"cpu": (50, 190, 2), "gpu": (50, 190, 2), "vpu": (50, 110, 2)},  # nn-Meter has none: hswish's
    "avgpool": {"cpu": (50, 370, 5), "gpu": (50, 370, 5), "vpu": (50, 390, 5)},
    "bnrelu": {"cpu": (50, 370, 2), "gpu": (50, 190, 2), "vpu": (50, 570, 2)},
    "relu": {"cpu": (50, 370, 2), "gpu": (50, 190, 2), "vpu": (50, 190, 2)},
    "bn": {"cpu": (50, 370, 2), "gpu": (50, 190, 2), "vpu": (50, 390, 2)},
    "concat": {"cpu": (100, 690, 5), "gpu": (100, 690, 5)},
    "addrelu": {"cpu": (50, 570, 3), "gpu": (50, 570, 3), "vpu": (50, 570, 3)},
    "add": {"cpu": (50, 570, 3), "gpu": (50, 570, 3), "vpu": (50, 570, 3)},
    "split": {"cpu": (50, 190, 2)},
}
# nn-Meter's fallback for a kernel it has no entry for (max_features "auto" = all).
_FALLBACK_RF = (50, 370, None)
# Kernels without their own entry use their family's (nn-Meter merges them the same way).
_FAMILY_ENTRY = {"conv": "conv-bn-relu", "dwconv": "dwconv-bn-relu"}


def hardware_of(backend: Any) -> str:
    """nn-Meter's hardware key for a backend: ``"cpu"``, ``"gpu"`` or ``"vpu"``.

    Args:
        backend: None, a backend name (``"tflite_gpu"``, ``"host-cpu-litert"``), or an
            object with a ``name`` (a :class:`~nn_farm.builder.backend.Backend`).
    """
    name = str(getattr(backend, "name", backend) or "").lower()
    if "gpu" in name:
        return "gpu"
    if "vpu" in name or "myriad" in name:
        return "vpu"
    return "cpu"


def rf_params(kernel_type: str, hardware: str = "cpu", seed: int = 0) -> dict:
    """The RandomForestRegressor keyword arguments nn-Meter uses for a kernel type.

    ``max_features`` is capped at the kernel's feature count, and ``random_state``
    is ``seed`` (nn-Meter fixes 10).
    """
    spec = get_spec(kernel_type)
    entry = NNMETER_RF_PARAMS.get(spec.name) or NNMETER_RF_PARAMS.get(
        _FAMILY_ENTRY.get(spec.family, ""), {})
    depth, trees, max_features = entry.get(hardware) or entry.get("cpu") or _FALLBACK_RF
    n_features = len(feature_names(spec.name))
    return {
        "n_estimators": trees,
        "max_depth": depth,
        "max_features": min(max_features, n_features) if max_features else 1.0,
        "min_samples_leaf": 1,
        "min_samples_split": 2,
        "random_state": seed,
    }


def make_learner(name: str, kernel_type: str, *, seed: int = 0, hardware: str = "cpu",
                 n_jobs: int | None = 1):
    """An unfitted regressor.

    Args:
        name: one of :data:`LEARNERS`.
        kernel_type: a kernel type of the predictor's kernel specs.
        seed: random seed (forests and boosting).
        hardware: ``"cpu"``, ``"gpu"`` or ``"vpu"`` (nn-Meter's forest settings).
        n_jobs: forest fitting workers (-1: all the joblib backend offers).

    Raises:
        ValueError: unknown learner name.
    """
    if kernel_type not in KERNEL_SPECS:
        kernel_type = get_spec(kernel_type).name
    if name in ("rf", "rf-log"):
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(**rf_params(kernel_type, hardware, seed), n_jobs=n_jobs)
    if name == "gbm-log":
        from sklearn.compose import TransformedTargetRegressor
        from sklearn.ensemble import GradientBoostingRegressor

        gbm = GradientBoostingRegressor(n_estimators=200, learning_rate=0.1, max_depth=3,
                                        subsample=0.8, random_state=seed)
        return TransformedTargetRegressor(gbm, func=np.log, inverse_func=np.exp)
    if name == "linear":
        from sklearn.linear_model import LinearRegression

        return LinearRegression()
    if name == "loglinear":
        from sklearn.compose import TransformedTargetRegressor
        from sklearn.linear_model import LinearRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import FunctionTransformer

        # log1p: concat's absent inputs are 0.
        power_law = make_pipeline(FunctionTransformer(np.log1p), LinearRegression())
        return TransformedTargetRegressor(power_law, func=np.log, inverse_func=np.exp)
    if name == "roofline":
        return roofline(kernel_type)
    if name == "roofline-gbm":
        return RooflineBoosted(kernel_type, random_state=seed)
    raise ValueError(f"unknown learner {name!r}; known: {', '.join(LEARNERS)}")


def fit_learner(name: str, kernel_type: str, X: np.ndarray, y_ms: np.ndarray, *, seed: int = 0,
                hardware: str = "cpu", n_jobs: int | None = 1, max_trees: int | None = None):
    """Make and fit a learner on features ``X`` and latencies ``y_ms``.

    Args:
        max_trees: cap on a forest's or boosting's tree count (a cheaper proxy when
            only comparing learners).

    Returns:
        The fitted regressor; ``predict(X)`` gives ms.
    """
    model = make_learner(name, kernel_type, seed=seed, hardware=hardware, n_jobs=n_jobs)
    if max_trees:
        inner = getattr(model, "regressor", model)
        if hasattr(inner, "n_estimators"):
            inner.n_estimators = min(inner.n_estimators, max_trees)
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y_ms, dtype=np.float64)
    if name == "rf-log":
        model.fit(X, np.log(y))
        for tree in model.estimators_:
            # Every node value becomes exp(mean log latency): leaves predict the
            # geometric mean of their samples, and the forest averages those.
            values = tree.tree_.value
            values[...] = np.exp(values)
    elif name == "linear":
        model.fit(X, y, sample_weight=1.0 / y ** 2)  # least squares of relative error
    elif name == "roofline":
        fit_roofline(model, X, y)
    else:
        model.fit(X, y)
    if hasattr(model, "n_jobs"):
        # Predict sequentially: no workers in a package, and threaded prediction sums
        # the trees in a varying order (results differing in the last bit).
        model.n_jobs = 1
    return model


def is_forest(name: str) -> bool:
    """Whether a learner is a random forest (the kind worth spreading over a cluster)."""
    return name in ("rf", "rf-log")
