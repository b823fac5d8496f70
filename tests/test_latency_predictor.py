"""LatencyPredictor on kernel-unit lists: sums, batching, unknown kernels, fast regressors."""

import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.tree import DecisionTreeRegressor

from nn_farm.errors import UnknownKernelError
from nn_farm.predictor import kernel_specs as ks
from nn_farm.predictor.fast_regressor import compile_regressor
from nn_farm.predictor.latency_predictor import LatencyPredictor, UnknownKernelWarning
from nn_farm.predictor.package import PredictorPackage, load_package
from nn_farm.predictor.roofline_model import RooflineBoosted

FIXTURE = Path(__file__).resolve().parents[1] / "nn_farm/predictor/fixtures/synthetic_fixture_cpu"


def mobilenet_like_units(rng, resolution=224):
    """Kernel units of a random MobileNetV2-style net, as a kernel detector reports them."""
    units, hw, c = [], resolution // 2, 32
    units.append({"op": "conv-bn-relu6", "name": "stem", "inputh": resolution, "cin": 3,
                  "cout": c, "ks": [3, 3], "strides": [2, 2],
                  "input_tensors": [[1, resolution, resolution, 3]]})
    for stage, (cout, stride) in enumerate([(16, 1), (24, 2), (32, 2), (64, 2), (96, 1),
                                            (160, 2), (320, 1)]):
        for block in range(int(rng.integers(1, 4))):
            s = stride if block == 0 else 1
            expand = int(rng.choice([3, 6])) * c
            k = int(rng.choice([3, 5, 7]))
            name = f"s{stage}b{block}"
            units.append({"op": "conv-bn-relu6", "name": name + "/expand", "inputh": hw,
                          "cin": c, "cout": expand, "ks": [1, 1], "strides": [1, 1],
                          "input_tensors": [[1, hw, hw, c]]})
            units.append({"op": "dwconv-bn-relu6", "name": name + "/dw", "inputh": hw,
                          "cin": expand, "cout": expand, "ks": [k, k], "strides": [s, s],
                          "input_tensors": [[1, hw, hw, expand]]})
            hw = -(-hw // s)
            units.append({"op": "conv-bn", "name": name + "/project", "inputh": hw,
                          "cin": expand, "cout": cout, "ks": [1, 1], "strides": [1, 1],
                          "input_tensors": [[1, hw, hw, expand]]})
            if s == 1 and c == cout:
                units.append({"op": "add", "name": name + "/add",
                              "input_tensors": [[1, hw, hw, cout], [1, hw, hw, cout]]})
            c = cout
    units.append({"op": "conv-bn-relu6", "name": "head", "inputh": hw, "cin": c, "cout": 1280,
                  "ks": [1, 1], "strides": [1, 1], "input_tensors": [[1, hw, hw, c]]})
    units.append({"op": "global-avgpool", "name": "gap", "inputh": hw, "cin": 1280,
                  "input_tensors": [[1, hw, hw, 1280]]})
    units.append({"op": "fc", "name": "fc", "cin": 1280, "cout": 1000,
                  "input_tensors": [[1, 1280]]})
    return units


@pytest.fixture(scope="module")
def fixture_predictor():
    return LatencyPredictor(load_package(FIXTURE))


@pytest.fixture(scope="module")
def nets():
    rng = np.random.default_rng(7)
    return [mobilenet_like_units(rng, int(rng.choice([160, 192, 224]))) for _ in range(40)]


def test_predict_is_the_sum_of_the_detail(fixture_predictor, nets):
    detail = fixture_predictor.predict_detail(nets[0], "kernels")
    assert detail["n_unknown"] == 0 and detail["unknown_kernels"] == []
    assert len(detail["kernels"]) == len(nets[0]) == detail["n_kernels"]
    assert detail["latency_ms"] == pytest.approx(sum(k["ms"] for k in detail["kernels"]))
    assert detail["latency_ms"] == pytest.approx(fixture_predictor.predict(nets[0], "kernels"))
    first = detail["kernels"][0]
    assert first["kernel"] == "stem" and first["type"] == "conv-bn-relu6"
    assert first["config"] == dict(HW=224, CIN=3, COUT=32, KERNEL_SIZE=3, STRIDES=2)
    # each kernel is priced by its own regressor on nn-Meter features
    X = ks.features("conv-bn-relu6", [first["config"]])
    assert first["ms"] == pytest.approx(
        fixture_predictor.package.models["conv-bn-relu6"].predict(X)[0])


def test_predict_many_equals_a_loop_of_predict(fixture_predictor, nets):
    batched = fixture_predictor.predict_many(nets, "kernels")
    looped = [fixture_predictor.predict(n, "kernels") for n in nets]
    assert batched == looped  # each model's kernels summed in the same order either way
    assert len(set(batched)) > 30  # the nets differ, and so do their latencies


def test_a_malformed_unit_is_named_and_the_rest_of_its_op_still_priced(fixture_predictor, nets):
    broken = {"op": "conv-bn-relu6", "name": "broken", "input_tensors": [[1, 7, 7, 8]]}  # no cout
    units = [{"op": "sigmoid", "name": "act"}] + nets[0] + [broken]
    with pytest.warns(UnknownKernelWarning, match="2 kernel"):
        detail = fixture_predictor.predict_detail(units, "kernels")
    assert [u["kernel"] for u in detail["unknown_kernels"]] == ["act", "broken"]  # in unit order
    assert "cout" in detail["unknown_kernels"][1]["reason"]
    assert len(detail["kernels"]) == len(nets[0])
    assert detail["latency_ms"] == fixture_predictor.predict(nets[0], "kernels")


class CountingRegressor:
    """Counts predict calls; latency = 1 ms per kernel plus FLOPs when there are any."""

    def __init__(self):
        self.calls = 0
        self.rows = 0

    def predict(self, X):
        self.calls += 1
        self.rows += len(X)
        return 1.0 + np.asarray(X)[:, 0] * 0


def test_predict_many_calls_each_regressor_once_per_batch(nets):
    models = {k: CountingRegressor() for k in ks.KERNEL_TYPES}
    predictor = LatencyPredictor(PredictorPackage(Path("."), {"name": "count", "version": "0"},
                                                  models, {}))
    totals = predictor.predict_many(nets, "kernels")
    assert totals == [float(len(n)) for n in nets]  # 1 ms per kernel, none lost
    used = {k: m.calls for k, m in models.items() if m.calls}
    assert set(used) == {"conv-bn-relu6", "dwconv-bn-relu6", "conv-bn", "add",
                         "global-avgpool", "fc"}
    assert all(calls == 1 for calls in used.values())


def test_a_config_repeated_across_a_batch_is_priced_once(nets):
    models = {k: CountingRegressor() for k in ks.KERNEL_TYPES}
    predictor = LatencyPredictor(PredictorPackage(Path("."), {"name": "count", "version": "0"},
                                                  models, {}))
    predictor.predict_many(nets[:1], "kernels")
    rows_of_one = {k: m.rows for k, m in models.items()}
    for m in models.values():
        m.rows = 0
    totals = predictor.predict_many(nets[:1] * 50, "kernels")
    assert totals == [float(len(nets[0]))] * 50
    assert {k: m.rows for k, m in models.items()} == rows_of_one
    distinct = {(u["op"], u["inputh"], u["cin"], u["cout"], u["ks"][0], u["strides"][0])
                for u in nets[0] if u["op"] == "conv-bn-relu6"}
    assert rows_of_one["conv-bn-relu6"] == len(distinct)


def test_unknown_kernels_are_counted_listed_and_warned(fixture_predictor, nets):
    units = nets[0] + [{"op": "sigmoid", "name": "act", "input_tensors": [[1, 7, 7, 8]]},
                       {"op": "sigmoid", "name": "act2", "input_tensors": [[1, 7, 7, 8]]}]
    with pytest.warns(UnknownKernelWarning, match="2 kernel.*sigmoid x2"):
        detail = fixture_predictor.predict_detail(units, "kernels")
    assert detail["n_unknown"] == 2
    assert [u["kernel"] for u in detail["unknown_kernels"]] == ["act", "act2"]
    assert "sigmoid" in detail["unknown_kernels"][0]["reason"]
    with pytest.warns(UnknownKernelWarning):
        total = fixture_predictor.predict(units, "kernels")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert total == pytest.approx(fixture_predictor.predict(nets[0], "kernels"))
    strict = LatencyPredictor(fixture_predictor.package, on_unknown="raise")
    with pytest.raises(UnknownKernelError, match="sigmoid"):
        strict.predict_many([nets[1], units], "kernels")


def test_kernel_without_a_model_is_unknown_but_conv_family_falls_back(nets):
    models = {"conv-bn-relu": CountingRegressor(), "dwconv-bn-relu": CountingRegressor()}
    predictor = LatencyPredictor(PredictorPackage(Path("."), {"name": "two", "version": "0"},
                                                  models, {}))
    with pytest.warns(UnknownKernelWarning, match="cannot price"):
        detail = predictor.predict_detail(nets[0], "kernels")
    priced = {(k["type"], k["model"]) for k in detail["kernels"]}
    assert priced == {("conv-bn-relu6", "conv-bn-relu"), ("conv-bn", "conv-bn-relu"),
                      ("dwconv-bn-relu6", "dwconv-bn-relu")}
    assert {u["op"] for u in detail["unknown_kernels"]} >= {"global-avgpool", "fc"}
    assert detail["latency_ms"] == len(detail["kernels"])


def _log_target(regressor):
    return TransformedTargetRegressor(regressor, func=np.log, inverse_func=np.exp)


@pytest.mark.parametrize("make", [
    lambda: RandomForestRegressor(n_estimators=5, max_depth=6, random_state=0),
    lambda: ExtraTreesRegressor(n_estimators=3, random_state=0),
    lambda: DecisionTreeRegressor(max_depth=5, random_state=0),
    lambda: LinearRegression(),
    lambda: GradientBoostingRegressor(n_estimators=20, subsample=0.8, random_state=0),
    lambda: _log_target(GradientBoostingRegressor(n_estimators=20, random_state=0)),
    lambda: _log_target(make_pipeline(FunctionTransformer(np.log1p), LinearRegression())),
    lambda: RooflineBoosted("conv-bn-relu", n_estimators=20),
    lambda: RooflineBoosted("dwconv-bn-relu", n_estimators=20),  # with lane inputs
], ids=["rf", "extra-trees", "tree", "linear", "gbm", "gbm-log", "loglinear", "roofline-gbm",
        "roofline-gbm-lanes"])
def test_compiled_regressors_equal_predict(make):
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 300, (200, 7))
    y = 1 + X[:, 0] * 0.1 + np.sqrt(X[:, 5])
    model = make().fit(X, y)
    Xq = rng.uniform(0, 300, (57, 7))
    fast = compile_regressor(model)
    assert fast.compiled
    np.testing.assert_array_equal(fast(Xq), model.predict(Xq))


class _Doubled(RandomForestRegressor):
    def predict(self, X):
        return 2 * super().predict(X)


@pytest.mark.parametrize("make", [
    lambda: _Doubled(n_estimators=3, random_state=0),  # a subclass may change predict
    lambda: make_pipeline(StandardScaler(), LinearRegression()),  # a step it does not know
    lambda: GradientBoostingRegressor(n_estimators=5, init=LinearRegression()),  # init varies by row
])
def test_regressors_it_cannot_compile_keep_their_own_predict(make):
    rng = np.random.default_rng(2)
    X = rng.uniform(1, 300, (100, 4))
    model = make().fit(X, X[:, 0] + 3 * X[:, 1])
    Xq = rng.uniform(1, 300, (9, 4))
    fast = compile_regressor(model)
    assert not fast.compiled
    np.testing.assert_array_equal(fast(Xq), model.predict(Xq))


def test_a_compiled_path_that_disagrees_with_predict_is_not_used(monkeypatch):
    from nn_farm.predictor import fast_regressor

    # A compiler bug (here: the intercept forgotten) must cost speed, never correctness.
    monkeypatch.setattr(fast_regressor, "_linear", lambda m: lambda X: X @ m.coef_)
    X = np.random.default_rng(3).uniform(1, 300, (50, 3))
    model = LinearRegression().fit(X, X[:, 0] + 7.0)
    assert not compile_regressor(model).compiled


def test_bad_on_unknown_value_fails_early(fixture_predictor):
    with pytest.raises(ValueError, match="on_unknown"):
        LatencyPredictor(fixture_predictor.package, on_unknown="skip")


TINY_ONNX = Path(__file__).resolve().parents[1] / "nn_farm/farm/data/tiny_convnet.onnx"


def test_a_real_onnx_model_predicts_the_same_through_every_entry_point(fixture_predictor):
    from nn_farm.predictor.ir import model_to_ir

    from_file = fixture_predictor.predict(str(TINY_ONNX), "onnx")
    ir = model_to_ir(str(TINY_ONNX), "onnx")
    units = fixture_predictor.kernel_units(ir, "nnmeter-ir")
    assert len(units) >= 3
    assert fixture_predictor.predict(ir, "nnmeter-ir") == from_file
    assert fixture_predictor.predict(json_copy(ir.to_json()), "nnmeter-ir") == from_file
    assert fixture_predictor.predict(units, "kernels") == from_file
    assert fixture_predictor.predict_many([str(TINY_ONNX)] * 3, "onnx") == [from_file] * 3
    # the NAS path: IR graphs (and IR dicts) straight to detection
    assert fixture_predictor.predict_many([ir, json_copy(ir.to_json()), ir], "nnmeter-ir") == \
        [from_file] * 3
    assert from_file > 0


def json_copy(d):
    import json

    return json.loads(json.dumps(d))


def test_predictor_pickles_for_worker_processes(fixture_predictor, nets):
    import pickle

    clone = pickle.loads(pickle.dumps(fixture_predictor))
    assert clone.name == fixture_predictor.name
    assert clone.predict_many(nets[:5], "kernels") == fixture_predictor.predict_many(nets[:5], "kernels")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18", "mobilenet_v3_small",
                                  "shufflenet_v2_x1_0"])
def test_torchvision_models_are_fully_priced(fixture_predictor, name):
    detail = fixture_predictor.predict_detail(name, "torchvision", [1, 3, 224, 224])
    assert detail["n_unknown"] == 0, detail["unknown_kernels"]
    assert detail["n_kernels"] > 20 and detail["latency_ms"] > 0
    units = fixture_predictor.kernel_units(name, "torchvision", [1, 3, 224, 224])
    assert fixture_predictor.predict(units, "kernels") == pytest.approx(detail["latency_ms"])


def test_predict_many_leaves_the_garbage_collector_as_it_found_it(fixture_predictor, nets):
    import gc

    assert gc.isenabled()
    fixture_predictor.predict_many(nets[:3], "kernels")
    assert gc.isenabled()
    strict = LatencyPredictor(fixture_predictor.package, on_unknown="raise")
    with pytest.raises(UnknownKernelError):
        strict.predict_many([[{"op": "sigmoid", "input_tensors": [[1, 7, 7, 8]]}]], "kernels")
    assert gc.isenabled()
    gc.disable()
    try:
        fixture_predictor.predict_many(nets[:3], "kernels")
        assert not gc.isenabled()
    finally:
        gc.enable()
