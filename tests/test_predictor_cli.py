"""`nn-farm predict / register / unregister / --list-predictors` through cli.main."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nn_farm import cli
from nn_farm.predictor import cli as predictor_cli
from nn_farm.predictor.nnmeter_compat import export_nnmeter
from nn_farm.predictor.package import load_package

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "nn_farm/predictor/fixtures/synthetic_fixture_cpu"

UNITS = [
    {"op": "conv-bn-relu", "name": "c1", "inputh": 56, "cin": 16, "cout": 32, "ks": [3, 3],
     "strides": [1, 1], "input_tensors": [[1, 56, 56, 16]]},
    {"op": "dwconv-bn-relu", "name": "d1", "inputh": 56, "cin": 32, "ks": [3, 3],
     "strides": [2, 2], "input_tensors": [[1, 56, 56, 32]]},
    {"op": "fc", "name": "f", "cin": 32, "cout": 10, "input_tensors": [[1, 32]]},
    {"op": "sigmoid", "name": "s", "input_tensors": [[1, 28, 28, 32]]},
]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("NN_FARM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_register_list_predict_unregister(home, tmp_path, capsys):
    code, out, _ = run(capsys, "--list-predictors")
    assert code == 0 and "no predictors registered" in out
    code, out, _ = run(capsys, "register", "--predictor", str(FIXTURE))
    assert code == 0 and "registered predictor synthetic-fixture 1.0" in out
    code, out, _ = run(capsys, "--list-predictors")
    assert code == 0 and "synthetic-fixture" in out and "synthetic-cpu" in out

    kernels = tmp_path / "net.json"
    kernels.write_text(json.dumps(UNITS))
    code, out, _ = run(capsys, "predict", "--predictor", "synthetic-fixture", "--kernels",
                       str(kernels), "--json", "--detail")
    assert code == 0
    result = json.loads(out)
    assert result["predictor"] == "synthetic-fixture" and result["n_unknown"] == 1
    assert [k["kernel"] for k in result["kernels"]] == ["c1", "d1", "f"]
    assert result["latency_ms"] == pytest.approx(sum(k["ms"] for k in result["kernels"]))
    assert result["latency_ms"] > 0

    code, out, _ = run(capsys, "predict", "--predictor", "synthetic-fixture",
                       "--predictor-version", "1.0", "--kernels", str(kernels))
    assert code == 0
    assert f"{result['latency_ms']:.3f}" in out and "not priced: sigmoid" in out

    code, out, _ = run(capsys, "unregister", "--predictor", "synthetic-fixture")
    assert code == 0 and "1.0" in out
    code, out, _ = run(capsys, "--list-predictors")
    assert "no predictors registered" in out


def test_errors_are_clear_and_exit_1(home, tmp_path, capsys):
    run(capsys, "register", "--predictor", str(FIXTURE))
    kernels = tmp_path / "net.json"
    kernels.write_text(json.dumps(UNITS))
    code, _, err = run(capsys, "predict", "--predictor", "nope", "--kernels", str(kernels))
    assert code == 1 and "no predictor named 'nope'" in err and "synthetic-fixture (1.0)" in err
    code, _, err = run(capsys, "predict", "--predictor", "synthetic-fixture",
                       "--predictor-version", "7", "--kernels", str(kernels))
    assert code == 1 and "no version '7'; available versions: 1.0" in err
    code, _, err = run(capsys, "predict", "--predictor", "synthetic-fixture", "--strict",
                       "--kernels", str(kernels), "--json")
    assert code == 1 and "sigmoid" in err
    code, _, err = run(capsys, "register", "--predictor", str(FIXTURE))
    assert code == 1 and "registered already" in err
    code, _, err = run(capsys, "unregister", "--predictor", "synthetic-fixture",
                       "--predictor-version", "2.0")
    assert code == 1 and "available versions: 1.0" in err
    code, _, err = run(capsys, "predict", "--predictor", "synthetic-fixture", "--onnx",
                       str(tmp_path / "missing.onnx"))
    assert code == 1 and "missing.onnx does not exist" in err


def test_a_directory_of_models_reports_each_and_keeps_going(home, tmp_path, capsys):
    run(capsys, "register", "--predictor", str(FIXTURE))
    models = tmp_path / "models"
    models.mkdir()
    (models / "a.json").write_text(json.dumps(UNITS[:1]))
    (models / "b.json").write_text(json.dumps(UNITS[:3]))
    code, out, _ = run(capsys, "predict", "--predictor", "synthetic-fixture", "--kernels",
                       str(models), "--json")
    assert code == 0
    a, b = json.loads(out)
    assert a["model"].endswith("a.json") and b["model"].endswith("b.json")
    assert b["latency_ms"] > a["latency_ms"] > 0


def test_register_an_nnmeter_meta_yaml(home, tmp_path, capsys):
    meta = export_nnmeter(load_package(FIXTURE), tmp_path / "nnmeter")
    code, out, _ = run(capsys, "register", "--predictor", str(meta))
    assert code == 0 and "synthetic-fixture 1.0" in out
    listed = yaml.safe_load(meta.read_text())["kernel_predictors"]
    assert len(listed) == 29


def test_other_layers_add_registry_kinds_through_the_hook(home, capsys):
    seen = []
    predictor_cli.add_registry_kind(
        "--test-widget", help="a test-only kind",
        on_register=lambda value, args: seen.append(("reg", value)) or f"widget {value} in",
        on_unregister=lambda value, args: seen.append(("unreg", value)) or f"widget {value} out",
        unregister_nargs=2, unregister_metavar=("NAME", "IMPLEMENT"))
    try:
        code, out, _ = run(capsys, "register", "--test-widget", "w1")
        assert code == 0 and "widget w1 in" in out
        code, out, _ = run(capsys, "unregister", "--test-widget", "w1", "torch")
        assert code == 0 and "widget ['w1', 'torch'] out" in out
        assert seen == [("reg", "w1"), ("unreg", ["w1", "torch"])]
        with pytest.raises(ValueError, match="taken"):
            predictor_cli.add_registry_kind("--test-widget", help="again")
    finally:
        predictor_cli._KINDS.pop("test_widget", None)


def test_help_is_fast_and_imports_nothing_heavy():
    code = ("import sys; from nn_farm import cli; cli.build_parser(); "
            "heavy = [m for m in ('torch', 'tensorflow', 'ray', 'sklearn', 'onnx') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_predictor_package_imports_without_ray_or_builder():
    code = ("import sys; from nn_farm.predictor import load_latency_predictor, LatencyPredictor; "
            f"p = load_latency_predictor({str(FIXTURE)!r}); "
            "p.predict([{'op': 'relu', 'input_tensors': [[1, 7, 7, 8]]}], 'kernels'); "
            "print([m for m in sys.modules if m.startswith(('ray', 'nn_farm.actors', "
            "'nn_farm.builder', 'tensorflow', 'torch'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


TINY_ONNX = ROOT / "nn_farm/farm/data/tiny_convnet.onnx"


def test_get_ir_then_predict_from_onnx_and_from_ir_agree(home, tmp_path, capsys):
    run(capsys, "register", "--predictor", str(FIXTURE))
    ir_path = tmp_path / "tiny_ir.json"
    code, out, _ = run(capsys, "get_ir", "--onnx", str(TINY_ONNX), "-o", str(ir_path))
    assert code == 0 and ir_path.is_file()
    nodes = json.loads(ir_path.read_text())
    assert all({"inbounds", "outbounds", "attr"} <= set(n) for n in nodes.values())
    code, out, _ = run(capsys, "get_ir", "--onnx", str(TINY_ONNX))
    assert code == 0 and json.loads(out) == nodes
    code, out, _ = run(capsys, "predict", "--predictor", "synthetic-fixture", "--onnx",
                       str(TINY_ONNX), "--json", "--detail")
    assert code == 0
    from_onnx = json.loads(out)
    code, out, _ = run(capsys, "predict", "--predictor", "synthetic-fixture", "--nn-meter-ir",
                       str(ir_path), "--json")
    from_ir = json.loads(out)
    assert from_onnx["n_kernels"] >= 3 and from_onnx["n_unknown"] == 0
    assert from_onnx["latency_ms"] == from_ir["latency_ms"] > 0
    assert {k["type"] for k in from_onnx["kernels"]} >= {"global-avgpool", "fc"}


def test_truncated_onnx_is_a_clear_error_and_other_models_still_predict(home, tmp_path, capsys):
    run(capsys, "register", "--predictor", str(FIXTURE))
    models = tmp_path / "models"
    models.mkdir()
    (models / "good.onnx").write_bytes(TINY_ONNX.read_bytes())
    (models / "truncated.onnx").write_bytes(TINY_ONNX.read_bytes()[:300])
    code, out, err = run(capsys, "predict", "--predictor", "synthetic-fixture", "--onnx",
                         str(models), "--json")
    assert code == 1
    good, bad = json.loads(out)
    assert good["latency_ms"] > 0
    assert "ConversionError" in bad["error"] and "truncated.onnx" in bad["error"]
    assert "truncated.onnx" in err


def test_tflite_and_onnx_of_one_network_price_the_same_kernels(home, capsys):
    run(capsys, "register", "--predictor", str(FIXTURE))
    tflite = ROOT / "nn_farm/farm/data/tiny_convnet.tflite"
    code, out, _ = run(capsys, "predict", "--predictor", "synthetic-fixture", "--tflite",
                       str(tflite), "--json", "--detail")
    assert code == 0
    from_tflite = json.loads(out)
    code, out, _ = run(capsys, "predict", "--predictor", "synthetic-fixture", "--onnx",
                       str(TINY_ONNX), "--json", "--detail")
    from_onnx = json.loads(out)
    assert from_tflite["latency_ms"] > 0
    assert [k["type"] for k in from_tflite["kernels"]] == [k["type"] for k in from_onnx["kernels"]]
    # whatever TFLite adds (an explicit Pad) is listed, not priced as 0 ms silently
    assert from_tflite["n_unknown"] == len(from_tflite["unknown_kernels"])
    assert all(u["reason"] for u in from_tflite["unknown_kernels"])
