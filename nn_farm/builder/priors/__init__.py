"""Layer configs of real model zoos: the prior distributions kernel sampling draws from.

The CSVs next to this file are written by ``scripts/extract_priors.py`` from
torchvision and keras.applications architectures (weights=None), one per kernel
family, in nn-Meter's prior_config_lib layout plus a few columns it lacks:

    conv.csv / dwconv.csv   model,input_h,input_w,cin,cout,ks,stride,groups
    pooling.csv             model,input_h,input_w,cin,cout,ks,stride,type  (max|avg|global_avg)
    fc.csv                  model,cin,cout
    concat.csv              model,input_h,input_w,n,cin1,cin2,cin3,cin4,cin_total
    se.csv                  model,input_h,input_w,cin

Example:
    >>> conv = load_prior("conv")
    >>> conv["cin"].shape == conv["model"].shape
    True
"""

from __future__ import annotations

import csv
import functools
import pathlib

import numpy as np

from nn_farm.errors import BuilderError

__all__ = ["PRIOR_FAMILIES", "PRIOR_DIR", "prior_path", "load_prior"]

PRIOR_DIR = pathlib.Path(__file__).resolve().parent
PRIOR_FAMILIES = ("conv", "dwconv", "pooling", "fc", "concat", "se")
_TEXT_COLUMNS = ("model", "type")


def prior_path(family: str) -> pathlib.Path:
    """Path of one family's shipped CSV.

    Raises:
        BuilderError: no such family.
    """
    if family not in PRIOR_FAMILIES:
        raise BuilderError(f"no prior for family {family!r}; known: {', '.join(PRIOR_FAMILIES)}")
    return PRIOR_DIR / f"{family}.csv"


@functools.lru_cache(maxsize=None)
def _load(family: str) -> dict[str, np.ndarray]:
    path = prior_path(family)
    try:
        with open(path, newline="") as fp:
            rows = list(csv.DictReader(fp))
    except OSError as exc:
        raise BuilderError(f"{path}: cannot read prior: {exc}") from exc
    if not rows:
        raise BuilderError(f"{path}: prior has no rows; rerun scripts/extract_priors.py")
    columns = {}
    for name in rows[0]:
        values = [row[name] for row in rows]
        if name in _TEXT_COLUMNS:
            columns[name] = np.asarray(values, dtype=object)
            continue
        try:
            columns[name] = np.asarray(values, dtype=np.int64)
        except ValueError as exc:
            raise BuilderError(f"{path}: column {name!r} is not all integers: {exc}") from exc
        columns[name].setflags(write=False)
    return columns


def load_prior(family: str) -> dict[str, np.ndarray]:
    """Columns of one family's prior CSV.

    Args:
        family: one of :data:`PRIOR_FAMILIES`.

    Returns:
        Column name -> array of shape ``(n_rows,)``: int64 for sizes, object for
        ``model`` and ``type``. Arrays are shared and read-only.

    Raises:
        BuilderError: unknown family, or the CSV is missing or malformed.
    """
    return dict(_load(family))
