"""Kernel-data files in nn-Meter's formats: sampled configs, profiled latencies, CSV export.

A build keeps what it sampled and measured under ``<workspace>/predictor_build/results/``,
in the two JSON files nn-Meter's builder writes, so nn-Meter users' scripts and
files carry over:

    <kernel>_<mark>.json     {kernel_type: {id: {"model": path, "shapes": [...], "config": {...}}}}
    profiled_<kernel>.json   {kernel_type: {id: {"latency": "<mean> +- <std>", ...}}}

``id`` is six characters from ``A-Z0-9`` (nn-Meter's ``KernelGenerator``), unique
within a kernel type; ``mark`` names the round (``prior``, ``finegrained1``, ...).
Latencies are milliseconds, written as nn-Meter's ``Latency`` string
``"12.5 +- 0.3"``. Both files are written incrementally: new ids are merged into
what the file already holds (nn-Meter's ``merge_info``), so a resumed build adds to
them. Every round's profiled latencies go into the one ``profiled_<kernel>.json``,
as in nn-Meter; ``write_profiled(..., mark=...)`` writes ``profiled_<kernel>_<mark>.json``
instead when a caller wants them apart.

:func:`load_kernel_data` reads any of nn-Meter's ``kernel_data`` forms (a
``(configs, profiled)`` tuple of paths or lists of paths, a merged dict, or paths)
into ``(ids, configs, latency_ms)``; :func:`export_csv` writes the feature table
(nn-Meter's ``Data_<kernel>_<mark>.csv``) with the predictor's feature columns.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import string
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from nn_farm.errors import ConfigError

__all__ = [
    "ID_ALPHABET",
    "ID_LENGTH",
    "Latency",
    "results_dir",
    "configs_path",
    "profiled_path",
    "new_ids",
    "merge_info",
    "write_configs",
    "write_profiled",
    "read_json",
    "load_kernel_data",
    "export_csv",
]

ID_ALPHABET = string.ascii_uppercase + string.digits
ID_LENGTH = 6

PathLike = str | os.PathLike


# ---------------------------------------------------------------- latency strings


class Latency:
    """A latency in ms as nn-Meter writes it: ``"<avg> +- <std>"``.

    Attributes:
        avg: mean latency in ms.
        std: its standard deviation in ms.
    """

    __slots__ = ("avg", "std")

    def __init__(self, avg: float | str | "Latency" = 0.0, std: float = 0.0) -> None:
        if isinstance(avg, Latency):
            avg, std = avg.avg, avg.std
        elif isinstance(avg, str):
            head, sep, tail = avg.partition("+-")
            try:
                avg, std = float(head), float(tail) if sep else 0.0
            except ValueError:
                raise ValueError(f"not a latency string '<avg> +- <std>': {avg!r}") from None
        self.avg = float(avg)
        self.std = float(std)

    def __str__(self) -> str:
        return f"{self.avg} +- {self.std}"

    def __repr__(self) -> str:
        return f"Latency({self.avg!r}, {self.std!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Latency) and (self.avg, self.std) == (other.avg, other.std)


def _latency_ms(value) -> float:
    """One record's latency (a Latency, its string, a number or (mean, std)) as float ms."""
    if isinstance(value, Latency):
        return value.avg
    if isinstance(value, str):
        return Latency(value).avg
    if isinstance(value, (tuple, list)):
        return float(value[0])
    if isinstance(value, Mapping):  # a Measurement-like dict
        for key in ("avg", "mean_ms", "median_ms"):
            if key in value:
                return float(value[key])
        raise ValueError(f"latency dict has no avg / mean_ms / median_ms: {value!r}")
    return float(value)


def _latency_str(value) -> str:
    if isinstance(value, (tuple, list)):
        return str(Latency(value[0], value[1] if len(value) > 1 else 0.0))
    if isinstance(value, Mapping):
        std = value.get("std", value.get("std_ms", 0.0))
        return str(Latency(_latency_ms(value), std))
    return str(Latency(value))


# ---------------------------------------------------------------- paths and ids


def results_dir(workspace: PathLike) -> Path:
    """``<workspace>/predictor_build/results`` (not created)."""
    from nn_farm.builder.workspace import Workspace

    return Workspace(Path(workspace)).results_dir


def configs_path(workspace: PathLike, kernel_type: str, mark: str) -> Path:
    """``<results>/<kernel>_<mark>.json``."""
    return results_dir(workspace) / f"{kernel_type}_{mark}.json"


def profiled_path(workspace: PathLike, kernel_type: str, mark: str = "") -> Path:
    """``<results>/profiled_<kernel>.json`` (``profiled_<kernel>_<mark>.json`` with a mark)."""
    suffix = f"_{mark}" if mark else ""
    return results_dir(workspace) / f"profiled_{kernel_type}{suffix}.json"


def new_ids(n: int, taken: Iterable[str] = (), rng: random.Random | None = None) -> list[str]:
    """``n`` fresh six-character ids (``A-Z0-9``), unique and not in ``taken``.

    Args:
        n: how many.
        taken: ids already in use (e.g. the keys of an existing kernel-data file).
        rng: random source (default: a system-seeded one, as nn-Meter's).

    Returns:
        The ids, in the order drawn.
    """
    rng = rng or random.Random()
    used = set(taken)
    out: list[str] = []
    while len(out) < n:
        candidate = "".join(rng.choice(ID_ALPHABET) for _ in range(ID_LENGTH))
        if candidate not in used:
            used.add(candidate)
            out.append(candidate)
    return out


# ---------------------------------------------------------------- reading and writing


def read_json(path: PathLike) -> dict:
    """Parse a kernel-data JSON file.

    Raises:
        ConfigError: the file is missing or is not a JSON object (names the file).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read kernel data: {exc.strerror or exc}", path=str(path)) from exc
    except ValueError as exc:
        raise ConfigError(f"kernel data is not valid JSON: {exc}", path=str(path)) from exc
    if not isinstance(data, dict):
        raise ConfigError("kernel data must be a JSON object {kernel_type: {id: ...}}",
                          path=str(path))
    return data


def merge_info(new_info: Mapping[str, Mapping], prev_info: Mapping[str, Mapping] | None) -> dict:
    """nn-Meter's ``merge_info``: ``prev_info`` updated with ``new_info``, per kernel type."""
    merged = {k: dict(v) for k, v in (prev_info or {}).items()}
    for kernel_type, records in new_info.items():
        merged.setdefault(kernel_type, {}).update(records)
    return merged


def _plain(value):
    """Numpy scalars and tuples as plain JSON values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def _records_by_id(records, what: str) -> dict[str, dict]:
    """Accept ``{id: record}`` or a list of records carrying an ``"id"`` key."""
    if isinstance(records, Mapping):
        return {str(k): dict(v) for k, v in records.items()}
    out = {}
    for record in records:
        record = dict(record)
        try:
            rid = str(record.pop("id"))
        except KeyError:
            raise ConfigError(f"{what}: a record in a list needs an 'id' key: {record!r:.200}") \
                from None
        out[rid] = record
    return out


def _write_merged(path: Path, kernel_type: str, records: Mapping[str, dict]) -> Path:
    prev = read_json(path) if path.exists() else None
    merged = merge_info({kernel_type: records}, prev)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_plain(merged), indent=4))
    tmp.replace(path)  # atomic: a crash never leaves half a file
    return path


def write_configs(workspace: PathLike, kernel_type: str, mark: str,
                  records: Mapping[str, Mapping] | Sequence[Mapping]) -> Path:
    """Merge sampled kernels into ``<results>/<kernel>_<mark>.json``.

    Args:
        workspace: the workspace root.
        kernel_type: e.g. ``"conv-bn-relu"``.
        mark: the round, e.g. ``"prior"`` or ``"finegrained1"``.
        records: ``{id: {"model": path, "config": {...}, "shapes": [...]}}``, or a
            list of such dicts with an ``"id"`` key. ``config`` is required.

    Returns:
        The file path.

    Raises:
        ConfigError: a record has no config, or the existing file is unreadable.
    """
    records = _records_by_id(records, f"{kernel_type}_{mark}")
    for rid, record in records.items():
        if not isinstance(record.get("config"), Mapping):
            raise ConfigError(f"kernel {kernel_type} id {rid}: record needs a 'config' mapping",
                              key="config")
        record.setdefault("model", "")
    return _write_merged(configs_path(workspace, kernel_type, mark), kernel_type, records)


def write_profiled(workspace: PathLike, kernel_type: str,
                   records: Mapping[str, Any] | Sequence[Mapping], mark: str = "") -> Path:
    """Merge measured latencies into ``<results>/profiled_<kernel>.json``.

    Args:
        workspace: the workspace root.
        kernel_type: the kernel type.
        records: ``{id: {"latency": value, ...other metrics}}`` or ``{id: value}``, or
            a list of dicts with ``"id"`` and ``"latency"``. A latency value may be a
            number (ms), ``(mean, std)``, a ``Latency``, its string, or a dict with
            ``mean_ms``/``std_ms``; it is written as ``"<mean> +- <std>"``.
        mark: write ``profiled_<kernel>_<mark>.json`` instead of the shared file.

    Returns:
        The file path.

    Raises:
        ConfigError: a record has no latency.
    """
    if isinstance(records, Mapping):
        records = {rid: (rec if isinstance(rec, Mapping) and "latency" in rec else
                         {"latency": rec}) for rid, rec in records.items()}
    records = _records_by_id(records, f"profiled_{kernel_type}")
    out = {}
    for rid, record in records.items():
        if "latency" not in record:
            raise ConfigError(f"kernel {kernel_type} id {rid}: profiled record needs 'latency'",
                              key="latency")
        out[rid] = {**record, "latency": _latency_str(record["latency"])}
    return _write_merged(profiled_path(workspace, kernel_type, mark), kernel_type, out)


# ---------------------------------------------------------------- loading


def _load_part(part, what: str) -> dict:
    """A path, a dict, or a list of either, merged into one {kernel_type: {id: ...}} dict."""
    if isinstance(part, (str, os.PathLike)):
        return read_json(part)
    if isinstance(part, Mapping):
        return {k: dict(v) for k, v in part.items()}
    if isinstance(part, (list, tuple)):
        merged: dict = {}
        for item in part:
            merged = merge_info(_load_part(item, what), merged)
        return merged
    raise ConfigError(f"kernel data {what}: expected a path, a dict or a list of them, "
                      f"got {type(part).__name__}")


def _pick_kernel(data: Mapping, kernel_type: str | None, what: str) -> tuple[str | None, dict]:
    """The records of one kernel type from ``{kernel_type: {id: ...}}`` (or a bare {id: ...})."""
    if kernel_type is not None and kernel_type in data:
        return kernel_type, dict(data[kernel_type])
    if kernel_type is None and len(data) == 1:
        (only, records), = data.items()
        if isinstance(records, Mapping) and all(isinstance(r, Mapping) for r in records.values()):
            return only, dict(records)
    # A bare {id: {...}} mapping: every value is a record with config or latency.
    if data and all(isinstance(r, Mapping) and ("config" in r or "latency" in r)
                    for r in data.values()):
        return kernel_type, dict(data)
    if kernel_type is None:
        raise ConfigError(f"kernel data {what} holds several kernel types "
                          f"({', '.join(data)}); name the kernel_type")
    raise ConfigError(f"kernel data {what} has no kernel type {kernel_type!r} "
                      f"(it has {', '.join(data) or 'nothing'})")


def load_kernel_data(kernel_data, kernel_type: str | None = None,
                     predict_label: str = "latency",
                     ) -> tuple[list[str], list[dict], list[float]]:
    """Read kernel data in any of nn-Meter's forms.

    Args:
        kernel_data: one of
            - ``(configs, profiled)``: each a path, a dict, or a list of paths/dicts
              (several rounds), e.g. ``("results/conv-bn-relu_prior.json",
              "results/profiled_conv-bn-relu.json")``;
            - a dict ``{kernel_type: {id: {"config": ..., "latency": ...}}}`` (nn-Meter's
              merged form, also accepted without the kernel-type level);
            - a path to such a merged JSON file, or a list of them.
        kernel_type: which kernel type to read; optional when the data holds one.
        predict_label: the label to read (``"latency"``: a ``Latency`` or its string,
            read as its mean).

    Returns:
        ``(ids, configs, labels)``: ids sorted, each config a dict, labels as floats
        (ms for latency). Ids without both a config and a label are skipped, and so
        are non-finite or non-positive labels (nn-Meter drops zero latencies too).

    Raises:
        ConfigError: unreadable file, wrong shape, or the kernel type is missing.
    """
    if isinstance(kernel_data, tuple) and len(kernel_data) == 2:
        kt, configs = _pick_kernel(_load_part(kernel_data[0], "configs"), kernel_type, "configs")
        _, labels = _pick_kernel(_load_part(kernel_data[1], "profiled"), kt, "profiled")
    else:
        _, merged = _pick_kernel(_load_part(kernel_data, "dict"), kernel_type, "dict")
        configs = labels = merged
    ids, out_configs, out_labels = [], [], []
    for rid in sorted(labels):
        config = (configs.get(rid) or {}).get("config")
        label = (labels.get(rid) or {}).get(predict_label)
        if not isinstance(config, Mapping) or label is None:
            continue
        try:
            value = _latency_ms(label) if predict_label == "latency" else float(label)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(value) or value <= 0:
            continue
        ids.append(rid)
        out_configs.append(dict(config))
        out_labels.append(value)
    return ids, out_configs, out_labels


def export_csv(kernel_type: str, kernel_data, path: PathLike,
               predict_label: str = "latency") -> Path:
    """Write the feature table of one kernel type (nn-Meter's ``Data_<kernel>_<mark>.csv``).

    Columns: ``id``, the spec's config keys, its feature columns (``f_<name>``, from
    :func:`nn_farm.predictor.kernel_specs.features`), then the label (``latency_ms``
    for latency).

    Args:
        kernel_type: the kernel type.
        kernel_data: anything :func:`load_kernel_data` accepts, or its
            ``(ids, configs, labels)`` result.
        path: the CSV file to write (parents created).

    Returns:
        The path.
    """
    from nn_farm.predictor.kernel_specs import feature_names, features, get_spec

    if isinstance(kernel_data, tuple) and len(kernel_data) == 3:
        ids, configs, labels = kernel_data
    else:
        ids, configs, labels = load_kernel_data(kernel_data, kernel_type, predict_label)
    keys = get_spec(kernel_type).config_keys
    X = features(kernel_type, configs)
    label_col = "latency_ms" if predict_label == "latency" else predict_label
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", *keys, *(f"f_{n}" for n in feature_names(kernel_type)), label_col])
        for rid, config, row, label in zip(ids, configs, X, labels):
            writer.writerow([rid, *(config.get(k) for k in keys),
                             *(repr(float(v)) for v in row), repr(float(label))])
    return path
