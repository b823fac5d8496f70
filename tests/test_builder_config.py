"""Workspace creation and builder_config: nn-Meter's keys, defaults, and clear errors."""

from __future__ import annotations

import pytest
import yaml

from nn_farm import cli
from nn_farm.builder.config import (
    BUDGET_DEFAULTS,
    ConfigManager,
    builder_config,
    load_workspace_configs,
)
from nn_farm.builder.workspace import create_workspace
from nn_farm.errors import ConfigError

# nn-Meter's ruletest_config.yaml and predictorbuild_config.yaml keys.
RULETEST_KEYS = {"DETAIL", "IMPLEMENT", "HW", "CIN", "SHAPE_1D", "COUT", "KERNEL_SIZE",
                 "PADDING", "STRIDES", "POOL_STRIDES", "EMP_ALPHA", "BASIC_TESTCASES",
                 "OTHER_TESTCASES", "LAYERS_1D"}
PREDBUILD_KEYS = {"DETAIL", "IMPLEMENT", "BATCH_SIZE", "KERNELS"}
KERNEL_KEYS = {"INIT_SAMPLE_NUM", "FINEGRAINED_SAMPLE_NUM", "ITERATION", "ERROR_THRESHOLD"}


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("NN_FARM_HOME", str(tmp_path / "home"))


def _read(path):
    return yaml.safe_load(path.read_text())


def test_create_command_writes_nn_meter_configs(tmp_path):
    ws = tmp_path / "ws"
    assert cli.main(["create", "--workspace", str(ws)]) == 0

    ruletest = _read(ws / "configs" / "ruletest_config.yaml")
    assert set(ruletest) == RULETEST_KEYS
    assert ruletest["HW"] == 28 and ruletest["CIN"] == 64 and ruletest["COUT"] == 128
    assert ruletest["SHAPE_1D"] == 428 and ruletest["EMP_ALPHA"] == 0.5
    assert ruletest["PADDING"] == "same" and ruletest["POOL_STRIDES"] == 2
    # nn-Meter's shipped ruletest_config.yaml lists 79 pairs (issue 5 rounds to 80).
    assert len(set(ruletest["BASIC_TESTCASES"])) == 79 and "conv_relu" in ruletest["BASIC_TESTCASES"]
    assert ruletest["OTHER_TESTCASES"] == ["MON"] and ruletest["LAYERS_1D"] == ["fc"]

    predbuild = _read(ws / "configs" / "predictorbuild_config.yaml")
    assert set(predbuild) == PREDBUILD_KEYS
    assert len(predbuild["KERNELS"]) == 17
    for name, entry in predbuild["KERNELS"].items():
        assert set(entry) == KERNEL_KEYS, name
    conv = predbuild["KERNELS"]["conv-bn-relu"]
    assert conv["INIT_SAMPLE_NUM"] == BUDGET_DEFAULTS["conv-bn-relu"].init_sample_num
    # Far below nn-Meter's 10,000 / 5,000 / 3,000 initial samples.
    assert sum(e["INIT_SAMPLE_NUM"] for e in predbuild["KERNELS"].values()) < 2000

    backend = _read(ws / "configs" / "backend_config.yaml")
    assert backend == {"BACKEND": "host-cpu-litert", "FARM": "embedded",
                       "DEVICE_CLASS": "host-cpu-litert", "RUNTIME": "litert", "THREADS": 1}
    assert (ws / "fusion_rule_test").is_dir() and (ws / "predictor_build" / "results").is_dir()


def test_builder_config_init_reads_workspace(tmp_path):
    ws = create_workspace(tmp_path / "ws", backend="host-cpu-onnxruntime")
    # A user edit survives create and shows through get().
    text = ws.ruletest_config.read_text().replace("HW: 28", "HW: 56")
    ws.ruletest_config.write_text(text)
    create_workspace(ws.root, backend="host-cpu-onnxruntime")

    manager = ConfigManager().init(ws.root)
    assert manager.get("HW", "ruletest") == 56
    assert manager.get("KERNELS", "predbuild")["fc"]["ITERATION"] == 2
    assert manager.get("RUNTIME", "backend") == "onnxruntime"
    assert manager.get("WORKSPACE", "ruletest") == str(ws.root / "fusion_rule_test")
    assert manager.get("WORKSPACE", "predbuild") == str(ws.root / "predictor_build")
    with pytest.raises(ConfigError, match="NO_SUCH"):
        manager.get("NO_SUCH", "ruletest")
    builder_config.init(ws.root)
    assert builder_config.get("EMP_ALPHA", "ruletest") == 0.5


def test_remote_backend_names_its_farm(tmp_path):
    farm = tmp_path / "farm.yaml"
    farm.write_text("agents:\n  - address: 127.0.0.1:50051\n")
    ws = create_workspace(tmp_path / "ws", backend="remote-farm", farm=farm,
                          device_class="pixel4-cpu")
    backend = _read(ws.backend_config)
    assert backend == {"BACKEND": "remote-farm", "FARM": str(farm), "DEVICE_CLASS": "pixel4-cpu"}
    with pytest.raises(ConfigError, match="farm"):
        create_workspace(tmp_path / "ws2", backend="remote-farm")
    with pytest.raises(ConfigError, match="no-such-backend"):
        create_workspace(tmp_path / "ws3", backend="no-such-backend")


def test_eps_alpha_is_accepted_as_emp_alpha(tmp_path):
    ws = create_workspace(tmp_path / "ws")
    ws.ruletest_config.write_text("EPS_ALPHA: 0.3\nHW: 14\n")
    configs = load_workspace_configs(ws.root)
    assert configs["ruletest"]["EMP_ALPHA"] == 0.3
    assert configs["ruletest"]["HW"] == 14
    assert configs["ruletest"]["CIN"] == 64  # left out: default


def test_malformed_yaml_names_the_file(tmp_path):
    ws = create_workspace(tmp_path / "ws")
    ws.predbuild_config.write_text("KERNELS:\n  conv-bn-relu: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        builder_config.init(ws.root)
    assert str(ws.predbuild_config) in str(info.value)
    assert "malformed YAML" in str(info.value) and "line" in str(info.value)


@pytest.mark.parametrize("text, key", [
    ("HW: 28\nKERNEL_SIZ: 3\n", "KERNEL_SIZ"),           # typo of a key
    ("HW: big\n", "HW"),                                  # wrong type
    ("HW: -1\n", "HW"),                                   # out of range
    ("IMPLEMENT: caffe\n", "IMPLEMENT"),
    ("DETAIL: 3\n", "DETAIL"),
    ("BASIC_TESTCASES: conv_relu\n", "BASIC_TESTCASES"),  # a string, not a list
])
def test_wrong_ruletest_key_or_type_names_file_and_key(tmp_path, text, key):
    ws = create_workspace(tmp_path / "ws")
    ws.ruletest_config.write_text(text)
    with pytest.raises(ConfigError) as info:
        builder_config.init(ws.root)
    assert info.value.key == key
    assert info.value.path == str(ws.ruletest_config)
    assert str(ws.ruletest_config) in str(info.value) and key in str(info.value)


@pytest.mark.parametrize("text, key", [
    ("KERNELS:\n  conv-bn-relu:\n    INIT_SAMPLE_NUM: many\n", "KERNELS.conv-bn-relu.INIT_SAMPLE_NUM"),
    ("KERNELS:\n  conv-bn-relu:\n    ERROR_THRESHOLD: 2\n", "KERNELS.conv-bn-relu.ERROR_THRESHOLD"),
    ("KERNELS:\n  conv-bn-relu:\n    ITERATIONS: 2\n", "KERNELS.conv-bn-relu.ITERATIONS"),
    ("KERNELS:\n  conv-bn-rleu:\n    ITERATION: 2\n", "KERNELS.conv-bn-rleu"),
    ("BATCH_SIZE: 0\n", "BATCH_SIZE"),
])
def test_wrong_predbuild_key_names_file_and_key(tmp_path, text, key):
    ws = create_workspace(tmp_path / "ws")
    ws.predbuild_config.write_text(text)
    with pytest.raises(ConfigError) as info:
        builder_config.init(ws.root)
    assert info.value.key == key
    assert str(ws.predbuild_config) in str(info.value)


def test_predbuild_kernel_subset_fills_budget_defaults(tmp_path):
    ws = create_workspace(tmp_path / "ws")
    ws.predbuild_config.write_text("KERNELS:\n  conv-bn-relu6:\n    INIT_SAMPLE_NUM: 7\n  fc:\n")
    kernels = load_workspace_configs(ws.root)["predbuild"]["KERNELS"]
    assert set(kernels) == {"conv-bn-relu6", "fc"}
    assert kernels["conv-bn-relu6"]["INIT_SAMPLE_NUM"] == 7
    assert kernels["fc"]["INIT_SAMPLE_NUM"] == BUDGET_DEFAULTS["*"].init_sample_num


def test_backend_config_errors(tmp_path):
    ws = create_workspace(tmp_path / "ws")
    ws.backend_config.write_text("BACKEND: tflite_cpu\n")
    with pytest.raises(ConfigError) as info:
        builder_config.init(ws.root)
    assert info.value.key == "BACKEND" and "tflite_cpu" in str(info.value)
    ws.backend_config.write_text("BACKEND: host-cpu-litert\nTHREADS: two\n")
    with pytest.raises(ConfigError) as info:
        builder_config.init(ws.root)
    assert info.value.key == "THREADS"


def test_not_a_workspace(tmp_path):
    with pytest.raises(ConfigError, match="nn-farm create"):
        ConfigManager().init(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="init"):
        ConfigManager().get("HW", "ruletest")


def test_create_cli_reports_bad_backend(tmp_path, capsys):
    assert cli.main(["create", "--workspace", str(tmp_path / "ws"), "--backend", "nope"]) == 1
    assert "nope" in capsys.readouterr().err
