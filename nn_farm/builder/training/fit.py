"""Fitting one kernel type's regressor: split, choose a learner, score, find bad configs.

    configs + latency_ms --split_ids (8:2)--> train / test
    train --features--> X --(cross-validated choice among learners)--> model
    test  --model--> predicted ms --latency_metrics--> rmse, rmspe, acc5/10/15
                                  --|error| > threshold--> error_configs (for fine-grained sampling)

Features come only from :func:`nn_farm.predictor.kernel_specs.features`, so a model
fitted here predicts inside any package the predictor loads.

Choosing the learner: with ``learner=None`` every name in ``candidates`` is scored
by k-fold cross-validation on the *training* part: the +-10% accuracy of its
out-of-fold predictions (what the accuracy targets count), then RMSPE to break
ties. The best is refitted on the whole training part. The held-out 20% is
used only to report the chosen model, so its metrics are not flattered by the
choice. ``learner="rf"`` fixes nn-Meter's forest.

:func:`build_predictor_by_data` keeps nn-Meter's signature and return value
``(predictor, acc10, error_configs)`` and writes the same files under ``save_path``.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from nn_farm.builder.training.learners import (DEFAULT_CANDIDATES, LEARNERS, SMALL_DATA_LEARNER,
                                               fit_learner, hardware_of)
from nn_farm.builder.training.metrics import latency_metrics
from nn_farm.predictor.kernel_specs import features, get_spec

__all__ = ["KernelFit", "split_ids", "fit_kernel", "fit_kernel_data", "build_predictor_by_data"]

log = logging.getLogger("nn_farm.builder.training")

# Below this many training configs a cross-validated choice is noise: SMALL_DATA_LEARNER
# (or the first candidate, if it is not one).
MIN_TRAIN_FOR_CHOICE = 15


@dataclass
class KernelFit:
    """One kernel type's fitted regressor and how well it predicts held-out configs.

    Attributes:
        kernel_type: the kernel type.
        model: regressor fitted on the training part; ``predict(X)`` gives ms.
        learner: the learner's name (see :data:`~nn_farm.builder.training.learners.LEARNERS`).
        metrics: on the held-out part: ``rmse`` (ms), ``rmspe`` (%), ``error``
            (rmse / mean), ``acc5``, ``acc10``, ``acc15`` (fractions), ``n_train``,
            ``n_test``. Scores are NaN when there is no held-out config.
        test_errors: signed relative error ``(pred - true) / true`` per test config.
        error_configs: test configs with ``|error| > error_threshold``.
        test_configs: the held-out configs, in ``test_errors`` order.
        test_latency_ms, test_pred_ms: their measured and predicted latencies.
        test_ids: their ids (when the data had ids).
        candidates: per learner tried, ``{"acc10", "rmspe"}`` of its out-of-fold
            predictions on the training part (empty when the learner was fixed).
        final_model: the same learner refitted on train + test (``refit=True``), the
            model a package should ship; None otherwise.
        seconds: wall time of the fit.
    """

    kernel_type: str
    model: Any
    learner: str
    metrics: dict
    test_errors: list = field(default_factory=list)
    error_configs: list = field(default_factory=list)
    test_configs: list = field(default_factory=list)
    test_latency_ms: list = field(default_factory=list)
    test_pred_ms: list = field(default_factory=list)
    test_ids: list = field(default_factory=list)
    candidates: dict = field(default_factory=dict)
    final_model: Any = None
    seconds: float = 0.0

    @property
    def package_model(self):
        """The model to ship: ``final_model`` if refitted, else ``model``."""
        return self.final_model if self.final_model is not None else self.model

    def predict(self, configs) -> np.ndarray:
        """Predicted ms for configs (dicts or rows) with the package model."""
        return np.asarray(self.package_model.predict(features(self.kernel_type, configs)),
                          dtype=np.float64)

    def package_metrics(self) -> dict:
        """Metrics for a package manifest: the held-out scores plus the learner name."""
        return {**self.metrics, "learner": self.learner,
                "refit_on_all": self.final_model is not None}


def split_ids(ids: Sequence, test_fraction: float = 0.2, seed: int = 0) -> tuple[list, list]:
    """Split ids into train and test parts (8:2 by default), reproducibly.

    Args:
        ids: the ids (any hashable values), e.g. six-letter kernel ids.
        test_fraction: share held out, in (0, 1).
        seed: the same seed and ids give the same split.

    Returns:
        ``(train_ids, test_ids)``, each in the input order. With two or more ids the
        test part has at least one and the training part at least one.

    Raises:
        ValueError: ``test_fraction`` outside (0, 1).
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    ids = list(ids)
    n = len(ids)
    if n < 2:
        return ids, []
    n_test = min(n - 1, max(1, int(round(n * test_fraction))))
    chosen = set(np.random.default_rng(seed).permutation(n)[:n_test].tolist())
    train = [x for i, x in enumerate(ids) if i not in chosen]
    test = [x for i, x in enumerate(ids) if i in chosen]
    return train, test


# Forests and boosting are compared with at most this many trees: the ranking of
# learners is stable well below nn-Meter's 200-700 trees, and it costs k fits each.
CV_MAX_TREES = 64


def _cv_scores(name, kernel_type, X, y, *, folds, seed, hardware) -> dict[str, float]:
    """Scores of a learner's out-of-fold predictions over the whole training part."""
    from sklearn.model_selection import KFold

    pred = np.empty_like(y)
    for train_idx, val_idx in KFold(folds, shuffle=True, random_state=seed).split(X):
        # The capped comparison forests are small: fitted here, not spread out.
        model = fit_learner(name, kernel_type, X[train_idx], y[train_idx], seed=seed,
                            hardware=hardware, n_jobs=1, max_trees=CV_MAX_TREES)
        pred[val_idx] = model.predict(X[val_idx])
    m = latency_metrics(pred, y)
    return {"acc10": m["acc10"], "rmspe": m["rmspe"]}


def _rank(score: dict, order: int) -> tuple:
    # Most configs within +-10% first (the accuracy the targets count), then the
    # lower RMSPE; remaining ties go to the earlier candidate (the default forest).
    return (-score["acc10"], score["rmspe"], order)


def fit_kernel(kernel_type: str, train_configs, train_latency_ms: Sequence[float],
               test_configs, test_latency_ms: Sequence[float], *, seed: int = 0,
               learner: str | None = None, candidates: Sequence[str] = DEFAULT_CANDIDATES,
               error_threshold: float = 0.1, hardware: str = "cpu", n_jobs: int | None = 1,
               cv_folds: int = 3, refit: bool = False, test_ids: Sequence | None = None,
               ) -> KernelFit:
    """Fit one kernel type's regressor and score it on the held-out configs.

    Args:
        kernel_type: a kernel type of the predictor's kernel specs.
        train_configs, test_configs: configs (dicts keyed by the spec's config keys,
            or rows in that order).
        train_latency_ms, test_latency_ms: measured latencies in ms, positive.
        seed: seeds the learners and the cross-validation folds.
        learner: a name from :data:`LEARNERS` to fix it; None chooses among
            ``candidates`` by cross-validated +-10% accuracy (then RMSPE) on the
            training part.
        candidates: learners tried when ``learner`` is None.
        error_threshold: a test config with ``|pred - true| / true`` above this is
            returned in ``error_configs``.
        hardware: nn-Meter's forest settings to use: ``"cpu"``, ``"gpu"``, ``"vpu"``.
        n_jobs: forest fitting workers (under a joblib backend, -1 uses all of it).
        cv_folds: folds of the learner choice.
        refit: also fit the chosen learner on train + test (``final_model``).
        test_ids: ids of the test configs, kept in the result.

    Returns:
        A :class:`KernelFit`.

    Raises:
        UnknownKernelError: no spec for ``kernel_type``.
        ValueError: unknown learner, no training data, lengths differ, or a latency
            is not positive.
    """
    started = time.perf_counter()
    kernel_type = get_spec(kernel_type).name
    X = features(kernel_type, train_configs)
    y = np.asarray(train_latency_ms, dtype=np.float64)
    Xt = features(kernel_type, test_configs)
    yt = np.asarray(test_latency_ms, dtype=np.float64)
    if len(X) != len(y) or len(Xt) != len(yt):
        raise ValueError(f"{kernel_type}: configs and latencies differ in length "
                         f"(train {len(X)} vs {len(y)}, test {len(Xt)} vs {len(yt)})")
    if len(X) == 0:
        raise ValueError(f"{kernel_type}: no training data")
    if np.any(~np.isfinite(y)) or np.any(y <= 0) or np.any(~np.isfinite(yt)) or np.any(yt <= 0):
        raise ValueError(f"{kernel_type}: latencies must be finite and positive")
    for name in ([learner] if learner else list(candidates)):
        if name not in LEARNERS:
            raise ValueError(f"unknown learner {name!r}; known: {', '.join(LEARNERS)}")

    scores: dict[str, float] = {}
    if learner is not None:
        chosen = learner
    elif len(X) < max(MIN_TRAIN_FOR_CHOICE, 2 * cv_folds) or len(candidates) == 1:
        chosen = SMALL_DATA_LEARNER if SMALL_DATA_LEARNER in candidates else candidates[0]
    else:
        for name in candidates:
            scores[name] = _cv_scores(name, kernel_type, X, y, folds=cv_folds, seed=seed,
                                      hardware=hardware)
        chosen = min(candidates, key=lambda n: _rank(scores[n], list(candidates).index(n)))
    model = fit_learner(chosen, kernel_type, X, y, seed=seed, hardware=hardware, n_jobs=n_jobs)

    test_configs = [dict(c) if isinstance(c, Mapping) else
                    dict(zip(get_spec(kernel_type).config_keys, map(_num, c)))
                    for c in test_configs]
    if len(Xt):
        pred = np.asarray(model.predict(Xt), dtype=np.float64)
        metrics = latency_metrics(pred, yt)
        errors = (pred - yt) / yt
    else:
        pred, errors = np.zeros(0), np.zeros(0)
        metrics = {k: float("nan") for k in ("rmse", "rmspe", "error", "acc5", "acc10", "acc15")}
    metrics.update(n_train=int(len(X)), n_test=int(len(Xt)))
    error_configs = [c for c, e in zip(test_configs, errors) if abs(e) > error_threshold]

    final = None
    if refit:
        final = fit_learner(chosen, kernel_type, np.vstack([X, Xt]), np.concatenate([y, yt]),
                            seed=seed, hardware=hardware, n_jobs=n_jobs)
    log.info("%s: %s rmspe %.2f%% acc10 %.3f (%d train, %d test)", kernel_type, chosen,
             metrics["rmspe"], metrics["acc10"], len(X), len(Xt))
    return KernelFit(
        kernel_type=kernel_type, model=model, learner=chosen, metrics=metrics,
        test_errors=errors.tolist(), error_configs=error_configs, test_configs=test_configs,
        test_latency_ms=yt.tolist(), test_pred_ms=pred.tolist(),
        test_ids=list(test_ids) if test_ids is not None else [], candidates=scores,
        final_model=final, seconds=time.perf_counter() - started,
    )


def _num(v):
    f = float(v)
    return int(f) if f.is_integer() else f


def fit_kernel_data(kernel_type: str, kernel_data, *, seed: int = 0, test_fraction: float = 0.2,
                    predict_label: str = "latency", **fit_options) -> KernelFit:
    """Load kernel data, split it 8:2 by id and fit: :func:`fit_kernel` on files.

    Args:
        kernel_type: the kernel type.
        kernel_data: anything :func:`nn_farm.builder.kernel_data.load_kernel_data`
            accepts, or its ``(ids, configs, latency_ms)`` result.
        seed: seeds the split and the fit.
        test_fraction: held-out share.
        predict_label: the label read from the data.
        **fit_options: passed to :func:`fit_kernel` (learner, error_threshold, refit, ...).

    Raises:
        ValueError: fewer than two usable configs.
    """
    from nn_farm.builder.kernel_data import load_kernel_data

    if isinstance(kernel_data, tuple) and len(kernel_data) == 3:
        ids, configs, labels = kernel_data
    else:
        ids, configs, labels = load_kernel_data(kernel_data, kernel_type, predict_label)
    if len(ids) < 2:
        raise ValueError(f"{kernel_type}: {len(ids)} usable measured configs; need at least 2")
    index = {rid: i for i, rid in enumerate(ids)}
    train_ids, test_ids = split_ids(ids, test_fraction, seed)
    tr = [index[r] for r in train_ids]
    te = [index[r] for r in test_ids]
    return fit_kernel(kernel_type, [configs[i] for i in tr], [labels[i] for i in tr],
                      [configs[i] for i in te], [labels[i] for i in te], seed=seed,
                      test_ids=test_ids, **fit_options)


def build_predictor_by_data(kernel_type: str, kernel_data, backend=None,
                            error_threshold: float = 0.1, mark: str = "",
                            save_path: str | os.PathLike | None = None,
                            predict_label: str = "latency", *, seed: int = 0,
                            learner: str | None = None):
    """nn-Meter's ``build_predictor_by_data``: fit one kernel type, report, locate bad configs.

    Args:
        kernel_type: the kernel type.
        kernel_data: ``(configs_json, profiled_json)`` paths (or lists of them, or
            dicts), a merged dict, or paths: see
            :func:`nn_farm.builder.kernel_data.load_kernel_data`.
        backend: picks nn-Meter's forest settings (a name containing ``gpu`` or
            ``vpu``, else cpu); a :class:`~nn_farm.builder.backend.Backend` works too.
        error_threshold: test configs with a larger relative error are returned.
        mark: names the files written under ``save_path``.
        save_path: if given, write nn-Meter's files there:
            ``collection/Data_<kernel>_<mark>.csv`` (feature table),
            ``collection/TestResult_<kernel>_<mark>.csv`` (test predictions) and
            ``predictors/<kernel>_<mark>.pkl`` (the model).
        predict_label: the label to fit.
        seed: seeds the 8:2 split and the learners.
        learner: fix a learner; None chooses one (see :func:`fit_kernel`).

    Returns:
        ``(predictor, acc10, error_configs)``: the model fitted on the training part,
        its +-10% accuracy on the held-out part, and the held-out configs whose
        relative error exceeds ``error_threshold``.
    """
    from nn_farm.builder.kernel_data import export_csv, load_kernel_data

    data = (kernel_data if isinstance(kernel_data, tuple) and len(kernel_data) == 3
            else load_kernel_data(kernel_data, kernel_type, predict_label))
    fit = fit_kernel_data(kernel_type, data, seed=seed, learner=learner,
                          error_threshold=error_threshold, hardware=hardware_of(backend))
    if save_path:
        save_path = Path(save_path)
        export_csv(kernel_type, data, save_path / "collection" / f"Data_{kernel_type}_{mark}.csv",
                   predict_label)
        _write_test_results(fit, save_path / "collection" / f"TestResult_{kernel_type}_{mark}.csv")
        pkl = save_path / "predictors" / f"{kernel_type}_{mark}.pkl"
        pkl.parent.mkdir(parents=True, exist_ok=True)
        with open(pkl, "wb") as fh:
            pickle.dump(fit.model, fh)
    return fit.model, fit.metrics["acc10"], fit.error_configs


def _write_test_results(fit: KernelFit, path: Path) -> None:
    import csv

    keys = get_spec(fit.kernel_type).config_keys
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", *keys, "True", "Pred", "Error"])
        ids = fit.test_ids or [""] * len(fit.test_configs)
        for rid, c, t, p, e in zip(ids, fit.test_configs, fit.test_latency_ms, fit.test_pred_ms,
                                   fit.test_errors):
            writer.writerow([rid, *(c.get(k) for k in keys), t, p, abs(e)])
