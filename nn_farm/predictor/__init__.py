"""Latency prediction: model -> IR graph -> kernels -> features -> ms.

Importable and usable without Ray or the builder (NAS code calls it in a loop):

    >>> from nn_farm.predictor import load_latency_predictor
    >>> predictor = load_latency_predictor("my-device-predictor")          # doctest: +SKIP
    >>> predictor.predict("model.onnx", "onnx")                             # doctest: +SKIP
    >>> predictor.predict_many(ir_graphs, "nnmeter-ir")                     # doctest: +SKIP

Public names are loaded on first use, so ``import nn_farm.predictor`` stays cheap.
"""

from __future__ import annotations

from nn_farm._lazy import lazy_exports

_EXPORTS = {
    "LatencyPredictor": "nn_farm.predictor.latency_predictor",
    "UnknownKernelWarning": "nn_farm.predictor.latency_predictor",
    "load_latency_predictor": "nn_farm.predictor.registry",
    "register_predictor": "nn_farm.predictor.registry",
    "unregister_predictor": "nn_farm.predictor.registry",
    "list_predictors": "nn_farm.predictor.registry",
    "PredictorPackage": "nn_farm.predictor.package",
    "save_package": "nn_farm.predictor.package",
    "load_package": "nn_farm.predictor.package",
    "import_nnmeter": "nn_farm.predictor.nnmeter_compat",
    "export_nnmeter": "nn_farm.predictor.nnmeter_compat",
    "KERNEL_TYPES": "nn_farm.predictor.kernel_specs",
    "config_from_kernel_unit": "nn_farm.predictor.kernel_specs",
    "features": "nn_farm.predictor.kernel_specs",
}

__all__, __getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
