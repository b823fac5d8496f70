"""The shipped model-zoo priors and the script that extracts them."""

from __future__ import annotations

import csv
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from nn_farm.builder.priors import PRIOR_DIR, PRIOR_FAMILIES, load_prior, prior_path
from nn_farm.errors import BuilderError

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "extract_priors.py"

sys.path.insert(0, str(SCRIPT.parent))
import extract_priors  # noqa: E402


def _extract(framework, *models):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--framework", framework,
                           "--models", *models], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def _shipped(family, model):
    with open(prior_path(family), newline="") as fp:
        return [r for r in csv.DictReader(fp) if r["model"] == model]


def _as_text(rows, family):
    columns = extract_priors.COLUMNS[family]
    return sorted(tuple(str(r[c]) for c in columns) for r in rows if r["family"] == family)


def test_shipped_priors_cover_both_zoos():
    assert {p.stem for p in PRIOR_DIR.glob("*.csv")} == set(PRIOR_FAMILIES)
    conv_models = set(load_prior("conv")["model"])
    assert set(extract_priors.TORCH_MODELS) <= conv_models
    assert set(extract_priors.KERAS_MODELS) <= conv_models
    for family in PRIOR_FAMILIES:
        columns = load_prior(family)
        with open(prior_path(family)) as fp:
            assert fp.readline().strip().split(",") == list(extract_priors.COLUMNS[family])
        assert len(columns["model"]) > 20, family
        for name, values in columns.items():
            if values.dtype != object:
                assert values.min() >= 0, (family, name)
    dw = load_prior("dwconv")
    assert np.all(dw["groups"] == dw["cin"])  # depthwise rows only
    conv = load_prior("conv")
    assert np.all(conv["groups"] < np.maximum(conv["cin"], 2))
    assert set(load_prior("pooling")["type"]) == {"max", "avg", "global_avg"}
    concat = load_prior("concat")
    assert concat["n"].min() >= 2 and concat["n"].max() > 4  # densenet's wide concats kept


def test_load_prior_rejects_unknown_family():
    with pytest.raises(BuilderError, match="resnet_blocks"):
        load_prior("resnet_blocks")


@pytest.fixture(scope="module")
def torch_rows():
    """One child process extracts both models (a torch start-up costs seconds here)."""
    rows = _extract("torch", "mobilenet_v3_small", "googlenet")
    return {name: [r for r in rows if r["model"] == name]
            for name in ("mobilenet_v3_small", "googlenet")}


def test_torch_extraction_matches_hand_count_and_shipped_rows(torch_rows):
    rows = torch_rows["mobilenet_v3_small"]
    families = [r["family"] for r in rows]
    # mobilenet_v3_small: 11 inverted residual blocks (one depthwise conv each),
    # 9 of them with squeeze-excitation, one global pool, classifier 576->1024->1000.
    assert families.count("dwconv") == 11
    assert families.count("se") == 9
    assert [(r["cin"], r["cout"]) for r in rows if r["family"] == "fc"] == [(576, 1024), (1024, 1000)]
    pools = [r for r in rows if r["family"] == "pooling"]
    assert [(p["type"], p["input_h"], p["cin"]) for p in pools] == [("global_avg", 7, 576)]
    # SE internals (1x1 convs on a 1x1 map) are not conv rows.
    assert all(r["input_h"] > 1 for r in rows if r["family"] == "conv")
    for family in ("conv", "dwconv", "se", "fc"):
        shipped = [tuple(r.values())[0:] for r in _shipped(family, "mobilenet_v3_small")]
        assert _as_text(rows, family) == sorted(shipped), family


def test_torch_concat_fan_in_is_recorded(torch_rows):
    rows = torch_rows["googlenet"]
    concats = [r for r in rows if r["family"] == "concat"]
    # googlenet: 9 inception blocks, each concatenating 4 branches.
    assert len(concats) == 9 and all(r["n"] == 4 for r in concats)
    first = concats[0]
    assert (first["input_h"], first["cin1"], first["cin2"], first["cin3"], first["cin4"]) == \
        (28, 64, 128, 32, 32)
    assert first["cin_total"] == 256


def test_keras_extraction_agrees_with_torchvision_on_mobilenet_v2():
    # Run in its own process: tensorflow after triton segfaults (nn_farm/_compat.py).
    rows = _extract("keras", "MobileNetV2")
    keras_dw = [(r["input_h"], r["cin"], r["ks"], r["stride"]) for r in rows
                if r["family"] == "dwconv"]
    torch_dw = [(int(r["input_h"]), int(r["cin"]), int(r["ks"]), int(r["stride"]))
                for r in _shipped("dwconv", "mobilenet_v2")]
    # Same architecture: the 17 depthwise convs agree, strided ones included
    # (Keras pads explicitly; the extractor reads the map before the padding).
    assert len(keras_dw) == 17 and keras_dw == torch_dw
    assert [(r["cin"], r["cout"]) for r in rows if r["family"] == "fc"] == [(1280, 1000)]
    for family in ("conv", "dwconv", "pooling", "fc"):
        shipped = [tuple(r.values()) for r in _shipped(family, "MobileNetV2")]
        assert _as_text(rows, family) == sorted(shipped), family


def test_public_names_exist():
    import nn_farm.builder.config as config
    import nn_farm.builder.priors as priors
    import nn_farm.builder.registry as registry
    import nn_farm.builder.sampling as sampling
    import nn_farm.builder.workspace as workspace

    for module in (config, priors, registry, sampling, workspace):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
