"""Predictor packages: one directory per trained predictor.

    <package>/
        manifest.json         name, version, device, runtime, runtime_version, created,
                              kernels {type: {file, sha256, features, metrics}},
                              fusion_rules {file, sha256}
        kernels/<type>.pkl    one pickled regressor per kernel type (anything with
                              ``predict(X)``, X of shape (n, n_features), returning ms)
        fusion_rules.json     nn-Meter's detected_fusion_rule.json format

The builder writes packages with :func:`save_package`; :func:`load_package` reads one
back and refuses a file whose sha256 does not match the manifest. Pickles run code
when loaded: the checksums catch damage and tampering after the package was written,
they do not make an untrusted package safe to load.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from nn_farm.errors import PredictorError, PredictorNotFound, UnknownKernelError
from nn_farm.predictor.kernel_specs import KERNEL_SPECS, feature_names, kernel_type_of

__all__ = [
    "MANIFEST_NAME",
    "FORMAT",
    "PredictorPackage",
    "save_package",
    "load_package",
    "is_package",
    "read_manifest",
    "sha256_of",
]

MANIFEST_NAME = "manifest.json"
FORMAT = "nn-farm-predictor/1"
_FUSION_RULES_NAME = "fusion_rules.json"


@dataclass
class PredictorPackage:
    """A loaded, verified predictor package.

    Attributes:
        path: the package directory.
        manifest: the parsed manifest.json.
        models: kernel type -> regressor (``predict(X) -> ms``).
        fusion_rules: nn-Meter fusion-rule dict (may be empty).
    """

    path: Path
    manifest: dict
    models: dict[str, Any] = field(repr=False)
    fusion_rules: dict = field(repr=False)

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def device(self) -> str:
        return self.manifest.get("device", "")

    @property
    def runtime(self) -> str:
        return self.manifest.get("runtime", "")

    @property
    def runtime_version(self) -> str:
        return self.manifest.get("runtime_version", "")

    @property
    def metrics(self) -> dict[str, dict]:
        """Training metrics per kernel type (RMSE ms, RMSPE %, +-5/10/15 % accuracy)."""
        return {k: v.get("metrics", {}) for k, v in self.manifest["kernels"].items()}


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_package(path: str | os.PathLike) -> bool:
    """True if ``path`` is a directory holding a manifest.json."""
    return (Path(path) / MANIFEST_NAME).is_file()


def _read_fusion_rules(fusion_rules) -> dict:
    if fusion_rules is None:
        return {}
    if isinstance(fusion_rules, Mapping):
        return dict(fusion_rules)
    path = Path(fusion_rules)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PredictorError(f"cannot read fusion rules {path}: {exc}") from exc


def save_package(
    directory: str | os.PathLike,
    name: str,
    version: str,
    models: Mapping[str, Any],
    fusion_rules: Mapping | str | os.PathLike | None,
    device: str,
    runtime: str,
    runtime_version: str,
    metrics: Mapping[str, Mapping[str, float]] | None = None,
    *,
    extra: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a predictor package directory.

    The package is written to a temporary sibling and renamed into place, so a
    crash never leaves half a package behind.

    Args:
        directory: where the package goes (created; must not exist unless ``overwrite``).
        name: predictor name, e.g. ``"pixel4-cpu-tflite"``.
        version: version string, e.g. ``"1.0"``.
        models: kernel type -> fitted regressor with ``predict(X)`` returning ms.
        fusion_rules: nn-Meter fusion-rule dict, or the path of its JSON file.
        device: device class the data was measured on.
        runtime: runtime name (``"tflite"``, ``"onnxruntime"``, ``"openvino"``, ...).
        runtime_version: runtime version string.
        metrics: kernel type -> training metrics, e.g. ``{"rmse_ms": 0.1, "acc10": 0.95}``.
        extra: more manifest fields (kept as is under ``"extra"``).
        overwrite: replace an existing package at ``directory``.

    Returns:
        The package directory.

    Raises:
        UnknownKernelError: a kernel type in ``models`` has no spec.
        PredictorError: a model has no ``predict``, the directory exists, or a file
            cannot be written.
    """
    directory = Path(directory)
    if not name or not str(version):
        raise PredictorError(f"a package needs a name and a version, got {name!r} {version!r}")
    if directory.exists() and not overwrite:
        raise PredictorError(f"{directory} already exists; pass overwrite=True to replace it")
    metrics = dict(metrics or {})
    for kernel_type, model in models.items():
        if kernel_type not in KERNEL_SPECS:
            kernel_type_of(kernel_type)  # raises for no spec at all
            raise UnknownKernelError(
                f"{kernel_type!r} is an alias; save its model as {kernel_type_of(kernel_type)!r}"
            )
        if not callable(getattr(model, "predict", None)):
            raise PredictorError(f"model for {kernel_type} has no predict(X) method")
    rules = _read_fusion_rules(fusion_rules)

    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        (tmp / "kernels").mkdir()
        kernels = {}
        for kernel_type in sorted(models):
            rel = f"kernels/{kernel_type}.pkl"
            with open(tmp / rel, "wb") as fh:
                pickle.dump(models[kernel_type], fh, protocol=pickle.HIGHEST_PROTOCOL)
            kernels[kernel_type] = {
                "file": rel,
                "sha256": sha256_of(tmp / rel),
                "features": list(feature_names(kernel_type)),
                "metrics": dict(metrics.get(kernel_type, {})),
            }
        (tmp / _FUSION_RULES_NAME).write_text(json.dumps(rules, indent=2, sort_keys=True))
        manifest = {
            "format": FORMAT,
            "name": name,
            "version": str(version),
            "device": device,
            "runtime": runtime,
            "runtime_version": str(runtime_version),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "latency_unit": "ms",
            "kernels": kernels,
            "fusion_rules": {
                "file": _FUSION_RULES_NAME,
                "sha256": sha256_of(tmp / _FUSION_RULES_NAME),
            },
            "extra": dict(extra or {}),
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
        if directory.exists():
            shutil.rmtree(directory)
        tmp.rename(directory)
    except OSError as exc:
        raise PredictorError(f"cannot write package {directory}: {exc}") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


def read_manifest(directory: str | os.PathLike) -> dict:
    """Parse and sanity-check ``<directory>/manifest.json`` without loading models.

    Raises:
        PredictorNotFound: no manifest there.
        PredictorError: the manifest is not valid JSON or lacks a required field.
    """
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise PredictorNotFound(f"no predictor package at {directory} (no {MANIFEST_NAME})")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise PredictorError(f"{path}: not valid JSON: {exc}") from exc
    for key in ("name", "version", "kernels", "fusion_rules"):
        if key not in manifest:
            raise PredictorError(f"{path}: missing field {key!r}")
    return manifest


def _verified_path(directory: Path, entry: Mapping, what: str) -> Path:
    rel = entry.get("file")
    path = (directory / str(rel)).resolve()
    if not rel or directory.resolve() not in path.parents:
        raise PredictorError(f"{directory}/{MANIFEST_NAME}: bad file entry for {what}: {rel!r}")
    if not path.is_file():
        raise PredictorError(f"predictor package {directory}: {what} file {rel} is missing")
    actual = sha256_of(path)
    if actual != entry.get("sha256"):
        raise PredictorError(
            f"predictor package {directory}: {what} file {rel} fails its checksum "
            f"(manifest sha256 {entry.get('sha256')}, file {actual}); the file was "
            f"changed or damaged after the package was written"
        )
    return path


def load_package(directory: str | os.PathLike) -> PredictorPackage:
    """Load and verify a predictor package.

    Args:
        directory: the package directory.

    Returns:
        The :class:`PredictorPackage` with every model unpickled.

    Raises:
        PredictorNotFound: ``directory`` holds no package.
        PredictorError: the manifest is malformed, a file is missing, or a file's
            sha256 differs from the manifest (the message names the file).
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    models = {}
    for kernel_type, entry in manifest["kernels"].items():
        path = _verified_path(directory, entry, f"kernel {kernel_type}")
        try:
            with open(path, "rb") as fh:
                models[kernel_type] = pickle.load(fh)
        except Exception as exc:  # unpickling runs arbitrary code; report any failure
            raise PredictorError(f"cannot load kernel model {path}: {exc!r}") from exc
    rules_path = _verified_path(directory, manifest["fusion_rules"], "fusion rules")
    return PredictorPackage(directory, manifest, models, _read_fusion_rules(rules_path))
