"""nn-Meter's builder on the farm: workspace and configs, operator and kernel model
generators (Keras and torch), fusion-rule tester, kernel samplers and predictor
training.

This ``__init__`` stays light (no tensorflow, torch or ray at import): nn-Meter's
public names are imported on first use, so its users' scripts port with an import
change::

    from nn_farm.builder import builder_config, build_latency_predictor
    builder_config.init("ws")
    build_latency_predictor(backend="host-cpu-litert")
"""

from nn_farm._lazy import lazy_exports

_KB = "nn_farm.builder.kernel_builder"
__all__, __getattr__, __dir__ = lazy_exports(globals(), {
    "builder_config": "nn_farm.builder.config",
    "create_workspace": "nn_farm.builder.workspace",
    "generate_config_sample": _KB,
    "convert_models": _KB,
    "profile_models": _KB,
    "sample_and_profile_kernel_data": _KB,
    "build_initial_predictor_by_data": _KB,
    "build_adaptive_predictor_by_data": _KB,
    "build_predictor_for_kernel": _KB,
    "build_latency_predictor": _KB,
    "build_predictor_by_data": "nn_farm.builder.training",
})
