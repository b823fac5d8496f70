"""The rule tester's three files, in nn-Meter's formats.

    origin_testcases.json   {"BF_conv_relu": {"conv": {"model": path, "shapes": [[28, 28, 64]]},
                                              "relu": {...}, "block": {...}}, "MON": {...}}
    profiled_results.json   the same, each model with "latency": "avg +- std" (ms); with
                            DETAIL false only the latency is kept (nn-Meter's dump)
    detected_fusion_rule.json
                            {"BF_conv_relu": {"latency": {"block": ..., "conv": ..., "relu": ...,
                                                          "ops": ...},      (DETAIL only)
                                              "obey": true,
                                              "confidence": 0.9999, ...}, "MON": {"obey": "case1"}}

nn-Meter reads only ``obey`` (and ``latency`` strings); nn-farm adds
``confidence`` (0.5..1), ``margin_ms``, ``uncertainty_ms`` and ``rounds`` (the
measurements pooled) to each rule, ``note`` when a case was skipped or
undecided, and ``prior: true`` with ``measured_obey`` when the measurement stayed
below the required confidence and ``obey`` is the prior's (see detect.py).
Files are written atomically (temporary file, then rename).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

from nn_farm.builder.ruletest.cases import TestCase
from nn_farm.builder.ruletest.detect import Estimate, Verdict, latency_string

__all__ = [
    "ORIGIN_FILE",
    "PROFILED_FILE",
    "DETECTED_FILE",
    "write_json",
    "origin_testcases",
    "profiled_results",
    "detected_rules",
    "read_latency",
]

ORIGIN_FILE = "origin_testcases.json"
PROFILED_FILE = "profiled_results.json"
DETECTED_FILE = "detected_fusion_rule.json"


def write_json(path: str | os.PathLike, data: Any) -> str:
    """Write ``data`` as indented JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fp:
            json.dump(data, fp, indent=4)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return str(path)


def origin_testcases(testcases: Iterable[TestCase], paths: Mapping[str, Mapping[str, str]]) -> dict:
    """``origin_testcases.json``: every model's file and input shapes.

    Args:
        paths: test case -> model key -> model file.
    """
    return {case.name: {key: {"model": paths[case.name][key], "shapes": shapes}
                        for key, shapes in case.models.items()}
            for case in testcases}


def profiled_results(origin: Mapping[str, Mapping[str, dict]],
                     estimates: Mapping[str, Mapping[str, Estimate]], detail: bool = True) -> dict:
    """``profiled_results.json``: the origin entries with ``"latency": "avg +- std"``.

    Models without a measurement keep no latency (nn-Meter leaves them out of the
    metrics too).
    """
    out: dict[str, dict] = {}
    for name, models in origin.items():
        out[name] = {}
        for key, info in models.items():
            entry = dict(info) if detail else {}
            est = estimates.get(name, {}).get(key)
            if est is not None:
                entry["latency"] = latency_string(est.mean_ms, est.std_ms)
            out[name][key] = entry
    return out


def _number(x: float):
    return round(x, 6) if math.isfinite(x) else None


def detected_rules(verdicts: Mapping[str, Verdict], rounds: Mapping[str, int],
                   detail: bool = True) -> dict:
    """``detected_fusion_rule.json`` from the verdicts (latency strings only with DETAIL)."""
    out = {}
    for name, v in verdicts.items():
        entry: dict[str, Any] = {}
        if detail and v.latency is not None:
            entry["latency"] = dict(v.latency)
        entry["obey"] = v.obey
        entry["confidence"] = round(v.confidence, 6)
        entry["margin_ms"] = _number(v.margin_ms)
        entry["uncertainty_ms"] = _number(v.uncertainty_ms)
        entry["rounds"] = int(rounds.get(name, 0))
        if v.prior:
            entry["prior"] = True
            entry["measured_obey"] = v.measured
        if v.note:
            entry["note"] = v.note
        out[name] = entry
    return out


def read_latency(text: str) -> tuple[float, float]:
    """Parse nn-Meter's ``"avg +- std"``.

    Raises:
        ValueError: not in that form.
    """
    avg, sep, std = str(text).partition("+-")
    if not sep:
        raise ValueError(f"not an 'avg +- std' latency: {text!r}")
    return float(avg), float(std)
