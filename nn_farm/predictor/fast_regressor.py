"""Call a kernel regressor without scikit-learn's per-call overhead.

A NAS loop prices one model in a handful of regressor calls, each on a few rows.
At that size scikit-learn's ``predict`` is almost all overhead: input validation,
joblib dispatch of a forest's trees (1.3 ms for nn-Meter's 370-tree forests), a
pipeline's and a target transform's wrappers (0.2 to 0.3 ms each). Against a 2 ms
per-model budget that is too much.

:func:`compile_regressor` rebuilds ``predict`` from the fitted parts, for the
estimators nn-Meter and nn-farm train: forests, single trees and gradient
boosting through scikit-learn's compiled tree loop, linear models as a dot
product, pipelines of function transformers, log-target wrappers, and the
roofline-times-boosting model built of those. Each part
does the same arithmetic in the same order and dtype as scikit-learn, and a
compiled function is only used after it gave bit-identical results to
``model.predict`` on probe rows; anything else keeps its own ``predict``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

__all__ = ["compile_regressor"]

Predict = Callable[[np.ndarray], np.ndarray]

_PROBE_ROWS = 32


def compile_regressor(model: Any) -> Predict:
    """Return ``f(X) -> y``, equal to ``model.predict(X)`` but cheaper to call.

    Args:
        model: a fitted regressor with ``predict(X)``.

    Returns:
        A function taking X of shape (n, n_features) and returning float64 ms of shape (n,);
        its ``compiled`` attribute says whether it is the fast path or ``model.predict``.
    """
    generic = _generic_predictor(model)
    generic.compiled = False
    try:
        fast = _compile(model)
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        fast = None
    if fast is None or not _agrees(fast, generic, getattr(model, "n_features_in_", None)):
        return generic
    fast.compiled = True  # for tests and benchmarks: which path a package's kernels take
    return fast


def _agrees(fast: Predict, generic: Predict, n_features: int | None) -> bool:
    """Whether ``fast`` gives exactly what scikit-learn gives, on positive probe features."""
    if not n_features:
        return False
    rng = np.random.default_rng(0)
    # Features are sizes, counts, FLOPs: positive, from 1 to millions.
    probe = np.exp(rng.uniform(0.0, 14.0, size=(_PROBE_ROWS, n_features))).round()
    try:
        with np.errstate(all="ignore"):
            return bool(np.array_equal(fast(probe), generic(probe), equal_nan=True))
    except Exception:
        return False


def _generic_predictor(model) -> Predict:
    def predict(X: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(X), dtype=np.float64).reshape(len(X))

    return predict


def _compile(model) -> Predict | None:
    """The compiled ``predict`` of a known estimator type, else None (exact types only:
    a subclass may override ``predict``)."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingRegressor, RandomForestRegressor
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.tree import DecisionTreeRegressor, ExtraTreeRegressor

    kind = type(model)
    if getattr(model, "n_outputs_", 1) != 1:
        return None
    if kind in (RandomForestRegressor, ExtraTreesRegressor):
        return _forest(model)
    if kind in (DecisionTreeRegressor, ExtraTreeRegressor):
        return _tree_sum(np.array([[model]], dtype=object), scale=1.0, divide_by=1)
    if kind is GradientBoostingRegressor:
        return _boosting(model)
    if kind is LinearRegression:
        return _linear(model)
    if kind is Pipeline:
        return _pipeline(model)
    if kind is TransformedTargetRegressor:
        return _target_transformed(model)
    from nn_farm.predictor.roofline_model import RooflineBoosted

    if kind is RooflineBoosted:
        return _roofline_boosted(model)
    return None


def _roofline_boosted(model) -> Predict | None:
    from nn_farm.predictor.roofline_model import boosted_predict

    base, correction = _compile(model.roofline_), _compile(model.correction_)
    if base is None or correction is None:
        return None
    floor, lanes = model.floor_, model.lane_terms()
    return lambda X: boosted_predict(base, correction, floor, X, lanes)


def _tree_sum(trees: np.ndarray, scale: float, divide_by: int, start=None) -> Predict:
    """``start + scale * sum(tree(X))``, divided by ``divide_by``: scikit-learn's own compiled
    loop over trees (the one gradient boosting predicts with), adding in tree order."""
    from sklearn.ensemble._gradient_boosting import predict_stages

    def predict(X: np.ndarray) -> np.ndarray:
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        out = np.zeros((len(X32), 1)) if start is None else np.tile(start, (len(X32), 1))
        predict_stages(trees, X32, scale, out)
        out = out[:, 0]
        if divide_by != 1:
            out /= divide_by  # as the forest averages: in place, after the sum
        return out

    return predict


def _forest(model) -> Predict | None:
    from sklearn.tree import DecisionTreeRegressor, ExtraTreeRegressor

    trees = list(getattr(model, "estimators_", []))
    if not trees or any(type(t) not in (DecisionTreeRegressor, ExtraTreeRegressor) for t in trees):
        return None
    return _tree_sum(np.array(trees, dtype=object).reshape(-1, 1), scale=1.0, divide_by=len(trees))


def _boosting(model) -> Predict | None:
    from sklearn.dummy import DummyRegressor

    if type(model.init_) is not DummyRegressor or model.estimators_.shape[1] != 1:
        return None
    # A DummyRegressor init predicts one constant row, whatever the input.
    start = model._raw_predict_init(np.zeros((1, model.n_features_in_), dtype=np.float32))[0]
    return _tree_sum(model.estimators_, scale=model.learning_rate, divide_by=1, start=start)


def _linear(model) -> Predict | None:
    coef, intercept = np.asarray(model.coef_), model.intercept_
    if coef.ndim != 1:
        return None

    def predict(X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ coef + intercept

    return predict


def _function(transformer) -> Callable[[np.ndarray], np.ndarray] | None:
    from sklearn.preprocessing import FunctionTransformer

    if type(transformer) is not FunctionTransformer or transformer.validate:
        return None
    func, kwargs = transformer.func, transformer.kw_args or {}
    if func is None:
        return lambda X: X
    return lambda X: func(X, **kwargs)


def _pipeline(model) -> Predict | None:
    transforms = [_function(step) for _, step in model.steps[:-1]]
    final = _compile(model.steps[-1][1])
    if final is None or any(t is None for t in transforms):
        return None

    def predict(X: np.ndarray) -> np.ndarray:
        for transform in transforms:
            X = transform(X)
        return final(X)

    return predict


def _target_transformed(model) -> Predict | None:
    from sklearn.preprocessing import FunctionTransformer

    inner = _compile(model.regressor_)
    transformer = model.transformer_
    # Its own FunctionTransformer validates (check_array), which for the finite float64
    # column a regressor returns changes nothing.
    if inner is None or type(transformer) is not FunctionTransformer:
        return None
    inverse, kwargs = transformer.inverse_func, transformer.inv_kw_args or {}
    if inverse is None:
        return inner

    def predict(X: np.ndarray) -> np.ndarray:
        return inverse(inner(X).reshape(-1, 1), **kwargs)[:, 0]

    return predict
