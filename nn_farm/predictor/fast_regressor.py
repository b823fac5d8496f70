"""Call a kernel regressor without scikit-learn's per-call overhead.

``RandomForestRegressor.predict`` validates its input and dispatches the trees
through joblib on every call: about 1 ms even for 30 rows, which alone would break
the 2 ms per-model budget of a NAS loop. For the tree ensembles nn-Meter and
nn-farm train, :func:`compile_regressor` returns a function that feeds the trees'
compiled ``tree_.predict`` directly, summing in the same order and dtype as
scikit-learn, so the results are bit-identical. Any other regressor keeps its own
``predict``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

__all__ = ["compile_regressor"]


def _tree_output(tree, X32: np.ndarray) -> np.ndarray:
    # tree_.predict returns (n, n_outputs) or (n, n_outputs, 1) depending on the version.
    return tree.tree_.predict(X32).reshape(len(X32), -1)[:, 0]


def _forest_predictor(estimators: list) -> Callable[[np.ndarray], np.ndarray]:
    def predict(X: np.ndarray) -> np.ndarray:
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        out = np.zeros(len(X32), dtype=np.float64)
        for tree in estimators:
            out += _tree_output(tree, X32)
        out /= len(estimators)
        return out

    return predict


def _tree_predictor(tree) -> Callable[[np.ndarray], np.ndarray]:
    def predict(X: np.ndarray) -> np.ndarray:
        return _tree_output(tree, np.ascontiguousarray(X, dtype=np.float32)).astype(np.float64)

    return predict


def _generic_predictor(model) -> Callable[[np.ndarray], np.ndarray]:
    def predict(X: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(X), dtype=np.float64).reshape(len(X))

    return predict


def compile_regressor(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Return ``f(X) -> y``, equal to ``model.predict(X)`` but cheaper to call.

    Args:
        model: a fitted regressor with ``predict(X)``.

    Returns:
        A function taking X of shape (n, n_features) and returning float64 ms of shape (n,).
    """
    try:
        from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor
        from sklearn.tree import DecisionTreeRegressor, ExtraTreeRegressor
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        return _generic_predictor(model)

    # Exact classes only: a subclass may override predict.
    if type(model) in (RandomForestRegressor, ExtraTreesRegressor):
        estimators = list(getattr(model, "estimators_", []))
        if estimators and getattr(model, "n_outputs_", 1) == 1 and all(
            type(t) in (DecisionTreeRegressor, ExtraTreeRegressor) for t in estimators
        ):
            return _forest_predictor(estimators)
    if type(model) in (DecisionTreeRegressor, ExtraTreeRegressor) and hasattr(model, "tree_"):
        if getattr(model, "n_outputs_", 1) == 1:
            return _tree_predictor(model)
    return _generic_predictor(model)
