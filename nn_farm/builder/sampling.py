"""Kernel config samplers: prior sampling from model zoos, fine-grained sampling around errors.

nn-Meter's method (kernel_predictor_builder/data_sampler), tidied:

    prior CSV column --histogram--> inverse CDF --uniform draws--> values
                     --snap to valid values (ks in {1,3,5,7}, ...)--> columns
    columns --zip into configs keyed by the kernel spec--> deduplicated configs

    configs with large error --channels uniform in [0.4 C, 1.2 C], rest fixed--> new configs

Where nn-Meter is sloppy this module is not: values are rounded rather than
truncated (``int(x)`` never reaches a column's maximum), channel histograms are
taken in log space so small channel counts keep their resolution, pooling kernel
sizes and strides are drawn rather than copied row by row, every config is unique
(nn-Meter returns duplicates and then measures them twice), fine-grained samples
exclude the configs they surround, and every sampler takes a ``seed``.

nn-Meter draws each column independently, so it pairs 224x224 maps with 600
channels and 7x7 kernels: a 500-GMAC convolution, 300 times the costliest layer of
any zoo model, which runs for minutes per inference and teaches the predictor
nothing a real model needs. Here a config costlier than the costliest zoo layer of
its family (:func:`zoo_cost_limit`; MACs for conv, dwconv and fc, tensor volume for
the rest) is redrawn. Marginals shift a little toward small maps with many
channels, which is where real models are.

As in nn-Meter, part of the conv, dwconv and HW/CIN samples draw spatial size,
kernel size and stride from a few frequent settings (:data:`FREQUENT_SETTINGS`),
because those configs carry most of a real model's latency; dwconv draws twice
nn-Meter's share of kernel sizes there, mostly 7x7, for the NAS networks that
spend most of their time in them. And 40% of dwconv configs are zoo layers moved
into a MobileNet-style search space (:data:`SEARCH_SPACE_SHARE`): the map scaled to
an elastic input resolution and left unsnapped, the kernel size the space's.

Config keys come from :mod:`nn_farm.predictor.kernel_specs`; customized kernels
(``nn-farm register --kernel``) use their registered sampler class.

Example:
    >>> configs = sample_kernel_configs("conv-bn-relu", 3, seed=0)
    >>> sorted(configs[0])
    ['CIN', 'COUT', 'HW', 'KERNEL_SIZE', 'STRIDES']
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import numpy as np

from nn_farm.builder.priors import load_prior
from nn_farm.errors import UnknownKernelError

__all__ = [
    "VALID_HWS",
    "VALID_KERNEL_SIZES",
    "VALID_STRIDES",
    "VALID_POOL_KERNEL_SIZES",
    "VALID_POOL_STRIDES",
    "FREQUENT_SETTINGS",
    "SEARCH_SPACE_SHARE",
    "SEARCH_SPACE_RESOLUTIONS",
    "SEARCH_SPACE_KERNEL_SIZES",
    "FINEGRAINED_RANGE",
    "inverse_cdf_sample",
    "snap",
    "zoo_cost_limit",
    "sample_kernel_configs",
    "finegrained_configs",
]

# Valid values a sampled column is snapped to (nn-Meter's data_validation lists).
VALID_HWS = {
    "conv": (1, 3, 7, 8, 13, 14, 27, 28, 32, 56, 112, 224),
    "dwconv": (1, 3, 7, 14, 28, 56, 112, 224),
    "hw_cin": (1, 3, 7, 14, 28, 56, 112, 224),
    "pool": (7, 14, 28, 56, 112, 224),
    "concat": (7, 14, 28, 56),
    "global-avgpool": (1, 3, 7, 14, 28),
}
VALID_KERNEL_SIZES = (1, 3, 5, 7)
VALID_STRIDES = (1, 2)
VALID_POOL_KERNEL_SIZES = (2, 3)
VALID_POOL_STRIDES = (1, 2)
VALID_CONCAT_INPUTS = (2, 3, 4)

# family -> (share of configs drawn from frequent settings, {column: {value: weight}});
# a column may carry its own share, as (share, {value: weight}).
FREQUENT_SETTINGS = {
    "conv": (0.3, {"HW": {112: 0.2, 56: 0.4, 28: 0.4}, "KERNEL_SIZE": {5: 0.4, 7: 0.6},
                   "STRIDES": {2: 0.4, 1: 0.6}}),
    # Kernel sizes: twice nn-Meter's share, mostly 7x7. NAS spaces (MobileNetV3, OFA,
    # ProxylessNAS) pick 3, 5 or 7 per block, and a 7x7 dwconv costs several times a
    # 3x3's per multiply-add here. On 40 NAS-sampled networks 7x7 dwconvs were 90% of
    # the dwconv time, and with the zoo's few 7x7s every learner priced them 5-25% low;
    # 80 more 7x7 configs took those networks from 69% to 85% within +-10%.
    "dwconv": (0.2, {"HW": {112: 0.4, 56: 0.4, 28: 0.2}, "KERNEL_SIZE": (0.4, {5: 0.25, 7: 0.75}),
                     "STRIDES": {2: 0.5, 1: 0.5}}),
    "hw_cin": (0.2, {"HW": {112: 0.4, 56: 0.4, 28: 0.2}}),
}
# A share of dwconv configs are zoo dwconv layers moved into a MobileNet-style search
# space (MobileNetV3, OFA, ProxylessNAS). Such spaces pick kernel size 3, 5 or 7 per
# block and vary the input resolution (OFA: 128-224 px in steps of 4), so their
# dwconvs meet every map size from 4 to 112, not only the zoo's 7/14/28/56/112, and
# put 7x7s on large maps, which independent columns rarely pair with few channels. On
# 40 NAS-sampled networks 41% of the dwconv time was at maps of 10-28 that snapping
# never gives (10, 12, 20, 24), and 37% at maps of 40-112. A zoo row keeps its
# channels and stride (so channels stay real for the map size), its map is scaled to a
# drawn resolution, unsnapped (a map's width against the vector lanes is part of what
# these rows teach), and each zoo stage (7, 14, 28, 56, 112 at 224 px) is drawn
# equally often: the zoo's rows are mostly NASNetMobile's at 7-28.
SEARCH_SPACE_SHARE = 0.4
SEARCH_SPACE_RESOLUTIONS = tuple(range(128, 225, 4))
SEARCH_SPACE_KERNEL_SIZES = {3: 0.2, 5: 0.3, 7: 0.5}
# Fine-grained channels: uniform in [low * C, high * C] (nn-Meter's paper and docs).
FINEGRAINED_RANGE = (0.4, 1.2)
# Kernels whose channels must be even (they split the channels in two).
_EVEN_CHANNEL_KERNELS = ("split", "channelshuffle", "se")
# fc: half the configs keep ImageNet's 1,000 classes, as in nn-Meter.
_FC_FIXED_COUT, _FC_FIXED_SHARE = 1000, 0.5
# Give up on reaching n unique configs after this many rounds of redraws.
_MAX_ROUNDS = 50
_CHANNEL_KEYS = ("CIN", "COUT", "CIN1", "CIN2", "CIN3", "CIN4")


# ---------------------------------------------------------------- primitives


def inverse_cdf_sample(values, n: int, rng: np.random.Generator, bins: int = 40,
                       log: bool = False) -> np.ndarray:
    """Draw ``n`` values from the histogram of ``values`` by inverting its CDF.

    Args:
        values: the prior column, shape ``(n_rows,)``.
        n: how many draws.
        rng: the random generator.
        bins: histogram bins (nn-Meter uses 40).
        log: build the histogram over ``log(values)`` (for channel counts, which
            span 3..4096 and cluster at the small end); values must be positive.

    Returns:
        Float array of shape ``(n,)`` within ``[min(values), max(values)]``.
    """
    data = np.asarray(values, dtype=np.float64)
    if log:
        data = np.log(data)
    lo, hi = data.min(), data.max()
    if lo == hi:
        draws = np.full(n, data[0])
    else:
        # Bins centred on lo .. hi, not edged there: zoo values cluster on round numbers
        # (64, 128, 256 in log space fall exactly on nn-Meter's edges), and a value
        # on a left edge is smeared upwards only, shifting every quantile up a bin.
        width = (hi - lo) / (bins - 1)
        edges = lo - width / 2 + width * np.arange(bins + 1)
        hist, edges = np.histogram(data, bins=edges)
        cdf = np.concatenate([[0.0], np.cumsum(hist) / hist.sum()])
        # Linear inverse of the piecewise-linear CDF: uniform within each bin.
        draws = np.interp(rng.random(n), cdf, edges)
    return np.exp(draws) if log else draws


def snap(values, valid: Iterable[int]) -> np.ndarray:
    """Each value replaced by the nearest valid value (ties go to the smaller one)."""
    valid = np.asarray(sorted(valid))
    values = np.asarray(values, dtype=np.float64)
    return valid[np.abs(values[:, None] - valid[None, :]).argmin(axis=1)]


def _channels(values, n, rng, even=False) -> np.ndarray:
    """Channel counts from a prior column: log-histogram draws, rounded, clipped to range."""
    values = np.asarray(values)
    values = values[values > 0]
    draws = inverse_cdf_sample(values, n, rng, log=True)
    if even:
        # The nearest even count, kept inside the prior's range.
        lo, hi = max(2, values.min() + values.min() % 2), max(2, values.max() - values.max() % 2)
        return np.clip(2 * np.rint(draws / 2), lo, hi).astype(np.int64)
    return np.clip(np.rint(draws), max(1, values.min()), values.max()).astype(np.int64)


def _with_frequent(column: np.ndarray, family: str, key: str, rng) -> np.ndarray:
    """Replace a share of ``column`` by draws from the family's frequent settings."""
    share, settings = FREQUENT_SETTINGS.get(family, (0.0, {}))
    if key not in settings:
        return column
    setting = settings[key]
    if isinstance(setting, tuple):
        share, setting = setting
    mask = rng.random(len(column)) < share
    column = column.copy()
    column[mask] = _weighted_choice(setting, int(mask.sum()), rng)
    return column


def _weighted_choice(setting: Mapping[int, float], n: int, rng) -> np.ndarray:
    """``n`` draws of the keys of ``{value: weight}``, by weight."""
    weights = np.asarray(list(setting.values()), dtype=np.float64)
    return rng.choice(np.asarray(list(setting)), size=n, p=weights / weights.sum())


def _search_space_dwconv(columns: dict, rng) -> dict:
    """Replace a share of dwconv rows by zoo layers at search-space resolutions and kernel sizes."""
    p = load_prior("dwconv")
    stages = snap(p["input_h"], VALID_HWS["dwconv"])
    rows = [np.flatnonzero(stages == stage) for stage in np.unique(stages)]
    mask = rng.random(len(columns["HW"])) < SEARCH_SPACE_SHARE
    picks = np.array([rng.choice(rows[i]) for i in rng.integers(len(rows), size=int(mask.sum()))], dtype=np.int64)
    resolution = rng.choice(SEARCH_SPACE_RESOLUTIONS, size=len(picks))
    columns = {key: column.copy() for key, column in columns.items()}
    columns["HW"][mask] = np.ceil(p["input_h"][picks] * resolution / 224)
    columns["CIN"][mask] = p["cin"][picks]
    columns["STRIDES"][mask] = p["stride"][picks]
    columns["KERNEL_SIZE"][mask] = _weighted_choice(SEARCH_SPACE_KERNEL_SIZES, len(picks), rng)
    return columns


def _snapped(values, n, rng, valid) -> np.ndarray:
    return snap(inverse_cdf_sample(values, n, rng), valid)


# ---------------------------------------------------------------- prior samplers per family
# Each takes (n, rng) and returns {config key: int array of shape (n,)}.


def _conv_columns(n, rng):
    p = load_prior("conv")
    columns = {
        "HW": _snapped(p["input_h"], n, rng, VALID_HWS["conv"]),
        "CIN": _channels(p["cin"], n, rng),
        "COUT": _channels(p["cout"], n, rng),
        "KERNEL_SIZE": _snapped(p["ks"], n, rng, VALID_KERNEL_SIZES),
        "STRIDES": _snapped(p["stride"], n, rng, VALID_STRIDES),
    }
    for key in ("HW", "KERNEL_SIZE", "STRIDES"):
        columns[key] = _with_frequent(columns[key], "conv", key, rng)
    return columns


def _dwconv_columns(n, rng):
    p = load_prior("dwconv")
    columns = {
        "HW": _snapped(p["input_h"], n, rng, VALID_HWS["dwconv"]),
        "CIN": _channels(p["cin"], n, rng),
        "KERNEL_SIZE": _snapped(p["ks"], n, rng, VALID_KERNEL_SIZES),
        "STRIDES": _snapped(p["stride"], n, rng, VALID_STRIDES),
    }
    for key in ("HW", "KERNEL_SIZE", "STRIDES"):
        columns[key] = _with_frequent(columns[key], "dwconv", key, rng)
    columns = _search_space_dwconv(columns, rng)
    columns["COUT"] = columns["CIN"]
    return columns


def _pool_columns(n, rng):
    p = load_prior("pooling")
    local = p["type"] != "global_avg"
    columns = {
        "HW": _snapped(p["input_h"][local], n, rng, VALID_HWS["pool"]),
        "CIN": _channels(p["cin"][local], n, rng),
        "KERNEL_SIZE": _snapped(p["ks"][local], n, rng, VALID_POOL_KERNEL_SIZES),
        "POOL_STRIDES": _snapped(p["stride"][local], n, rng, VALID_POOL_STRIDES),
    }
    columns["STRIDES"] = columns["POOL_STRIDES"]
    columns["COUT"] = columns["CIN"]
    return columns


def _fc_columns(n, rng):
    p = load_prior("fc")
    cout = _channels(p["cout"], n, rng)
    cout[rng.random(n) < _FC_FIXED_SHARE] = _FC_FIXED_COUT
    return {"CIN": _channels(p["cin"], n, rng), "COUT": cout}


def _concat_columns(n, rng):
    p = load_prior("concat")
    inputs = np.concatenate([p[f"cin{i}"] for i in range(1, 5)])
    ns = _snapped(np.clip(p["n"], 2, 4), n, rng, VALID_CONCAT_INPUTS)
    columns = {"HW": _snapped(p["input_h"], n, rng, VALID_HWS["concat"]), "NS": ns}
    for i in range(1, 5):
        # Inputs beyond NS are absent: 0, as kernel_specs expects.
        columns[f"CIN{i}"] = np.where(ns >= i, _channels(inputs, n, rng), 0)
    return columns


def _hw_cin_columns(n, rng, even=False):
    # nn-Meter samples element-wise kernels from the conv zoo's inputs.
    p = load_prior("conv")
    hw = _with_frequent(_snapped(p["input_h"], n, rng, VALID_HWS["hw_cin"]), "hw_cin", "HW", rng)
    return {"HW": hw, "CIN": _channels(p["cin"], n, rng, even=even)}


def _se_columns(n, rng):
    p = load_prior("se")
    return {"HW": _snapped(p["input_h"], n, rng, VALID_HWS["hw_cin"]),
            "CIN": _channels(p["cin"], n, rng, even=True)}


def _global_avgpool_columns(n, rng):
    p = load_prior("pooling")
    gap = p["type"] == "global_avg"
    # The real input sizes of global pooling (7 at 224 px), not nn-Meter's fixed 1.
    return {"HW": _snapped(p["input_h"][gap], n, rng, VALID_HWS["global-avgpool"]),
            "CIN": _channels(load_prior("conv")["cin"], n, rng)}


_FAMILY_SAMPLERS: dict[str, Callable] = {
    "conv": _conv_columns,
    "dwconv": _dwconv_columns,
    "pool": _pool_columns,
    "fc": _fc_columns,
    "concat": _concat_columns,
    "add": _hw_cin_columns,
    "hw_cin": _hw_cin_columns,
}
_TYPE_SAMPLERS: dict[str, Callable] = {
    "se": _se_columns,
    "split": lambda n, rng: _hw_cin_columns(n, rng, even=True),
    "channelshuffle": lambda n, rng: _hw_cin_columns(n, rng, even=True),
    "global-avgpool": _global_avgpool_columns,
}


# ---------------------------------------------------------------- cost envelope
# Cost of configs (arrays of columns) and of zoo layers (prior columns), per family:
# multiply-accumulates for conv / dwconv / fc, tensor volume for everything else.


def _conv_cost(c):
    return (c["HW"] / c["STRIDES"]) ** 2 * c["CIN"] * c["COUT"] * c["KERNEL_SIZE"] ** 2


def _dwconv_cost(c):
    return (c["HW"] / c["STRIDES"]) ** 2 * c["CIN"] * c["KERNEL_SIZE"] ** 2


def _volume(c):
    return c["HW"].astype(np.float64) ** 2 * c["CIN"]


def _concat_volume(c):
    return c["HW"].astype(np.float64) ** 2 * sum(c[f"CIN{i}"] for i in range(1, 5))


def _fc_cost(c):
    return c["CIN"].astype(np.float64) * c["COUT"]


def _zoo_conv():
    p = load_prior("conv")
    return (p["input_h"] / p["stride"]) ** 2 * p["cin"] * p["cout"] * p["ks"] ** 2 / p["groups"]


def _zoo_dwconv():
    p = load_prior("dwconv")
    return (p["input_h"] / p["stride"]) ** 2 * p["cin"] * p["ks"] ** 2


def _zoo_volume(family, channels="cin"):
    def volume():
        p = load_prior(family)
        return p["input_h"].astype(np.float64) ** 2 * p[channels]

    return volume


def _zoo_fc():
    p = load_prior("fc")
    return p["cin"].astype(np.float64) * p["cout"]


# family or kernel type -> (cost of sampled configs, costs of the zoo's layers)
_COSTS = {
    "conv": (_conv_cost, _zoo_conv),
    "dwconv": (_dwconv_cost, _zoo_dwconv),
    "pool": (_volume, _zoo_volume("pooling")),
    "fc": (_fc_cost, _zoo_fc),
    "concat": (_concat_volume, _zoo_volume("concat", "cin_total")),
    "add": (_volume, _zoo_volume("conv")),
    "hw_cin": (_volume, _zoo_volume("conv")),
    "se": (_volume, _zoo_volume("se")),
}


def _cost_pair(kernel_type: str):
    spec = _spec(kernel_type)
    if spec is None:
        raise UnknownKernelError(f"no kernel spec for kernel type {kernel_type!r}")
    return _COSTS.get(kernel_type) or _COSTS[spec.family]


def zoo_cost_limit(kernel_type: str) -> float:
    """The costliest zoo layer of a kernel's family: sampled configs stay at or below it.

    Returns:
        MACs (conv, dwconv, fc) or tensor volume H*W*C (other kernels).

    Raises:
        UnknownKernelError: not a builtin kernel type.
    """
    return float(_cost_pair(kernel_type)[1]().max())


# ---------------------------------------------------------------- public API


def _spec(kernel_type: str):
    from nn_farm.predictor.kernel_specs import KERNEL_SPECS

    return KERNEL_SPECS.get(kernel_type)


def _dedupe(configs: Iterable[Mapping], keys, seen: set, out: list, limit: int) -> None:
    for config in configs:
        if len(out) >= limit:
            return
        row = tuple(int(config[k]) for k in keys)
        if row not in seen:
            seen.add(row)
            out.append(dict(zip(keys, row)))


def sample_kernel_configs(kernel_type: str, n: int, seed: int | None = None) -> list[dict]:
    """Sample up to ``n`` unique configs of one kernel type from the model-zoo priors.

    Fewer than ``n`` come back only when the kernel's config space is smaller
    (e.g. a customized sampler that cannot produce more).

    Args:
        kernel_type: a kernel type of :mod:`nn_farm.predictor.kernel_specs`, or a
            registered customized kernel.
        n: how many configs.
        seed: random seed; the same seed gives the same configs.

    Returns:
        Configs keyed by the kernel spec's ``config_keys``, ints, no two equal.

    Raises:
        UnknownKernelError: neither a builtin nor a registered kernel type.
        ValueError: ``n`` is negative.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    spec = _spec(kernel_type)
    if spec is None:
        return _custom_prior(kernel_type, n, rng)
    sampler = _TYPE_SAMPLERS.get(kernel_type) or _FAMILY_SAMPLERS[spec.family]
    cost, _ = _cost_pair(kernel_type)
    limit = zoo_cost_limit(kernel_type)
    keys = spec.config_keys
    seen: set = set()
    out: list[dict] = []
    for _ in range(_MAX_ROUNDS):
        if len(out) >= n:
            break
        # Draw a little more than missing, so duplicates rarely cost a whole round.
        want = max(16, int(1.5 * (n - len(out))))
        columns = sampler(want, rng)
        rows = np.column_stack([columns[k] for k in keys])[cost(columns) <= limit]
        _dedupe((dict(zip(keys, row)) for row in rows), keys, seen, out, n)
    return out


def finegrained_configs(kernel_type: str, around_configs: Iterable[Mapping], n: int,
                        seed: int | None = None) -> list[dict]:
    """Configs near each given one: channels redrawn, everything else kept.

    For each config in ``around_configs`` (typically those predicted worse than
    ERROR_THRESHOLD), up to ``n`` new configs draw every channel key (CIN, COUT,
    CIN1..CIN4 that are non-zero) uniformly from
    ``[ceil(0.4 C), floor(1.2 C)]`` independently, keeping HW, kernel size and
    strides. Results are unique, and exclude the given configs themselves.

    Args:
        kernel_type: as for :func:`sample_kernel_configs`.
        around_configs: configs keyed by the kernel's config keys.
        n: new configs per given config (FINEGRAINED_SAMPLE_NUM).
        seed: random seed.

    Returns:
        The new configs, grouped by the config they surround.

    Raises:
        UnknownKernelError: unknown kernel type.
        ValueError: a config lacks a key of the kernel, or ``n`` is negative.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    around = [dict(c) for c in around_configs]
    rng = np.random.default_rng(seed)
    spec = _spec(kernel_type)
    if spec is None:
        return _custom_finegrained(kernel_type, around, n, rng)
    keys = spec.config_keys
    even = kernel_type in _EVEN_CHANNEL_KERNELS
    seen: set = set()
    for config in around:
        missing = [k for k in keys if k not in config]
        if missing:
            raise ValueError(f"{kernel_type}: config {config} lacks {', '.join(missing)}")
        seen.add(tuple(int(config[k]) for k in keys))
    low, high = FINEGRAINED_RANGE
    out: list[dict] = []
    for config in around:
        channel_keys = [k for k in keys if k in _CHANNEL_KEYS and int(config[k]) > 0]
        step = 2 if even else 1
        ranges = {}
        for key in channel_keys:
            c = int(config[key])
            # Integer range of channels / step inside [low * c, high * c], never empty.
            lo = max(1, int(np.ceil(low * c / step)))
            hi = max(lo, int(np.floor(high * c / step)))
            ranges[key] = (lo, hi)
        # The neighbourhood may hold fewer than n configs besides the given one.
        space = int(np.prod([hi - lo + 1 for lo, hi in ranges.values()])) if ranges else 1
        target = len(out) + min(n, space - 1)
        for _ in range(_MAX_ROUNDS):
            if len(out) >= target:
                break
            want = max(8, 2 * (target - len(out)))
            draws = {k: step * rng.integers(lo, hi + 1, size=want)
                     for k, (lo, hi) in ranges.items()}
            candidates = ({**config, **{k: int(v[i]) for k, v in draws.items()}}
                          for i in range(want))
            _dedupe(candidates, keys, seen, out, target)
    return out


# ---------------------------------------------------------------- customized kernels


def _custom_sampler(kernel_type: str):
    from nn_farm.builder import registry

    if registry.get_meta("kernel", kernel_type) is None:
        raise UnknownKernelError(
            f"no kernel type {kernel_type!r}: neither in the kernel specs nor registered "
            f"(nn-farm register --kernel meta.yaml)")
    return registry.load_class("kernel", kernel_type, "sampler")()


def _unique_dicts(configs: Iterable[Mapping], exclude=()) -> list[dict]:
    seen = {tuple(sorted(dict(c).items())) for c in exclude}
    out = []
    for config in configs:
        key = tuple(sorted(dict(config).items()))
        if key not in seen:
            seen.add(key)
            out.append(dict(config))
    return out


def _custom_prior(kernel_type, n, rng):
    sampler = _custom_sampler(kernel_type)
    # A customized sampler uses its own randomness; seed the global generators it
    # most likely uses so a seed still reproduces.
    import random

    random.seed(int(rng.integers(2**31)))
    np.random.seed(int(rng.integers(2**31)))
    return _unique_dicts(sampler.prior_config_sampling(n))[:n]


def _custom_finegrained(kernel_type, around, n, rng):
    sampler = _custom_sampler(kernel_type)
    import random

    random.seed(int(rng.integers(2**31)))
    np.random.seed(int(rng.integers(2**31)))
    return _unique_dicts(sampler.finegrained_config_sampling(around, n), exclude=around)
