"""Predict a model's latency (ms) from a predictor package.

    model (file, object, IR)  --ir.model_to_ir-->        IR graph
    IR graph                  --kernels.detect_kernels--> kernel units (package fusion rules)
    kernel units              --kernel_specs-->           configs grouped by kernel type
    configs of one type       --features-->               X (n, n_features)
    X                         --kernel regressor-->       ms per kernel  --sum-->  ms

:meth:`LatencyPredictor.predict_many` groups the kernels of *all* models by kernel
type, so each regressor is called once per batch, not once per model.

A kernel the package cannot price (a type with no spec, or no model in the package)
is never counted as 0 ms silently: it is listed in the detail, counted, and warned
about with :class:`UnknownKernelWarning` (or raised, with ``on_unknown="raise"``).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import warnings
from collections import Counter
from typing import Any, Iterable, Sequence

import numpy as np

from nn_farm.errors import UnknownKernelError
from nn_farm.predictor.fast_regressor import compile_regressor
from nn_farm.predictor.kernel_specs import (
    KERNEL_SPECS,
    config_row_from_kernel_unit,
    config_rows,
    fallback_kernel_type,
    features,
    kernel_type_of,
)
from nn_farm.predictor.package import PredictorPackage

__all__ = ["LatencyPredictor", "UnknownKernelWarning", "KERNELS_MODEL_TYPE"]

log = logging.getLogger(__name__)

#: ``model_type`` for input that is already a list of kernel units (nn-Meter's
#: kernel-detector output): no IR conversion, no detection.
KERNELS_MODEL_TYPE = "kernels"

_ON_UNKNOWN = ("warn", "raise", "ignore")


class UnknownKernelWarning(UserWarning):
    """Some kernels of a model have no regressor; they are left out of the sum."""


class LatencyPredictor:
    """Latency of whole models from per-kernel regressors.

    Args:
        package: a loaded :class:`~nn_farm.predictor.package.PredictorPackage`.
        on_unknown: what to do with kernels the package cannot price: ``"warn"``
            (default: leave them out of the sum, warn, list them in the detail),
            ``"raise"`` (:class:`~nn_farm.errors.UnknownKernelError`) or ``"ignore"``
            (still listed in the detail, no warning).

    Example:
        >>> from nn_farm.predictor import load_latency_predictor
        >>> predictor = load_latency_predictor("synthetic-fixture")   # doctest: +SKIP
        >>> predictor.predict("resnet18", "torchvision")               # doctest: +SKIP
        35.2
    """

    def __init__(self, package: PredictorPackage, *, on_unknown: str = "warn"):
        if on_unknown not in _ON_UNKNOWN:
            raise ValueError(f"on_unknown must be one of {_ON_UNKNOWN}, got {on_unknown!r}")
        self.package = package
        self.on_unknown = on_unknown
        self._predict_fns = {k: compile_regressor(m) for k, m in package.models.items()}
        self._model_key_cache: dict[str, str | None] = {}
        self._fusion_rules = None

    def __getstate__(self):
        # Compiled regressors are closures; rebuild them after unpickling (Ray, joblib).
        return {"package": self.package, "on_unknown": self.on_unknown}

    def __setstate__(self, state):
        self.__init__(state["package"], on_unknown=state["on_unknown"])

    # ------------------------------------------------------------ identity

    @property
    def name(self) -> str:
        return self.package.name

    @property
    def version(self) -> str:
        return self.package.version

    @property
    def device(self) -> str:
        return self.package.device

    @property
    def kernel_types(self) -> list[str]:
        """Kernel types this predictor has a regressor for."""
        return sorted(self.package.models)

    def __repr__(self) -> str:
        return (f"LatencyPredictor(name={self.name!r}, version={self.version!r}, "
                f"device={self.device!r}, kernels={len(self.package.models)})")

    # ------------------------------------------------------------ model -> kernels

    def fusion_rules(self):
        """The package's fusion rules in the form kernel detection takes (cached)."""
        if self._fusion_rules is None:
            from nn_farm.predictor.kernels import load_fusion_rules

            self._fusion_rules = load_fusion_rules(self.package.fusion_rules)
        return self._fusion_rules

    def kernel_units(self, model: Any, model_type: str,
                     input_shape: Sequence[int] | None = None) -> list[dict]:
        """Detect the kernel units of one model with this package's fusion rules.

        Args:
            model: a file path, model object, torchvision name, nn-Meter IR dict or
                IRGraph, or (``model_type="kernels"``) a list of kernel units.
            model_type: one of ``nn_farm.predictor.ir.MODEL_TYPES`` or ``"kernels"``.
            input_shape: input shape for models that need one (torch, torchvision).

        Returns:
            Kernel units in nn-Meter's format.

        Raises:
            ConversionError: the model cannot be turned into IR.
            IRError: the IR is malformed.
        """
        return self._units(model, model_type, input_shape, connections=True)

    def _units(self, model: Any, model_type: str, input_shape, connections: bool) -> list[dict]:
        """:meth:`kernel_units`; without ``connections`` the units lack name and
        in/outbounds, which pricing does not read (a NAS batch saves a third of
        detection)."""
        if model_type == KERNELS_MODEL_TYPE:
            if isinstance(model, (str, os.PathLike)):
                import json

                with open(model) as fh:
                    model = json.load(fh)
            return list(model)
        from nn_farm.predictor.ir import IRGraph, model_to_ir
        from nn_farm.predictor.kernels import detect_kernels

        ir = model if isinstance(model, IRGraph) else model_to_ir(model, model_type, input_shape)
        return detect_kernels(ir, self.fusion_rules(), connections=connections)

    # ------------------------------------------------------------ prediction

    def predict(self, model: Any, model_type: str,
                input_shape: Sequence[int] | None = None) -> float:
        """Predicted latency of one model.

        Args:
            model: see :meth:`kernel_units`.
            model_type: see :meth:`kernel_units`.
            input_shape: see :meth:`kernel_units`.

        Returns:
            Latency in ms: the sum over the kernels this package can price.

        Raises:
            UnknownKernelError: with ``on_unknown="raise"``, a kernel cannot be priced.
            ConversionError, IRError: the model cannot be read.
        """
        units = self._units(model, model_type, input_shape, connections=False)
        totals, _, unknown = self._evaluate([units], keep_detail=False)
        self._report_unknown(unknown)
        return float(totals[0])

    def predict_many(self, models: Iterable[Any], model_type: str,
                     input_shape: Sequence[int] | None = None) -> list[float]:
        """Predicted latency of many models, one regressor call per kernel type.

        Args:
            models: models of one ``model_type`` (see :meth:`kernel_units`).
            model_type: see :meth:`kernel_units`.
            input_shape: see :meth:`kernel_units`, shared by all models.

        Returns:
            Latency in ms per model, in input order; equal to a loop of :meth:`predict`.

        Raises:
            UnknownKernelError: with ``on_unknown="raise"``, a kernel cannot be priced.
        """
        with _gc_paused():
            if model_type == "nnmeter-ir":  # the NAS loop: IR graphs straight to detection
                from nn_farm.predictor.ir import IRGraph
                from nn_farm.predictor.kernels import detect_kernels

                rules = self.fusion_rules()
                unit_lists = [detect_kernels(m, rules, connections=False) if type(m) is IRGraph
                              else self._units(m, model_type, input_shape, False) for m in models]
            else:
                unit_lists = [self._units(m, model_type, input_shape, False) for m in models]
            totals, _, unknown = self._evaluate(unit_lists, keep_detail=False)
            # freed while the collector still sleeps: otherwise its first run after
            # waking walks every kernel dict of the batch (a tenth of the batch time)
            del unit_lists
        self._report_unknown(unknown)
        return totals.tolist()

    def predict_detail(self, model: Any, model_type: str,
                       input_shape: Sequence[int] | None = None) -> dict:
        """Predicted latency of one model with its per-kernel breakdown.

        Returns:
            ``{"predictor", "version", "device", "latency_ms", "n_kernels",
            "kernels": [{"kernel", "op", "type", "model", "config", "ms"}, ...],
            "n_unknown", "unknown_kernels": [{"kernel", "op", "reason"}, ...]}``.
            ``kernels`` is in detection order; ``model`` is the regressor used (a
            conv kernel may be priced by its family's ``conv-bn-relu`` model).

        Raises:
            UnknownKernelError: with ``on_unknown="raise"``, a kernel cannot be priced.
        """
        units = self.kernel_units(model, model_type, input_shape)
        totals, details, unknown = self._evaluate([units], keep_detail=True)
        self._report_unknown(unknown)
        return {
            "predictor": self.name,
            "version": self.version,
            "device": self.device,
            "latency_ms": float(totals[0]),
            "n_kernels": len(units),
            "kernels": details[0],
            "n_unknown": len(unknown[0]),
            "unknown_kernels": unknown[0],
        }

    # ------------------------------------------------------------ machinery

    def _model_key(self, kernel_type: str) -> str | None:
        try:
            return self._model_key_cache[kernel_type]
        except KeyError:
            pass
        key = None
        if kernel_type in self._predict_fns:
            key = kernel_type
        else:
            fallback = fallback_kernel_type(kernel_type)
            if fallback in self._predict_fns:
                key = fallback
        self._model_key_cache[kernel_type] = key
        return key

    def _evaluate(self, unit_lists: list[list[dict]], keep_detail: bool):
        """Price every kernel of every model; one regressor call per model key.

        Returns:
            (totals ms array (n_models,), per-model detail lists or None,
            per-model unknown-kernel lists).
        """
        n_models = len(unit_lists)
        unknown: list[list[tuple[int, dict]]] = [[] for _ in range(n_models)]
        details = [[None] * len(units) for units in unit_lists] if keep_detail else None
        # The hot loop of a NAS batch (tens of thousands of kernels): units are only
        # sorted by op here; configs are read a whole op at a time below.
        by_op: dict[str, tuple[list, list, list]] = {}
        for m, units in enumerate(unit_lists):
            for j, unit in enumerate(units):
                try:
                    op = unit["op"]
                    bucket = by_op.get(op)
                except (KeyError, TypeError, IndexError):
                    op = None
                if type(op) is not str:
                    unknown[m].append((j, _unknown_entry(unit, f"kernel unit has no 'op' string: {unit!r:.200}")))
                    continue
                if bucket is None:
                    bucket = by_op[op] = ([], [], [])
                bucket[0].append(unit)
                bucket[1].append(m)
                bucket[2].append(j)

        # model key -> (config rows, owning model index, position in that model, kernel type).
        # Ops in sorted order: a model's kernels of one key are then summed in the same
        # order whatever else is in the batch, so predict_many equals a loop of predict.
        groups: dict[str, tuple[list, list, list, list]] = {}
        for op in sorted(by_op):
            units, owners, positions = by_op[op]
            priced = self._rows(op, units, owners, positions, unknown)
            if priced is None:
                continue
            key, kernel_type, rows, owners, positions = priced
            group = groups.get(key)
            if group is None:
                group = groups[key] = ([], [], [], [])
            group[0].extend(rows)
            group[1].extend(owners)
            group[2].extend(positions)
            group[3].extend([kernel_type] * len(rows))

        totals = np.zeros(n_models, dtype=np.float64)
        for key in sorted(groups):
            rows, owners, positions, types = groups[key]
            # NAS batches repeat configs: ~1,650 distinct among ~46,000 conv-like rows
            # of 1,000 MobileNetV2-style graphs. Each distinct row is priced once; a
            # row's price does not depend on its neighbours, so the sums are unchanged.
            first_seen: dict[tuple, int] = {}
            slot = [first_seen.setdefault(row, len(first_seen)) for row in rows]
            X = features(key, np.asarray(list(first_seen), dtype=np.float64))
            y = self._predict_fns[key](X)[slot]
            totals += np.bincount(owners, weights=y, minlength=n_models)
            if keep_detail:
                config_keys = KERNEL_SPECS[key].config_keys
                for i, (m, j) in enumerate(zip(owners, positions)):
                    unit = unit_lists[m][j]
                    details[m][j] = {
                        "kernel": unit.get("name", ""),
                        "op": unit.get("op", ""),
                        "type": types[i],
                        "model": key,
                        "config": dict(zip(config_keys, (int(v) for v in rows[i]))),
                        "ms": float(y[i]),
                    }
        if keep_detail:
            details = [[d for d in model_details if d is not None] for model_details in details]
        return totals, details, [[entry for _, entry in sorted(u, key=lambda e: e[0])] for u in unknown]

    def _rows(self, op: str, units: list, owners: list, positions: list, unknown: list):
        """(model key, kernel type, config rows, owners, positions) for the units of one op,
        the ones that cannot be priced moved to ``unknown``; None if none can be."""
        try:
            kernel_type = kernel_type_of(op)
        except UnknownKernelError as exc:
            for unit, m, j in zip(units, owners, positions):
                unknown[m].append((j, _unknown_entry(unit, exc.args[0])))
            return None
        key = self._model_key(kernel_type)
        if key is None:
            reason = f"predictor {self.name!r} has no model for kernel type {kernel_type!r}"
            for unit, m, j in zip(units, owners, positions):
                unknown[m].append((j, _unknown_entry(unit, reason)))
            return None
        try:
            return key, kernel_type, config_rows(kernel_type, units), owners, positions
        except UnknownKernelError:
            pass
        # Some unit is malformed: one at a time, to name it.
        rows, kept_owners, kept_positions = [], [], []
        for unit, m, j in zip(units, owners, positions):
            try:
                rows.append(config_row_from_kernel_unit(unit)[1])
            except UnknownKernelError as exc:
                unknown[m].append((j, _unknown_entry(unit, exc.args[0])))
                continue
            kept_owners.append(m)
            kept_positions.append(j)
        return (key, kernel_type, rows, kept_owners, kept_positions) if rows else None

    def _report_unknown(self, unknown: list[list[dict]]) -> None:
        counts = Counter(entry["op"] for entries in unknown for entry in entries)
        if not counts or self.on_unknown == "ignore":
            return
        summary = ", ".join(f"{op} x{n}" for op, n in counts.most_common())
        message = (f"{sum(counts.values())} kernel(s) left out of the latency sum: predictor "
                   f"{self.name!r} {self.version} cannot price {summary}")
        if self.on_unknown == "raise":
            raise UnknownKernelError(message)
        warnings.warn(message, UnknownKernelWarning, stacklevel=3)
        log.debug(message)


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector for one batch.

    A NAS batch keeps a thousand IR graphs alive while kernel detection allocates
    millions of short-lived dicts; every collection then rescans all the graphs,
    which measured 1.5-2x slower. The batch's garbage is freed by reference counting
    anyway; anything cyclic is collected once the collector resumes.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _unknown_entry(unit: Any, reason: str) -> dict:
    if not isinstance(unit, dict):
        return {"kernel": "", "op": repr(unit)[:60], "reason": reason}
    return {"kernel": unit.get("name", ""), "op": str(unit.get("op", "")), "reason": reason}

