"""Writing a build's fits as a predictor package, registered in the local registry.

    {kernel_type: KernelFit} + fusion rules --save_package--> <dir>/manifest.json, kernels/*.pkl,
                                                               fusion_rules.json
                                            --register_predictor--> $NN_FARM_HOME/predictors/<name>/<version>/

Each kernel's manifest entry carries its held-out metrics (rmse, rmspe, acc5/10/15,
n_train, n_test), the learner that won, and whether the shipped model was refitted
on all data. The fusion rules are the device's, from the rule tester
(``<ws>/fusion_rule_test/detected_fusion_rule.json`` or its dict); without them the
package falls back to the predictor's default TFLite-CPU rules, with a warning,
because a predictor that fuses differently from its device mis-counts kernels.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping

from nn_farm.builder.training.fit import KernelFit
from nn_farm.errors import PredictorError

__all__ = ["write_predictor_package"]


def write_predictor_package(fits: Mapping[str, KernelFit], *, name: str, version: str,
                            device: str, runtime: str, runtime_version: str,
                            fusion_rules: Mapping | str | os.PathLike | None,
                            directory: str | os.PathLike | None = None, register: bool = True,
                            overwrite: bool = False, extra: Mapping[str, Any] | None = None,
                            ) -> Path:
    """Save fitted kernel regressors as a predictor package and register it.

    Args:
        fits: ``{kernel_type: KernelFit}`` (from :func:`train_kernels` or
            :func:`fit_kernel`); each ships ``fit.package_model`` (refitted on all
            data when available).
        name, version: the package's registry name and version.
        device, runtime, runtime_version: what the latencies were measured on.
        fusion_rules: the device's detected fusion rules: a path to
            ``detected_fusion_rule.json`` or its dict. None uses
            :data:`nn_farm.predictor.kernels.DEFAULT_RULES` and warns.
        directory: where to write the package; None writes a temporary one (only
            useful with ``register=True``, which copies it into the registry).
        register: copy the package into ``$NN_FARM_HOME/predictors/<name>/<version>``.
        overwrite: replace an existing directory or registered version.
        extra: more manifest fields (kept under ``"extra"``).

    Returns:
        The registered package's directory when ``register``, else ``directory``.

    Raises:
        PredictorError: no fits, the version is registered already (without
            ``overwrite``), the rules file is unreadable, or writing fails.
    """
    from nn_farm.predictor.package import save_package
    from nn_farm.predictor.registry import register_predictor

    if not fits:
        raise PredictorError(f"predictor {name!r}: no kernel fits to package")
    if directory is None and not register:
        raise PredictorError("write_predictor_package: give a directory, or register=True")
    if fusion_rules is None:
        from nn_farm.predictor.kernels import DEFAULT_RULES

        warnings.warn(f"predictor {name!r}: no detected fusion rules given; the package uses "
                      f"the default TFLite-CPU rules, which may not match {device}",
                      stacklevel=2)
        fusion_rules = dict(DEFAULT_RULES)
    models = {kt: fit.package_model for kt, fit in fits.items()}
    metrics = {kt: fit.package_metrics() for kt, fit in fits.items()}
    manifest_extra = {
        "built_by": "nn-farm build",
        "learners": {kt: fit.learner for kt, fit in fits.items()},
        **dict(extra or {}),
    }
    tmp_root = None
    if directory is None:
        tmp_root = Path(tempfile.mkdtemp(prefix="nnfarm-package-"))
        directory = tmp_root / f"{name}-{version}"
    try:
        path = save_package(directory, name, str(version), models, fusion_rules, device=device,
                            runtime=runtime, runtime_version=str(runtime_version),
                            metrics=metrics, extra=manifest_extra, overwrite=overwrite)
        if not register:
            return path
        entry = register_predictor(path, overwrite=overwrite)
        return Path(entry["path"])
    finally:
        if tmp_root is not None:
            shutil.rmtree(tmp_root, ignore_errors=True)
