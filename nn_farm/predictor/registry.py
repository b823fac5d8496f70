"""The local predictor registry: named, versioned packages under ``NN_FARM_HOME``.

    $NN_FARM_HOME/predictors/<name>/<version>/    one predictor package each

``NN_FARM_HOME`` defaults to ``~/.nn_farm``. Registering copies a package (or
converts an nn-Meter customized-predictor folder) into the registry, so the
original may move or vanish afterwards. Nothing is replaced silently: registering
an existing name and version needs ``overwrite=True``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from nn_farm.errors import PredictorError, PredictorNotFound
from nn_farm.predictor.package import MANIFEST_NAME, is_package, read_manifest

__all__ = [
    "nn_farm_home",
    "registry_dir",
    "register_predictor",
    "unregister_predictor",
    "list_predictors",
    "find_predictor",
    "load_latency_predictor",
]

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def nn_farm_home() -> Path:
    """``$NN_FARM_HOME``, or ``~/.nn_farm`` when unset."""
    return Path(os.environ.get("NN_FARM_HOME") or Path.home() / ".nn_farm").expanduser()


def registry_dir() -> Path:
    """The directory that holds registered predictors."""
    return nn_farm_home() / "predictors"


def _version_key(version: str):
    # "1.10" sorts after "1.9"; non-numeric parts sort as text after numbers.
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.\-+]", version)]


def _same_version(a: str, b) -> bool:
    if str(a) == str(b):
        return True
    try:  # nn-Meter writes versions as floats: 1 == 1.0
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def list_predictors() -> list[dict]:
    """Every registered predictor version, sorted by name then version.

    Returns:
        Dicts with name, version, device, runtime, runtime_version, created, kernels
        (kernel types with a model) and path.
    """
    root = registry_dir()
    found = []
    if not root.is_dir():
        return found
    for package in sorted(root.glob(f"*/*/{MANIFEST_NAME}")):
        try:
            manifest = read_manifest(package.parent)
        except PredictorError:
            continue  # a damaged entry must not hide the others; load reports it
        found.append(
            {
                "name": manifest["name"],
                "version": manifest["version"],
                "device": manifest.get("device", ""),
                "runtime": manifest.get("runtime", ""),
                "runtime_version": manifest.get("runtime_version", ""),
                "created": manifest.get("created", ""),
                "kernels": sorted(manifest["kernels"]),
                "path": str(package.parent),
            }
        )
    found.sort(key=lambda e: (e["name"], _version_key(e["version"])))
    return found


def _describe(entries: list[dict]) -> str:
    if not entries:
        return f"no predictors are registered in {registry_dir()}"
    by_name: dict[str, list[str]] = {}
    for e in entries:
        by_name.setdefault(e["name"], []).append(e["version"])
    return "registered: " + ", ".join(f"{n} ({', '.join(v)})" for n, v in by_name.items())


def find_predictor(name: str, version: str | float | None = None) -> Path:
    """Directory of a registered predictor.

    Args:
        name: registered name.
        version: a version; None picks the latest.

    Returns:
        The package directory.

    Raises:
        PredictorNotFound: no such name, or no such version; the message lists what exists.
    """
    entries = list_predictors()
    matches = [e for e in entries if e["name"] == name]
    if not matches:
        raise PredictorNotFound(f"no predictor named {name!r}; {_describe(entries)}")
    if version is None:
        return Path(matches[-1]["path"])
    for e in matches:
        if _same_version(e["version"], version):
            return Path(e["path"])
    versions = ", ".join(e["version"] for e in matches)
    raise PredictorNotFound(
        f"predictor {name!r} has no version {version!r}; available versions: {versions}"
    )


def register_predictor(source: str | os.PathLike, *, overwrite: bool = False) -> dict:
    """Copy a predictor into the registry.

    Args:
        source: an nn-farm package directory (or its manifest.json), or an nn-Meter
            customized-predictor meta yaml (its folder is converted).
        overwrite: replace an already registered name and version.

    Returns:
        The registry entry (as in :func:`list_predictors`).

    Raises:
        PredictorNotFound: ``source`` does not exist.
        ConfigError: a malformed nn-Meter meta yaml.
        PredictorError: the name or version is unusable as a directory name, or the
            version is registered already and ``overwrite`` is False.
    """
    source = Path(source)
    if source.name == MANIFEST_NAME:
        source = source.parent
    if not source.exists():
        raise PredictorNotFound(f"{source} does not exist")
    if source.suffix.lower() in (".yaml", ".yml"):
        from nn_farm.predictor.nnmeter_compat import import_nnmeter, read_nnmeter_meta

        meta = read_nnmeter_meta(source)
        target = _target(meta["name"], str(meta["version"]), overwrite)
        import_nnmeter(source, target, overwrite=True)
    elif is_package(source):
        manifest = read_manifest(source)
        target = _target(manifest["name"], manifest["version"], overwrite)
        from nn_farm.predictor.package import load_package

        load_package(source)  # verify checksums before copying a broken package in
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    else:
        raise PredictorNotFound(
            f"{source} is neither a predictor package (no {MANIFEST_NAME}) "
            f"nor an nn-Meter meta yaml"
        )
    manifest = read_manifest(target)
    return next(
        e for e in list_predictors()
        if e["name"] == manifest["name"] and e["version"] == manifest["version"]
    )


def _target(name: str, version: str, overwrite: bool) -> Path:
    for what, value in (("name", name), ("version", version)):
        if not _SAFE.match(str(value)):
            raise PredictorError(
                f"predictor {what} {value!r} must be letters, digits, '.', '_', '+' or '-'"
            )
    target = registry_dir() / name / version
    if target.exists() and not overwrite:
        raise PredictorError(
            f"predictor {name!r} version {version!r} is registered already ({target}); "
            f"unregister it first or pass overwrite"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def unregister_predictor(name: str, version: str | float | None = None) -> list[str]:
    """Remove a predictor version (or all its versions) from the registry.

    Args:
        name: registered name.
        version: the version to remove; None removes every version.

    Returns:
        The versions removed.

    Raises:
        PredictorNotFound: no such name or version (the message lists what exists).
    """
    if version is not None:
        path = find_predictor(name, version)
        removed = [read_manifest(path)["version"]]
        shutil.rmtree(path)
    else:
        find_predictor(name)  # raises with the list of names
        removed = [e["version"] for e in list_predictors() if e["name"] == name]
        shutil.rmtree(registry_dir() / name)
    parent = registry_dir() / name
    if parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
    return removed


def load_latency_predictor(name_or_path: str | os.PathLike, version: str | float | None = None,
                           **options):
    """Load a latency predictor by registered name or from a path.

    Args:
        name_or_path: a registered name, a package directory, or an nn-Meter meta yaml.
        version: registered version; None loads the latest. Ignored for paths.
        **options: passed to :class:`~nn_farm.predictor.latency_predictor.LatencyPredictor`
            (e.g. ``on_unknown="raise"``).

    Returns:
        A :class:`~nn_farm.predictor.latency_predictor.LatencyPredictor`.

    Raises:
        PredictorNotFound: unknown name or version (the message lists what exists).
        PredictorError: the package fails verification.

    Example:
        >>> predictor = load_latency_predictor("pixel4-cpu-tflite")   # doctest: +SKIP
        >>> predictor.predict("mobilenet_v2.onnx", "onnx")            # doctest: +SKIP
        12.7
    """
    from nn_farm.predictor.latency_predictor import LatencyPredictor
    from nn_farm.predictor.package import load_package

    path = Path(name_or_path)
    if path.suffix.lower() in (".yaml", ".yml") and path.is_file():
        from nn_farm.predictor.nnmeter_compat import load_nnmeter_package

        return LatencyPredictor(load_nnmeter_package(path), **options)
    if path.name == MANIFEST_NAME:
        path = path.parent
    if is_package(path):
        return LatencyPredictor(load_package(path), **options)
    return LatencyPredictor(load_package(find_predictor(str(name_or_path), version)), **options)
