"""Kernel config samplers: follow the prior, valid values, unique, reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from nn_farm.builder import sampling
from nn_farm.builder.priors import load_prior
from nn_farm.builder.sampling import (
    FINEGRAINED_RANGE,
    FREQUENT_SETTINGS,
    SEARCH_SPACE_KERNEL_SIZES,
    SEARCH_SPACE_RESOLUTIONS,
    SEARCH_SPACE_SHARE,
    VALID_HWS,
    VALID_KERNEL_SIZES,
    VALID_POOL_KERNEL_SIZES,
    VALID_POOL_STRIDES,
    VALID_STRIDES,
    finegrained_configs,
    inverse_cdf_sample,
    sample_kernel_configs,
    snap,
    zoo_cost_limit,
)
from nn_farm.errors import UnknownKernelError
from nn_farm.predictor.kernel_specs import KERNEL_SPECS, KERNEL_TYPES

def _rows(configs, keys):
    return [tuple(c[k] for k in keys) for c in configs]


def _cdf_gap_at_bin_edges(samples, prior, bins=40):
    """Largest |F_samples - F_prior| at the sampler's log-histogram bin edges.

    Inverse-CDF sampling from a histogram reproduces the prior's CDF exactly at the
    bin edges (within each bin it spreads mass uniformly), so the gap there is only
    sampling noise: 3 sigma of a CDF estimate from 2,000 draws is 0.034.
    """
    lp = np.log(prior[prior > 0])
    width = (lp.max() - lp.min()) / (bins - 1)
    edges = lp.min() - width / 2 + width * np.arange(bins + 1)
    ls = np.log(samples)
    return max(abs(np.mean(ls <= e) - np.mean(lp <= e)) for e in edges)


@pytest.mark.parametrize("kernel_type", KERNEL_TYPES)
def test_every_kernel_type_samples_valid_unique_configs(kernel_type):
    spec = KERNEL_SPECS[kernel_type]
    configs = sample_kernel_configs(kernel_type, 300, seed=11)
    assert len(configs) == 300
    assert all(set(c) == set(spec.config_keys) for c in configs)
    assert all(isinstance(v, int) for c in configs for v in c.values())
    assert len(set(_rows(configs, spec.config_keys))) == 300

    column = {k: np.array([c[k] for c in configs]) for k in spec.config_keys}
    family = spec.family
    if family in ("conv", "dwconv"):
        assert set(column["KERNEL_SIZE"]) <= set(VALID_KERNEL_SIZES)
        assert set(column["STRIDES"]) <= set(VALID_STRIDES)
    if family == "conv":
        assert set(column["HW"]) <= set(VALID_HWS[family])
    if family == "dwconv":
        # Off the valid maps only where a search-space row scaled a zoo map (<= 112).
        off = column["HW"][~np.isin(column["HW"], VALID_HWS[family])]
        assert off.size and off.min() >= 1 and off.max() <= 112
    if family == "pool":
        assert set(column["KERNEL_SIZE"]) <= set(VALID_POOL_KERNEL_SIZES)
        assert set(column["POOL_STRIDES"]) <= set(VALID_POOL_STRIDES)
    if family == "concat":
        ns = column["NS"]
        assert set(ns) <= {2, 3, 4}
        for i in range(1, 5):
            # Inputs up to NS have channels, the rest are 0.
            assert np.all((column[f"CIN{i}"] > 0) == (ns >= i))
    for key in ("CIN", "COUT"):
        if key in column:
            assert column[key].min() >= 1
    if kernel_type in ("split", "channelshuffle", "se"):
        assert np.all(column["CIN"] % 2 == 0)


def test_conv_channels_follow_the_prior():
    prior = load_prior("conv")
    configs = sample_kernel_configs("conv-bn-relu", 2000, seed=0)
    for key, col in (("CIN", "cin"), ("COUT", "cout")):
        samples = np.array([c[key] for c in configs])
        assert _cdf_gap_at_bin_edges(samples, prior[col]) < 0.05
        assert prior[col].min() <= samples.min() and samples.max() <= prior[col].max()


@pytest.mark.parametrize("family, column, where", [
    ("conv", "cin", None), ("conv", "cout", None), ("dwconv", "cin", None),
    ("fc", "cin", None), ("fc", "cout", None), ("se", "cin", None),
    ("pooling", "cin", "local"), ("concat", "cin1", None),
])
def test_each_prior_column_is_reproduced_by_inverse_cdf(family, column, where):
    # The method itself, before deduplication: with few config keys (se: HW, CIN)
    # 2,000 *unique* configs must reach into rare channel counts, which flattens
    # the distribution; that is the price of never measuring a config twice.
    prior = load_prior(family)
    values = prior[column]
    if where == "local":
        values = values[prior["type"] != "global_avg"]
    values = values[values > 0]
    rng = np.random.default_rng(0)
    samples = np.rint(inverse_cdf_sample(values, 2000, rng, log=True))
    assert _cdf_gap_at_bin_edges(samples, values) < 0.05


def test_dwconv_channels_follow_the_prior_at_the_default_budget(monkeypatch):
    # Outside the search-space share (whose rows take a zoo layer's channels, every
    # stage alike, so small channel counts weigh more there).
    monkeypatch.setattr(sampling, "SEARCH_SPACE_SHARE", 0.0)
    prior = load_prior("dwconv")["cin"]
    samples = np.array([c["CIN"] for c in sample_kernel_configs("dwconv-bn-relu", 200, seed=1)])
    # 3 sigma of a CDF estimate from 200 draws is 0.11.
    assert _cdf_gap_at_bin_edges(samples, prior) < 0.11


def test_kernel_size_frequencies_follow_the_prior_outside_the_frequent_and_search_space_shares():
    # dwconv: outside both shares draws follow the prior, where ks 3 dominates; inside
    # them, 7x7 does (what NAS networks spend their dwconv time on).
    share, weights = FREQUENT_SETTINGS["dwconv"][1]["KERNEL_SIZE"]
    space = SEARCH_SPACE_KERNEL_SIZES
    prior_ks = load_prior("dwconv")["ks"]
    ks = np.array([c["KERNEL_SIZE"] for c in sample_kernel_configs("dwconv-bn-relu", 2000, seed=4)])
    for size in (3, 7):
        outside = (1 - share) * np.mean(prior_ks == size) + share * weights.get(size, 0) / sum(weights.values())
        inside = space.get(size, 0) / sum(space.values())
        expected = (1 - SEARCH_SPACE_SHARE) * outside + SEARCH_SPACE_SHARE * inside
        assert abs(np.mean(ks == size) - expected) < 0.05, (size, np.mean(ks == size), expected)
    assert np.mean(ks == 7) > 0.25


def test_dwconv_draws_zoo_layers_at_search_space_resolutions():
    # NAS spaces with elastic resolution put dwconvs on maps like 10, 12, 24, 48, 96, and
    # 7x7s on large maps with few channels; snapped, independent columns give neither.
    prior = load_prior("dwconv")
    configs = sample_kernel_configs("dwconv-bn-relu", 2000, seed=5)
    hw, cin, ks = (np.array([c[k] for c in configs]) for k in ("HW", "CIN", "KERNEL_SIZE"))
    off = ~np.isin(hw, VALID_HWS["dwconv"])
    assert np.mean(off) > 0.2
    # Those rows keep a zoo layer's channels, on a map scaled down from its zoo map.
    assert set(cin[off]) <= set(prior["cin"])
    lowest = min(SEARCH_SPACE_RESOLUTIONS) / 224
    assert np.all(hw[off] >= np.floor(lowest * prior["input_h"].min()))
    assert np.all(hw[off] <= prior["input_h"].max())
    # Every zoo stage is drawn alike, so large maps get their share of 7x7s.
    assert np.mean((ks == 7) & (hw >= 40)) > 0.06


def test_sampling_is_reproducible_and_seed_dependent():
    a = sample_kernel_configs("conv-bn-relu", 50, seed=7)
    assert a == sample_kernel_configs("conv-bn-relu", 50, seed=7)
    assert a != sample_kernel_configs("conv-bn-relu", 50, seed=8)


def test_unknown_kernel_type():
    with pytest.raises(UnknownKernelError, match="no-such-kernel"):
        sample_kernel_configs("no-such-kernel", 5, seed=0)


def test_inverse_cdf_matches_histogram_and_snap():
    rng = np.random.default_rng(0)
    data = np.array([1] * 700 + [3] * 200 + [7] * 100)
    draws = snap(inverse_cdf_sample(data, 20000, rng), (1, 3, 5, 7))
    freq = {v: np.mean(draws == v) for v in (1, 3, 5, 7)}
    assert abs(freq[1] - 0.7) < 0.02 and abs(freq[3] - 0.2) < 0.02
    assert abs(freq[7] - 0.1) < 0.02 and freq[5] == 0
    assert list(snap([0, 2.4, 2.6, 100], (1, 3, 5, 7))) == [1, 3, 3, 7]


@pytest.mark.parametrize("kernel_type", ["conv-bn-relu", "dwconv-bn", "fc", "concat", "se",
                                         "maxpool", "add"])
def test_finegrained_stays_in_range_and_keeps_other_keys(kernel_type):
    spec = KERNEL_SPECS[kernel_type]
    around = sample_kernel_configs(kernel_type, 5, seed=3)
    new = finegrained_configs(kernel_type, around, 10, seed=5)
    low, high = FINEGRAINED_RANGE
    given = set(_rows(around, spec.config_keys))
    rows = _rows(new, spec.config_keys)
    assert len(set(rows)) == len(rows)          # unique
    assert not given & set(rows)                # never a config already given
    assert len(new) >= 5 * 5                    # room for at least half per config
    channel_keys = [k for k in spec.config_keys if k.startswith("CIN") or k == "COUT"]
    for config in new:
        # Which given config it surrounds: the one with the same non-channel values.
        fixed = {k: v for k, v in config.items() if k not in channel_keys}
        parents = [a for a in around if all(a[k] == v for k, v in fixed.items())]
        assert parents, config
        ok = False
        for parent in parents:
            ok |= all(
                (parent[k] == 0 and config[k] == 0)
                or (np.ceil(low * parent[k]) <= config[k] <= np.floor(high * parent[k]) + 1)
                for k in channel_keys
            )
        assert ok, (config, parents)


def test_finegrained_small_neighbourhood_returns_what_exists():
    # CIN 5: [ceil(2.0), floor(6.0)] = 2..6, minus the given 5 -> 4 configs at most.
    new = finegrained_configs("relu", [{"HW": 14, "CIN": 5}], 20, seed=0)
    assert sorted(c["CIN"] for c in new) == [2, 3, 4, 6]
    assert all(c["HW"] == 14 for c in new)


def test_finegrained_rejects_configs_without_the_kernel_keys():
    with pytest.raises(ValueError, match="COUT"):
        finegrained_configs("conv-bn-relu", [{"HW": 7, "CIN": 8}], 3, seed=0)


def test_finegrained_even_channels_stay_even_and_in_range():
    new = finegrained_configs("channelshuffle", [{"HW": 28, "CIN": 10}], 20, seed=0)
    # Even counts in [4, 12] other than 10.
    assert sorted(c["CIN"] for c in new) == [4, 6, 8, 12]


@pytest.mark.parametrize("kernel_type", ["conv-bn-relu", "dwconv-bn-relu", "fc", "concat",
                                         "maxpool", "relu", "se"])
def test_sampled_configs_stay_within_the_zoo_cost_envelope(kernel_type):
    # nn-Meter's independent columns make 224x224x579 -> 402 7x7 convs (570 GMAC);
    # nothing sampled may cost more than the costliest layer of a real model.
    configs = sample_kernel_configs(kernel_type, 1000, seed=9)
    c = {k: np.array([x[k] for x in configs], dtype=np.float64) for k in configs[0]}
    if kernel_type.startswith("conv"):
        p = load_prior("conv")
        cost = (c["HW"] / c["STRIDES"]) ** 2 * c["CIN"] * c["COUT"] * c["KERNEL_SIZE"] ** 2
        zoo = (p["input_h"] / p["stride"]) ** 2 * p["cin"] * p["cout"] * p["ks"] ** 2 / p["groups"]
    elif kernel_type.startswith("dwconv"):
        p = load_prior("dwconv")
        cost = (c["HW"] / c["STRIDES"]) ** 2 * c["CIN"] * c["KERNEL_SIZE"] ** 2
        zoo = (p["input_h"] / p["stride"]) ** 2 * p["cin"] * p["ks"] ** 2
    elif kernel_type == "fc":
        p = load_prior("fc")
        cost, zoo = c["CIN"] * c["COUT"], p["cin"] * p["cout"]
    elif kernel_type == "concat":
        p = load_prior("concat")
        cost = c["HW"] ** 2 * (c["CIN1"] + c["CIN2"] + c["CIN3"] + c["CIN4"])
        zoo = p["input_h"] ** 2 * p["cin_total"]
    else:
        p = load_prior({"maxpool": "pooling", "se": "se"}.get(kernel_type, "conv"))
        cost, zoo = c["HW"] ** 2 * c["CIN"], p["input_h"].astype(float) ** 2 * p["cin"]
    assert cost.max() <= zoo.max()
    assert zoo_cost_limit(kernel_type) == pytest.approx(zoo.max())
