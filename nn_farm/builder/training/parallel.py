"""Training every kernel type at once: one Ray task per kernel type, joblib-on-Ray for big forests.

    datasets {kernel_type: kernel data}
      --load in the driver (workspace files need not be visible to workers)-->
      small kernels:  one Ray task each (num_cpus=1), in parallel across the cluster
      large forests:  fitted in the driver under joblib's Ray backend
                      (ray.util.joblib.register_ray + joblib.parallel_backend("ray")),
                      so their trees spread over the cluster's CPUs
      --> {kernel_type: KernelFit}

"Large" is ``n_train * n_trees >= large_forest_work`` (default one million: nn-Meter's
10,000-config conv budget is large, nn-farm's default 300 is not). A forest's trees
are seeded up front, so the number of workers never changes the fitted model:
``parallel=True`` and ``parallel=False`` give the same predictions for the same seed.

With ``parallel=False`` everything is fitted in this process, one kernel after
another, and Ray is not touched.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

from nn_farm.builder.training.fit import KernelFit, fit_kernel, fit_kernel_data, split_ids
from nn_farm.builder.training.learners import DEFAULT_CANDIDATES, is_forest, rf_params
from nn_farm.errors import BuilderError

__all__ = ["LARGE_FOREST_WORK", "train_kernels"]

log = logging.getLogger("nn_farm.builder.training")

LARGE_FOREST_WORK = 1_000_000


_SPLIT_KEYS = ("train_configs", "train_latency_ms", "test_configs", "test_latency_ms")


def _is_split(data) -> bool:
    return isinstance(data, Mapping) and all(k in data for k in _SPLIT_KEYS)


def _load(kernel_type: str, kernel_data):
    from nn_farm.builder.kernel_data import load_kernel_data

    if _is_split(kernel_data):
        return {k: list(kernel_data[k]) for k in _SPLIT_KEYS}
    if isinstance(kernel_data, tuple) and len(kernel_data) == 3:
        ids, configs, labels = kernel_data
        return list(ids), list(configs), list(labels)
    return load_kernel_data(kernel_data, kernel_type)


def _forest_work(kernel_type: str, n: int, test_fraction: float, options: Mapping) -> int:
    """Configs times trees of the largest forest this kernel's fit may grow."""
    names = [options["learner"]] if options.get("learner") else list(
        options.get("candidates", DEFAULT_CANDIDATES))
    if not any(is_forest(name) for name in names):
        return 0
    n_train = len(split_ids(range(n), test_fraction)[0])
    trees = rf_params(kernel_type, options.get("hardware", "cpu"))["n_estimators"]
    return n_train * trees


def _n_configs(data) -> int:
    return len(data["train_configs"]) + len(data["test_configs"]) if _is_split(data) \
        else len(data[0])


def _fit_one(kernel_type: str, data, seed: int, test_fraction: float,
             options: dict) -> KernelFit:
    if _is_split(data):
        return fit_kernel(kernel_type, *(data[k] for k in _SPLIT_KEYS), seed=seed, **options)
    return fit_kernel_data(kernel_type, data, seed=seed, test_fraction=test_fraction, **options)


def train_kernels(datasets: Mapping[str, Any], *, parallel: bool = True, seed: int = 0,
                  test_fraction: float = 0.2, learner: str | None = None,
                  candidates: Sequence[str] = DEFAULT_CANDIDATES, error_threshold: float = 0.1,
                  hardware: str = "cpu", refit: bool = True, ray_address: str | None = None,
                  large_forest_work: int = LARGE_FOREST_WORK, progress: bool = True,
                  ) -> dict[str, KernelFit]:
    """Fit one regressor per kernel type, in parallel on Ray or in this process.

    Args:
        datasets: ``{kernel_type: kernel_data}``; kernel data as
            :func:`nn_farm.builder.kernel_data.load_kernel_data` accepts it, its
            ``(ids, configs, latency_ms)`` result (split 8:2 here), or an already split
            dict with ``train_configs``, ``train_latency_ms``, ``test_configs`` and
            ``test_latency_ms`` (e.g. a held-out set kept fixed across rounds).
        parallel: one Ray task per kernel type (joining or starting Ray via
            :func:`nn_farm.actors.ray_init.init_ray`); False fits in this process.
        seed: seeds every split and learner.
        test_fraction: held-out share (0.2: nn-Meter's 8:2 split).
        learner, candidates, error_threshold, hardware: see
            :func:`nn_farm.builder.training.fit.fit_kernel`.
        refit: also fit each chosen learner on all data (``KernelFit.final_model``),
            the model :func:`~nn_farm.builder.training.package.write_predictor_package`
            ships.
        ray_address: the cluster to join when Ray is not initialised yet.
        large_forest_work: ``n_train * n_trees`` from which a forest is fitted with
            joblib's Ray backend instead of in one task.
        progress: show a tqdm bar.

    Returns:
        ``{kernel_type: KernelFit}``, in the order of ``datasets``.

    Raises:
        BuilderError: a kernel type's fit failed (names it and the cause).
    """
    options = dict(learner=learner, candidates=tuple(candidates),
                   error_threshold=error_threshold, hardware=hardware, refit=refit)
    loaded = {kt: _load(kt, data) for kt, data in datasets.items()}
    from tqdm import tqdm

    bar = tqdm(total=len(loaded), desc="training kernels", unit="kernel", disable=not progress)
    results: dict[str, KernelFit] = {}
    try:
        if not parallel:
            for kt, data in loaded.items():
                results[kt] = _guarded(kt, _fit_one, kt, data, seed, test_fraction, options)
                bar.update()
        else:
            _train_on_ray(loaded, seed, test_fraction, options, ray_address,
                          large_forest_work, results, bar)
    finally:
        bar.close()
    return {kt: results[kt] for kt in loaded}


def _guarded(kernel_type: str, fn, *args) -> KernelFit:
    try:
        return fn(*args)
    except Exception as exc:
        raise BuilderError(f"training the {kernel_type} predictor failed: {exc}") from exc


def _train_on_ray(loaded, seed, test_fraction, options, ray_address, large_forest_work,
                  results, bar) -> None:
    import ray

    from nn_farm.actors.ray_init import init_ray

    init_ray(ray_address)
    large = [kt for kt, data in loaded.items()
             if _forest_work(kt, _n_configs(data), test_fraction, options) >= large_forest_work]
    # Small kernels first, so their tasks run while the driver fits the large forests.
    fit_task = ray.remote(num_cpus=1, max_retries=1)(_fit_one)
    pending = {fit_task.remote(kt, data, seed, test_fraction, options): kt
               for kt, data in loaded.items() if kt not in large}
    if large:
        import joblib
        from ray.util.joblib import register_ray

        register_ray()
        for kt in large:
            log.info("%s: fitting its forest with joblib's Ray backend", kt)
            with joblib.parallel_backend("ray"):
                results[kt] = _guarded(kt, _fit_one, kt, loaded[kt], seed, test_fraction,
                                       {**options, "n_jobs": -1})
            bar.update()
    refs = list(pending)
    try:
        while refs:
            done, refs = ray.wait(refs, num_returns=1)
            kt = pending[done[0]]
            try:
                results[kt] = ray.get(done[0])
            except ray.exceptions.RayTaskError as exc:
                raise BuilderError(f"training the {kt} predictor failed: "
                                   f"{exc.cause if exc.cause else exc}") from exc
            bar.update()
    finally:
        for ref in refs:
            ray.cancel(ref)
