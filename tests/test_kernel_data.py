"""Kernel-data files: nn-Meter's formats, six-letter ids, incremental writes, loading, CSV."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from nn_farm.builder.kernel_data import (Latency, configs_path, export_csv, load_kernel_data,
                                         new_ids, profiled_path, read_json, write_configs,
                                         write_profiled)
from nn_farm.errors import ConfigError
from nn_farm.predictor.kernel_specs import feature_names, features

DATASET = Path(__file__).parent / "data" / "kernels_host_cpu_onnxruntime"
ID_RE = re.compile(r"^[A-Z0-9]{6}$")

CONV = {"HW": 14, "CIN": 32, "COUT": 64, "KERNEL_SIZE": 3, "STRIDES": 1}


def test_ids_are_six_uppercase_letters_or_digits_unique_and_avoid_taken():
    import random

    taken = new_ids(50, rng=random.Random(1))
    ids = new_ids(500, taken=taken, rng=random.Random(1))  # same stream: must skip the taken
    assert len(set(ids)) == 500
    assert not set(ids) & set(taken)
    assert all(ID_RE.match(i) for i in ids + taken)


def test_files_have_nnmeter_names_and_layout(tmp_path):
    write_configs(tmp_path, "conv-bn-relu", "prior",
                  {"ABC123": {"model": "k/a.tflite", "shapes": [[14, 14, 32]], "config": CONV}})
    write_profiled(tmp_path, "conv-bn-relu", {"ABC123": {"latency": (1.25, 0.05)}})
    results = tmp_path / "predictor_build" / "results"
    assert configs_path(tmp_path, "conv-bn-relu", "prior") == results / "conv-bn-relu_prior.json"
    assert profiled_path(tmp_path, "conv-bn-relu") == results / "profiled_conv-bn-relu.json"
    configs = json.loads((results / "conv-bn-relu_prior.json").read_text())
    profiled = json.loads((results / "profiled_conv-bn-relu.json").read_text())
    assert configs == {"conv-bn-relu": {"ABC123": {"model": "k/a.tflite", "shapes": [[14, 14, 32]],
                                                   "config": CONV}}}
    # nn-Meter's Latency string, which its read_profiled_results splits on "+-".
    assert profiled == {"conv-bn-relu": {"ABC123": {"latency": "1.25 +- 0.05"}}}
    avg, std = profiled["conv-bn-relu"]["ABC123"]["latency"].split("+-")
    assert (float(avg), float(std)) == (1.25, 0.05)


def test_writes_merge_into_existing_files_like_nnmeter_merge_info(tmp_path):
    write_configs(tmp_path, "relu", "prior", [{"id": "AAAAAA", "config": {"HW": 7, "CIN": 8}}])
    write_configs(tmp_path, "relu", "prior", [{"id": "BBBBBB", "config": {"HW": 14, "CIN": 8}}])
    write_profiled(tmp_path, "relu", {"AAAAAA": 0.5})
    write_profiled(tmp_path, "relu", {"BBBBBB": {"latency": "0.75 +- 0.01", "kept_runs": 40}})
    configs = read_json(configs_path(tmp_path, "relu", "prior"))["relu"]
    profiled = read_json(profiled_path(tmp_path, "relu"))["relu"]
    assert sorted(configs) == ["AAAAAA", "BBBBBB"]
    assert profiled["AAAAAA"] == {"latency": "0.5 +- 0.0"}
    assert profiled["BBBBBB"] == {"latency": "0.75 +- 0.01", "kept_runs": 40}


def test_round_trip_through_every_kernel_data_form(tmp_path):
    prior = {f"P{i:05d}": {"model": f"p{i}", "config": {**CONV, "CIN": 8 * (i + 1)}}
             for i in range(4)}
    fine = {"F00000": {"model": "f0", "config": {**CONV, "CIN": 200}}}
    write_configs(tmp_path, "conv-bn-relu", "prior", prior)
    write_configs(tmp_path, "conv-bn-relu", "finegrained1", fine)
    lat = {rid: (float(i + 1), 0.1) for i, rid in enumerate([*prior, *fine])}
    write_profiled(tmp_path, "conv-bn-relu", lat)
    cp = str(configs_path(tmp_path, "conv-bn-relu", "prior"))
    cf = str(configs_path(tmp_path, "conv-bn-relu", "finegrained1"))
    pp = str(profiled_path(tmp_path, "conv-bn-relu"))

    ids, configs, ms = load_kernel_data((cp, pp))
    assert ids == sorted(prior)
    assert configs == [prior[i]["config"] for i in ids]
    assert ms == [lat[i][0] for i in ids]

    # Several rounds: lists of files on the configs side.
    ids2, _, _ = load_kernel_data(([cp, cf], [pp]), "conv-bn-relu")
    assert ids2 == sorted([*prior, *fine])

    # nn-Meter's merged dict (configs and Latency objects in one record), with and
    # without the kernel-type level, and as a JSON file with latency strings.
    merged = {"conv-bn-relu": {rid: {**rec, "latency": Latency(*lat[rid])}
                               for rid, rec in prior.items()}}
    assert load_kernel_data(merged) == (ids, configs, ms)
    assert load_kernel_data(merged["conv-bn-relu"], "conv-bn-relu") == (ids, configs, ms)
    merged_file = tmp_path / "merged.json"
    merged_file.write_text(json.dumps({"conv-bn-relu": {rid: {**rec, "latency": str(rec["latency"])}
                                                        for rid, rec in merged["conv-bn-relu"].items()}}))
    assert load_kernel_data(str(merged_file)) == (ids, configs, ms)


def test_loading_nnmeter_files_as_nnmeter_writes_them(tmp_path):
    # The shape of nn-Meter's own results files (KernelGenerator and profile_models),
    # with a failed measurement (no latency), a zero and a kernel without a config.
    configs = {"dwconv-bn-relu": {
        "K7Q2ZP": {"model": "/ws/predictor_build/kernels/dwconv-bn-relu_prior_K7Q2ZP",
                   "shapes": [[14, 14, 98]], "config": {"HW": 14, "CIN": 98, "KERNEL_SIZE": 3,
                                                        "STRIDES": 1}},
        "0ZZ9AA": {"model": "m2", "shapes": [[7, 7, 32]],
                   "config": {"HW": 7, "CIN": 32, "KERNEL_SIZE": 5, "STRIDES": 2}},
        "NOLAT1": {"model": "m3", "config": {"HW": 7, "CIN": 8, "KERNEL_SIZE": 3, "STRIDES": 1}},
        "ZERO00": {"model": "m4", "config": {"HW": 7, "CIN": 9, "KERNEL_SIZE": 3, "STRIDES": 1}},
    }}
    profiled = {"dwconv-bn-relu": {"K7Q2ZP": {"latency": "42.001 +- 1.0"},
                                   "0ZZ9AA": {"latency": "0.5 +- 0.02"},
                                   "ZERO00": {"latency": "0.0 +- 0.0"},
                                   "NOCFG1": {"latency": "1.0 +- 0.0"}}}
    (tmp_path / "c.json").write_text(json.dumps(configs, indent=4))
    (tmp_path / "p.json").write_text(json.dumps(profiled, indent=4))
    ids, cfgs, ms = load_kernel_data((str(tmp_path / "c.json"), str(tmp_path / "p.json")))
    assert ids == ["0ZZ9AA", "K7Q2ZP"]
    assert ms == [0.5, 42.001]
    assert cfgs[1] == configs["dwconv-bn-relu"]["K7Q2ZP"]["config"]


def test_export_csv_holds_the_predictor_features(tmp_path):
    write_configs(tmp_path, "conv-bn-relu", "prior",
                  {"AAAAAA": {"config": CONV}, "BBBBBB": {"config": {**CONV, "STRIDES": 2}}})
    write_profiled(tmp_path, "conv-bn-relu", {"AAAAAA": 1.5, "BBBBBB": 0.5})
    data = (configs_path(tmp_path, "conv-bn-relu", "prior"), profiled_path(tmp_path, "conv-bn-relu"))
    out = export_csv("conv-bn-relu", data, tmp_path / "out" / "Data_conv-bn-relu_prior.csv")
    rows = list(csv.DictReader(open(out)))
    names = feature_names("conv-bn-relu")
    assert list(rows[0]) == ["id", "HW", "CIN", "COUT", "KERNEL_SIZE", "STRIDES",
                             *(f"f_{n}" for n in names), "latency_ms"]
    X = features("conv-bn-relu", [CONV, {**CONV, "STRIDES": 2}])
    for row, x, ms in zip(rows, X, [1.5, 0.5]):
        assert np.allclose([float(row[f"f_{n}"]) for n in names], x, rtol=0, atol=0)
        assert float(row["latency_ms"]) == ms


def test_errors_name_the_file_or_the_kernel(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json"):
        load_kernel_data((str(bad), str(bad)))
    two = {"relu": {"A": {"config": {"HW": 1, "CIN": 1}, "latency": 1.0}},
           "bn": {"B": {"config": {"HW": 1, "CIN": 1}, "latency": 1.0}}}
    with pytest.raises(ConfigError, match="several kernel types"):
        load_kernel_data(two)
    with pytest.raises(ConfigError, match="'add'"):
        load_kernel_data(two, "add")
    with pytest.raises(ConfigError, match="config"):
        write_configs(tmp_path, "relu", "prior", {"AAAAAA": {"model": "x"}})
    with pytest.raises(ValueError, match="latency string"):
        Latency("fast")


def test_committed_dataset_is_real_measured_nnmeter_data():
    host = json.loads((DATASET / "host.json").read_text())
    assert host["runtime"] == "onnxruntime"
    total = 0
    for kernel_type in ("conv-bn-relu", "dwconv-bn-relu", "relu"):
        ids, configs, ms = load_kernel_data(
            (str(DATASET / f"{kernel_type}_prior.json"), str(DATASET / f"profiled_{kernel_type}.json")))
        assert len(ids) >= 30 and all(ID_RE.match(i) for i in ids)
        assert all(m > 0 for m in ms)
        features(kernel_type, configs)  # every config has the spec's keys
        total += len(ids)
    assert total >= 140
