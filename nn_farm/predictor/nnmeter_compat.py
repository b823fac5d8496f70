"""nn-Meter's customized-predictor folder, both ways.

nn-Meter keeps a predictor as

    <package_location>/<kernel>.pkl     one pickled regressor per kernel type
    <package_location>/fusion_rules.json
    <meta>.yaml                         name, version, category, package_location,
                                        kernel_predictors (the kernel names)

Its feature vectors are the ones :mod:`nn_farm.predictor.kernel_specs` builds, so a
folder converts to an nn-farm package (and back) by moving files: the regressors
are not retrained and predict the same.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import yaml

from nn_farm.errors import ConfigError, PredictorError, PredictorNotFound
from nn_farm.predictor.kernel_specs import kernel_type_of
from nn_farm.predictor.package import PredictorPackage, load_package, save_package

__all__ = ["read_nnmeter_meta", "load_nnmeter_package", "import_nnmeter", "export_nnmeter"]

_META_KEYS = ("name", "version", "category", "package_location", "kernel_predictors")


def read_nnmeter_meta(meta_path: str | os.PathLike) -> dict:
    """Parse and check an nn-Meter predictor meta yaml.

    ``package_location`` is resolved against the yaml's folder when relative.

    Raises:
        PredictorNotFound: the file does not exist.
        ConfigError: not YAML, not a mapping, or a required key is missing (named).
    """
    meta_path = Path(meta_path)
    if not meta_path.is_file():
        raise PredictorNotFound(f"no nn-Meter meta yaml at {meta_path}")
    try:
        meta = yaml.safe_load(meta_path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", path=str(meta_path)) from exc
    if not isinstance(meta, dict):
        raise ConfigError("expected a mapping of predictor fields", path=str(meta_path))
    for key in _META_KEYS:
        if key not in meta:
            raise ConfigError("missing required key", path=str(meta_path), key=key)
    if not isinstance(meta["kernel_predictors"], list) or not meta["kernel_predictors"]:
        raise ConfigError("must be a non-empty list of kernel names",
                          path=str(meta_path), key="kernel_predictors")
    location = Path(str(meta["package_location"])).expanduser()
    if not location.is_absolute():
        location = meta_path.parent / location
    meta["package_location"] = str(location)
    meta["version"] = str(meta["version"])
    return meta


def load_nnmeter_package(meta_path: str | os.PathLike) -> PredictorPackage:
    """Load an nn-Meter predictor folder as an in-memory :class:`PredictorPackage`.

    Raises:
        PredictorNotFound: the yaml or a kernel .pkl it lists is missing.
        ConfigError: a malformed meta yaml.
        UnknownKernelError: a listed kernel has no nn-farm kernel spec.
        PredictorError: a .pkl or fusion_rules.json cannot be read.
    """
    meta = read_nnmeter_meta(meta_path)
    location = Path(meta["package_location"])
    models = {}
    for kernel in meta["kernel_predictors"]:
        kernel_type = kernel_type_of(str(kernel))  # aliases ("gap") get canonical names
        pkl = location / f"{kernel}.pkl"
        if not pkl.is_file():
            raise PredictorNotFound(f"{meta_path}: kernel predictor file {pkl} is missing")
        try:
            with open(pkl, "rb") as fh:
                models[kernel_type] = pickle.load(fh)
        except Exception as exc:  # unpickling runs arbitrary code; report any failure
            raise PredictorError(f"cannot load nn-Meter kernel predictor {pkl}: {exc!r}") from exc
    rules_path = location / "fusion_rules.json"
    try:
        rules = json.loads(rules_path.read_text()) if rules_path.is_file() else {}
    except ValueError as exc:
        raise PredictorError(f"{rules_path}: not valid JSON: {exc}") from exc
    manifest = {
        "format": "nn-meter",
        "name": str(meta["name"]),
        "version": meta["version"],
        "device": str(meta["category"]),
        "runtime": str(meta.get("runtime", "")),
        "runtime_version": str(meta.get("runtime_version", "")),
        "created": "",
        "latency_unit": "ms",
        "kernels": {k: {"file": f"{k}.pkl", "metrics": {}} for k in models},
        "fusion_rules": {"file": "fusion_rules.json"},
    }
    return PredictorPackage(location, manifest, models, rules)


def import_nnmeter(meta_path: str | os.PathLike, directory: str | os.PathLike, *,
                   overwrite: bool = False) -> Path:
    """Convert an nn-Meter predictor folder into an nn-farm package.

    Args:
        meta_path: the nn-Meter meta yaml.
        directory: where the nn-farm package is written.
        overwrite: replace an existing package there.

    Returns:
        The package directory.

    Raises:
        Everything :func:`load_nnmeter_package` and
        :func:`~nn_farm.predictor.package.save_package` raise.
    """
    package = load_nnmeter_package(meta_path)
    m = package.manifest
    return save_package(
        directory, m["name"], m["version"], package.models, package.fusion_rules,
        device=m["device"], runtime=m["runtime"], runtime_version=m["runtime_version"],
        extra={"imported_from": "nn-meter", "meta": str(Path(meta_path).resolve())},
        overwrite=overwrite,
    )


def _yaml_version(version: str):
    # nn-Meter compares versions as floats; keep a string when it is not one.
    try:
        return float(version)
    except ValueError:
        return version


def export_nnmeter(package: PredictorPackage | str | os.PathLike,
                   directory: str | os.PathLike) -> Path:
    """Write a package as an nn-Meter customized-predictor folder.

    Args:
        package: a loaded package or a package directory.
        directory: the folder to write (created); it becomes ``package_location``.

    Returns:
        The meta yaml path (``<directory>/<name>.yaml``), ready for
        ``nn-meter register --predictor`` or ``nn-farm register --predictor``.

    Raises:
        PredictorError: the package cannot be loaded or the folder written.
    """
    if not isinstance(package, PredictorPackage):
        package = load_package(package)
    directory = Path(directory).resolve()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for kernel_type, model in package.models.items():
            with open(directory / f"{kernel_type}.pkl", "wb") as fh:
                pickle.dump(model, fh, protocol=pickle.HIGHEST_PROTOCOL)
        (directory / "fusion_rules.json").write_text(json.dumps(package.fusion_rules, indent=2))
        meta = {
            "name": package.name,
            "version": _yaml_version(package.version),
            "category": package.device,
            "package_location": str(directory),
            "kernel_predictors": sorted(package.models),
            "runtime": package.runtime,
            "runtime_version": package.runtime_version,
        }
        meta_path = directory / f"{package.name}.yaml"
        meta_path.write_text(yaml.safe_dump(meta, sort_keys=False))
    except OSError as exc:
        raise PredictorError(f"cannot write nn-Meter folder {directory}: {exc}") from exc
    return meta_path

