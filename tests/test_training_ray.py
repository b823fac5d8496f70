"""train_kernels on a real local Ray cluster gives the models it gives in-process.

One Ray task per kernel type, and the conv forest through joblib's Ray backend
(its ``large_forest_work`` is set low enough here), compared with
``parallel=False`` on the same seed: same learner, same metrics, and predictions
equal to the last bit, for the train-part model and the refitted one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nn_farm.builder.training import train_kernels
from nn_farm.builder.training.parallel import _forest_work
from nn_farm.predictor.kernel_specs import features

DATASET = Path(__file__).parent / "data" / "kernels_host_cpu_onnxruntime"
KERNELS = ("conv-bn-relu", "dwconv-bn-relu", "relu")


@pytest.fixture(scope="module")
def ray_cluster():
    from ray_cluster import local_cluster

    with local_cluster(worker_resources=(), head_cpus=2) as handle:
        yield handle


def _datasets():
    return {kt: (str(DATASET / f"{kt}_prior.json"), str(DATASET / f"profiled_{kt}.json"))
            for kt in KERNELS}


def test_parallel_training_on_ray_equals_in_process(ray_cluster, caplog):
    import logging

    import ray

    from nn_farm.builder.kernel_data import load_kernel_data

    options = dict(seed=7, refit=True, progress=False)
    serial = train_kernels(_datasets(), parallel=False, **options)
    # Only the conv forest (48 configs x 320 trees) counts as large at this threshold.
    n_conv = len(load_kernel_data(_datasets()["conv-bn-relu"])[0])
    threshold = _forest_work("conv-bn-relu", n_conv, 0.2, {})
    assert all(_forest_work(kt, len(load_kernel_data(d)[0]), 0.2, {}) < threshold
               for kt, d in _datasets().items() if kt != "conv-bn-relu")
    with caplog.at_level(logging.INFO, logger="nn_farm.builder.training"):
        on_ray = train_kernels(_datasets(), parallel=True, large_forest_work=threshold, **options)
    assert ray.is_initialized()
    assert [r.getMessage() for r in caplog.records if "joblib" in r.getMessage()] == [
        "conv-bn-relu: fitting its forest with joblib's Ray backend"]

    assert list(on_ray) == list(KERNELS)
    for kt in KERNELS:
        a, b = serial[kt], on_ray[kt]
        _, configs, _ = load_kernel_data(_datasets()[kt])
        X = features(kt, configs)
        assert a.learner == b.learner
        assert a.test_ids == b.test_ids
        assert a.metrics == b.metrics
        assert a.candidates == b.candidates
        assert np.array_equal(a.model.predict(X), b.model.predict(X))
        assert np.array_equal(a.final_model.predict(X), b.final_model.predict(X))
        assert a.error_configs == b.error_configs
