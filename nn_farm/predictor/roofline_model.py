"""Roofline regressors: latency from a kernel's work, and the same with a boosted correction.

``roofline(kernel_type)`` fits latency = fixed cost + a * multiply-adds + b * elements
moved (:func:`~nn_farm.predictor.kernel_specs.cost_terms`, coefficients non-negative).
It extrapolates beyond the sampled sizes but misses what the runtime's kernels do
with particular shapes: channel counts that fill the vector lanes or not, tiles
that fit a cache or not, one microkernel or another picked by size.

:class:`RooflineBoosted` keeps the roofline as the scale and learns that detail as a
factor: gradient-boosted trees on log(latency / roofline), given the features and
the roofline's own log estimate, and for a depthwise conv how much of the vector
lanes its shape leaves idle (:func:`~nn_farm.predictor.kernel_specs.lane_terms`); a
conv's roofline counts its work in whole tiles of output channels as well.
On the conv and dwconv configs of two demo builds on this host (385 and 259,
five-fold cross-validation) it put 95.8% and 88.0% within +-10%, against 89.1% and
81.5% for boosting on log latency alone and 41% and 36% for the roofline alone; the
lane inputs then took dwconv from 82% to 92% on a kernel_accuracy workspace.

Both live in the predictor, not the builder, so that a package's pickled models
load wherever the predictor does.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

__all__ = ["roofline", "fit_roofline", "RooflineBoosted", "boosted_predict"]


def roofline(kernel_type: str, lanes: bool = True):
    """An unfitted roofline pipeline (:func:`fit_roofline` fits it).

    ``lanes``: a conv's work also counted in whole vector tiles of output channels
    (:func:`~nn_farm.predictor.kernel_specs.cost_terms`). Pipelines pickled before
    that carry no ``lanes`` argument and keep the two plain terms.
    """
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from nn_farm.predictor.kernel_specs import cost_terms

    return make_pipeline(FunctionTransformer(cost_terms, kw_args={"kernel_type": kernel_type, "lanes": lanes}),
                         LinearRegression(positive=True))


def fit_roofline(model, X, y):
    """Fit a :func:`roofline` pipeline by least squares of relative error (weights 1 / y**2)."""
    return model.fit(X, y, linearregression__sample_weight=1.0 / np.asarray(y, dtype=np.float64) ** 2)


def boosted_predict(base: Callable, correction: Callable, floor: float, X,
                    lanes: Callable | None = None) -> np.ndarray:
    """``base(X)`` (at least ``floor``) times ``exp(correction([X, lanes(X), log base]))``.

    The one definition of the arithmetic, so that the compiled predictor
    (:mod:`nn_farm.predictor.fast_regressor`) and ``predict`` agree bit for bit.
    """
    X = np.asarray(X, dtype=np.float64)
    scale = np.maximum(base(X), floor)
    return scale * np.exp(correction(_correction_input(X, scale, lanes)))


def _correction_input(X: np.ndarray, scale: np.ndarray, lanes: Callable | None) -> np.ndarray:
    return np.column_stack([X, *([] if lanes is None else [lanes(X)]), np.log(scale)])


class RooflineBoosted(RegressorMixin, BaseEstimator):
    """A roofline fit times a gradient-boosted correction (see the module doc).

    Args:
        kernel_type: the kernel type whose features ``X`` holds.
        n_estimators, learning_rate, max_depth, subsample, random_state: the boosting's.
        lanes: how full the vector lanes are, where the kernel type has a measure of it:
            the correction gets :func:`~nn_farm.predictor.kernel_specs.lane_terms`
            (dwconv) and the roofline counts work in whole tiles of output channels
            (conv; :func:`~nn_farm.predictor.kernel_specs.cost_terms`).

    Attributes:
        roofline_: the fitted roofline pipeline.
        correction_: the fitted GradientBoostingRegressor of log(latency / roofline).
        floor_: the smallest roofline estimate used (half the fastest training latency):
            the roofline's intercept may be negative, and a scale must stay positive.
    """

    def __init__(self, kernel_type: str, n_estimators: int = 300, learning_rate: float = 0.05,
                 max_depth: int = 3, subsample: float = 0.8, random_state: int | None = 0,
                 lanes: bool = True):
        self.kernel_type = kernel_type
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.subsample = subsample
        self.random_state = random_state
        self.lanes = lanes

    def fit(self, X, y):
        from sklearn.ensemble import GradientBoostingRegressor

        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if y.size == 0 or np.any(y <= 0):
            raise ValueError("latencies must be positive")
        self.roofline_ = fit_roofline(roofline(self.kernel_type, lanes=self.lanes), X, y)
        self.floor_ = 0.5 * float(y.min())
        scale = np.maximum(self.roofline_.predict(X), self.floor_)
        self.correction_ = GradientBoostingRegressor(
            n_estimators=self.n_estimators, learning_rate=self.learning_rate, max_depth=self.max_depth,
            subsample=self.subsample, random_state=self.random_state,
        ).fit(_correction_input(X, scale, self.lane_terms()), np.log(y / scale))
        self.n_features_in_ = X.shape[1]
        return self

    def lane_terms(self) -> Callable | None:
        """The lane inputs the correction takes, as a function of ``X`` (None: it takes none)."""
        from nn_farm.predictor.kernel_specs import lane_terms

        return partial(lane_terms, kernel_type=self.kernel_type) if self.lanes else None

    def predict(self, X) -> np.ndarray:
        return boosted_predict(self.roofline_.predict, self.correction_.predict, self.floor_, X,
                               self.lane_terms())

    def __setstate__(self, state):
        # Packages built before the lane inputs were fitted without them.
        state.setdefault("lanes", False)
        super().__setstate__(state)
