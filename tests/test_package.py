"""Predictor packages, the local registry and nn-Meter's predictor folder."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.ensemble import RandomForestRegressor

from nn_farm.errors import ConfigError, PredictorError, PredictorNotFound, UnknownKernelError
from nn_farm.predictor import kernel_specs as ks
from nn_farm.predictor.nnmeter_compat import export_nnmeter, import_nnmeter
from nn_farm.predictor.package import load_package, save_package
from nn_farm.predictor.registry import (
    list_predictors,
    load_latency_predictor,
    register_predictor,
    unregister_predictor,
)

RULES = {"BF_conv_bn": {"obey": True}, "BF_conv_relu": {"obey": True}}
KERNELS = ["conv-bn-relu", "dwconv-bn-relu", "fc", "add", "global-avgpool"]


def fitted(kernel_type, seed):
    rng = np.random.default_rng(seed)
    spec = ks.get_spec(kernel_type)
    configs = rng.integers(1, 64, (60, len(spec.config_keys)))
    X = ks.features(kernel_type, configs)
    y = 0.05 + X.sum(axis=1) / 100
    return RandomForestRegressor(n_estimators=2, max_depth=4, random_state=seed).fit(X, y)


def make_package(directory, name="tiny", version="1.0", seed=0, **kw):
    models = {k: fitted(k, seed + i) for i, k in enumerate(KERNELS)}
    return save_package(directory, name, version, models, RULES, device="test-cpu",
                        runtime="onnxruntime", runtime_version="1.31.1",
                        metrics={"fc": {"rmse_ms": 0.5}}, **kw)


UNITS = [
    {"op": "conv-bn-relu", "name": "c", "inputh": 56, "cin": 16, "cout": 32, "ks": [3, 3],
     "strides": [1, 1]},
    {"op": "dwconv-bn-relu", "name": "d", "inputh": 28, "cin": 32, "ks": [3, 3], "strides": [2, 2]},
    {"op": "add", "name": "a", "input_tensors": [[1, 28, 28, 32], [1, 28, 28, 32]]},
    {"op": "gap", "name": "g", "input_tensors": [[1, 7, 7, 32]], "inputh": 7, "cin": 32},
    {"op": "fc", "name": "f", "cin": 32, "cout": 10},
]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("NN_FARM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_save_then_load_keeps_manifest_models_and_rules(tmp_path):
    path = make_package(tmp_path / "pkg")
    manifest = json.loads((path / "manifest.json").read_text())
    for key in ("name", "version", "device", "runtime", "runtime_version", "created"):
        assert manifest[key], key
    assert set(manifest["kernels"]) == set(KERNELS)
    assert manifest["kernels"]["fc"]["metrics"] == {"rmse_ms": 0.5}
    assert manifest["kernels"]["fc"]["features"] == ["CIN", "COUT", "FLOPS", "PARAMS"]
    assert all(len(e["sha256"]) == 64 for e in manifest["kernels"].values())
    package = load_package(path)
    assert package.fusion_rules == RULES
    X = ks.features("fc", [dict(CIN=32, COUT=10)])
    original = fitted("fc", KERNELS.index("fc"))
    np.testing.assert_array_equal(package.models["fc"].predict(X), original.predict(X))


def test_tampered_kernel_file_is_refused_naming_it(tmp_path):
    path = make_package(tmp_path / "pkg")
    pkl = path / "kernels" / "fc.pkl"
    data = bytearray(pkl.read_bytes())
    data[-5] ^= 0xFF
    pkl.write_bytes(bytes(data))
    with pytest.raises(PredictorError, match=r"kernels/fc\.pkl fails its checksum"):
        load_package(path)


def test_tampered_fusion_rules_and_missing_files_are_refused(tmp_path):
    path = make_package(tmp_path / "pkg")
    (path / "fusion_rules.json").write_text(json.dumps({"BF_conv_add": {"obey": True}}))
    with pytest.raises(PredictorError, match="fusion_rules.json fails its checksum"):
        load_package(path)
    path = make_package(tmp_path / "pkg2")
    (path / "kernels" / "add.pkl").unlink()
    with pytest.raises(PredictorError, match=r"kernels/add\.pkl is missing"):
        load_package(path)
    with pytest.raises(PredictorNotFound, match="no manifest.json"):
        load_package(tmp_path)


def test_save_rejects_bad_models_and_existing_directories(tmp_path):
    with pytest.raises(UnknownKernelError, match="sigmoid"):
        save_package(tmp_path / "a", "x", "1", {"sigmoid": fitted("relu", 0)}, {}, "d", "r", "1")
    with pytest.raises(PredictorError, match="no predict"):
        save_package(tmp_path / "b", "x", "1", {"relu": object()}, {}, "d", "r", "1")
    make_package(tmp_path / "pkg")
    with pytest.raises(PredictorError, match="already exists"):
        make_package(tmp_path / "pkg")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_registry_lists_loads_latest_and_exact_versions(tmp_path, home):
    assert list_predictors() == []
    for version, seed in (("1.9", 0), ("1.10", 10), ("1.2", 20)):
        register_predictor(make_package(tmp_path / version, version=version, seed=seed))
    assert [e["version"] for e in list_predictors()] == ["1.2", "1.9", "1.10"]
    latest = load_latency_predictor("tiny")
    assert latest.version == "1.10"
    assert load_latency_predictor("tiny", "1.9").version == "1.9"
    assert load_latency_predictor("tiny", 1.2).version == "1.2"  # nn-Meter style float
    # the registry holds copies: the originals may go
    for version in ("1.9", "1.10", "1.2"):
        for f in sorted((tmp_path / version).rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
    assert load_latency_predictor("tiny").predict(UNITS, "kernels") > 0


def test_unknown_name_and_wrong_version_list_what_exists(tmp_path, home):
    register_predictor(make_package(tmp_path / "a", name="alpha", version="2.0"))
    with pytest.raises(PredictorNotFound, match=r"no predictor named 'beta'.*alpha \(2\.0\)"):
        load_latency_predictor("beta")
    with pytest.raises(PredictorNotFound, match=r"no version '3\.0'; available versions: 2\.0"):
        load_latency_predictor("alpha", "3.0")


def test_register_twice_needs_overwrite_and_unregister_removes(tmp_path, home):
    path = make_package(tmp_path / "a")
    register_predictor(path)
    with pytest.raises(PredictorError, match="registered already"):
        register_predictor(path)
    register_predictor(path, overwrite=True)
    register_predictor(make_package(tmp_path / "b", version="2.0"))
    assert unregister_predictor("tiny", "1.0") == ["1.0"]
    assert [e["version"] for e in list_predictors()] == ["2.0"]
    assert unregister_predictor("tiny") == ["2.0"]
    assert list_predictors() == []
    with pytest.raises(PredictorNotFound):
        unregister_predictor("tiny")


def test_register_refuses_a_tampered_package(tmp_path, home):
    path = make_package(tmp_path / "a")
    (path / "kernels" / "fc.pkl").write_bytes(b"not a pickle")
    with pytest.raises(PredictorError, match="fc.pkl fails its checksum"):
        register_predictor(path)
    assert list_predictors() == []


def test_nnmeter_folder_export_import_round_trip_predicts_the_same(tmp_path, home):
    original = load_latency_predictor(make_package(tmp_path / "pkg"))
    meta_path = export_nnmeter(original.package, tmp_path / "nnmeter")
    meta = yaml.safe_load(meta_path.read_text())
    assert meta["name"] == "tiny" and meta["version"] == 1.0
    assert meta["category"] == "test-cpu"
    assert sorted(meta["kernel_predictors"]) == sorted(KERNELS)
    assert Path(meta["package_location"]) == (tmp_path / "nnmeter").resolve()
    assert {p.name for p in (tmp_path / "nnmeter").glob("*.pkl")} == {f"{k}.pkl" for k in KERNELS}
    assert json.loads((tmp_path / "nnmeter" / "fusion_rules.json").read_text()) == RULES

    reimported = load_latency_predictor(import_nnmeter(meta_path, tmp_path / "back"))
    direct = load_latency_predictor(meta_path)
    register_predictor(meta_path)
    registered = load_latency_predictor("tiny", "1.0")
    expected = original.predict_detail(UNITS, "kernels")
    for other in (reimported, direct, registered):
        got = other.predict_detail(UNITS, "kernels")
        assert got["latency_ms"] == expected["latency_ms"]
        assert [k["ms"] for k in got["kernels"]] == [k["ms"] for k in expected["kernels"]]
    assert reimported.package.fusion_rules == RULES


def test_nnmeter_meta_errors_name_the_key_or_file(tmp_path):
    meta = tmp_path / "m.yaml"
    meta.write_text(yaml.safe_dump({"name": "x", "version": 1.0, "category": "cpu",
                                    "package_location": str(tmp_path)}))
    with pytest.raises(ConfigError, match="kernel_predictors"):
        load_latency_predictor(meta)
    meta.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="m.yaml"):
        load_latency_predictor(meta)
    meta.write_text(yaml.safe_dump({"name": "x", "version": 1.0, "category": "cpu",
                                    "package_location": ".", "kernel_predictors": ["fc"]}))
    with pytest.raises(PredictorNotFound, match=r"fc\.pkl is missing"):
        load_latency_predictor(meta)


def test_public_names_of_nn_farm_predictor_resolve():
    import nn_farm.predictor as predictor

    assert predictor.__all__, "nn_farm.predictor lists its public names"
    for name in predictor.__all__:
        assert getattr(predictor, name) is not None, name
    with pytest.raises(AttributeError):
        predictor.no_such_name  # noqa: B018
