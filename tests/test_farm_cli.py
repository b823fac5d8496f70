"""agent.yaml parsing, and the `agent`, `devices`, `profile` and `demo` commands on real agents."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

import nn_farm.farm
from nn_farm.cli import main
from nn_farm.errors import ConfigError
from nn_farm.farm.agent import start_agent
from nn_farm.farm.devices import AgentConfig, DeviceConfig, default_devices, load_config
from nn_farm.farm.policy import MeasurePolicy
from nn_farm.farm.runtimes import RUNTIME_NAMES
from test_agent import make_onnx


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


# -- agent.yaml ----------------------------------------------------------------------------------
def test_a_full_config(tmp_path, monkeypatch):
    monkeypatch.delenv("NN_FARM_TOKEN", raising=False)
    (tmp_path / "token").write_text("abc\n")
    cfg = load_config(write(tmp_path / "agent.yaml", f"""
        agent:
          host: 0.0.0.0
          port: 6000
          token_file: {tmp_path / 'token'}
          cache_dir: {tmp_path / 'cache'}
          cache_max_bytes: 1000000
          max_upload_bytes: 5000
        devices:
          - id: phone-1/cpu
            device_class: pixel4-cpu
            runtime: litert
            options: {{threads: 4}}
            cpu_affinity: [0, 1]
          - id: ort
            runtime: onnxruntime
    """), port=7000)
    assert (cfg.host, cfg.port, cfg.token, cfg.max_upload_bytes) == ("0.0.0.0", 7000, "abc", 5000)
    assert cfg.devices[0] == DeviceConfig("phone-1/cpu", "pixel4-cpu", "litert", {"threads": 4}, (0, 1))
    assert cfg.devices[1].device_class == "ort"


def test_no_config_serves_every_runtime_and_reads_the_env_token(monkeypatch):
    monkeypatch.setenv("NN_FARM_TOKEN", "from-env")
    cfg = load_config(None)
    assert cfg.token == "from-env"
    assert [d.runtime for d in cfg.devices] == list(RUNTIME_NAMES)
    assert cfg.devices == default_devices()
    assert [d.id for d in cfg.devices] == [f"host-cpu/{r}" for r in RUNTIME_NAMES]


@pytest.mark.parametrize("text, key", [
    ("agent: {port: 1, colour: red}\n", "agent.colour"),
    ("agent: {port: '50051'}\n", "agent.port"),
    ("agent: {port: true}\n", "agent.port"),
    ("agnet: {}\n", "agnet"),
    ("devices: [{id: a, runtime: tensorrt}]\n", "devices[0].runtime"),
    ("devices: [{id: a, runtime: litert, thread: 2}]\n", "devices[0].thread"),
    ("devices: [{id: a, runtime: litert, options: {treads: 2}}]\n", "devices[0].options"),
    ("devices: [{runtime: litert}]\n", "devices[0].id"),
    ("devices: [{id: a, runtime: litert, cpu_affinity: [-1]}]\n", "devices[0].cpu_affinity"),
    ("devices: [{id: a, runtime: litert}, {id: a, runtime: torch}]\n", "devices"),
    ("devices: {id: a}\n", "devices"),
    ("agent: {tls_cert: a.crt}\n", "tls_cert"),
])
def test_bad_config_names_file_and_key(tmp_path, text, key):
    path = write(tmp_path / "agent.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert key in str(info.value)


def test_malformed_yaml_names_the_file(tmp_path):
    path = write(tmp_path / "agent.yaml", "agent: {port: [1, \n")
    with pytest.raises(ConfigError, match="malformed YAML") as info:
        load_config(path)
    assert str(path) in str(info.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


# -- commands ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    config = AgentConfig(port=0, cache_dir=str(tmp_path_factory.mktemp("cache")), token="tok",
                         devices=(DeviceConfig("cpu/ort", "cpu-ort", "onnxruntime"),))
    running = start_agent(config)
    yield running
    running.stop()


@pytest.fixture()
def token_file(tmp_path):
    (tmp_path / "token").write_text("tok")
    return str(tmp_path / "token")


def test_devices_command(agent, token_file, capsys):
    assert main(["devices", "--agent", agent.address, "--token-file", token_file]) == 0
    out = capsys.readouterr().out
    assert "cpu/ort" in out and "onnxruntime" in out
    assert main(["devices", "--agent", agent.address, "--token-file", token_file, "--json"]) == 0
    (device,) = json.loads(capsys.readouterr().out)
    assert device["id"] == "cpu/ort" and device["available"]


def test_profile_command_uploads_once_and_prints_mean_std(agent, token_file, tmp_path, capsys):
    model = make_onnx(tmp_path / "net.onnx", seed=3)
    argv = ["profile", str(model), "--agent", agent.address, "--token-file", token_file,
            "--device", "cpu/ort", "--runs", "15"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "(uploaded)" in out and "onnxruntime" in out
    assert re.search(r"\d+\.\d+ \+- \d+\.\d+ ms", out)
    assert main(argv + ["--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    # Speed gating is on by default: an attempt with too few fast runs is retried (15 more runs).
    assert m["runs"] == len(m["samples_ms"]) == 15 * m["attempts"] and m["runtime"] == "onnxruntime"
    assert m["policy"]["runs_exact"] == 15 and m["device"]["hostname"]
    assert main(argv) == 0
    assert "(already on the agent)" in capsys.readouterr().out


def test_cli_errors_are_one_line(agent, token_file, tmp_path, capsys):
    model = make_onnx(tmp_path / "net.onnx")
    assert main(["profile", str(model), "--agent", agent.address, "--token-file", token_file,
                 "--device", "nope"]) == 1
    assert "no device 'nope'" in capsys.readouterr().err
    (tmp_path / "bad").write_text("wrong")
    assert main(["devices", "--agent", agent.address, "--token-file", str(tmp_path / "bad")]) == 1
    assert "bearer token" in capsys.readouterr().err


def test_agent_command_serves_until_sigterm(tmp_path):
    cfg = write(tmp_path / "agent.yaml", f"""
        agent: {{cache_dir: {tmp_path / 'cache'}}}
        devices: [{{id: ort, runtime: onnxruntime}}]
    """)
    env = {**os.environ, "NN_FARM_TOKEN": ""}
    proc = subprocess.Popen([sys.executable, "-m", "nn_farm.cli", "agent", "--config", str(cfg), "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env=env)
    watchdog = threading.Timer(120, proc.kill)  # a silent agent must not hang the suite
    watchdog.start()
    try:
        address = None
        for line in proc.stderr:
            found = re.search(r"on (127\.0\.0\.1:\d+)", line)
            if found:
                address = found.group(1)
                break
        assert address, "the agent never said where it listens"
        out = subprocess.run([sys.executable, "-m", "nn_farm.cli", "devices", "--agent", address],
                             capture_output=True, text=True, timeout=120, env=env)
        assert out.returncode == 0 and "ort" in out.stdout, out.stderr
    finally:
        watchdog.cancel()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


def test_demo_profiles_every_runtime(capsys):
    from nn_farm.farm.demo import run_demo

    policy = MeasurePolicy.from_dict({"warmup_runs": 2, "runs_exact": 10, "speed_gate": {"mode": "off"}})
    lines = run_demo(policy=policy, progress=False)
    assert [line.runtime for line in lines] == list(RUNTIME_NAMES)
    for line in lines:
        assert line.measurement is not None, line.error
        assert line.measurement.runs == 10 and line.version
    out = capsys.readouterr().out
    for name in RUNTIME_NAMES:
        assert re.search(rf"^{name}\s+\S+\s+\d+\.\d+ \+-\s+\d+\.\d+ ms", out, re.M), out


@pytest.mark.slow
def test_runtimes_command_as_a_newcomer_runs_it():
    out = subprocess.run([sys.executable, "-m", "nn_farm.cli", "runtimes"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert len(re.findall(r"\d+\.\d+ \+-\s+\d+\.\d+ ms", out.stdout)) == len(RUNTIME_NAMES), out.stdout


# -- package hygiene -----------------------------------------------------------------------------
def test_help_imports_nothing_heavy():
    code = ("import sys, argparse; import nn_farm.farm.cli as c; c.register(argparse.ArgumentParser()"
            ".add_subparsers()); import nn_farm.farm; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'ray', 'openvino', 'onnxruntime', 'grpc') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_public_names_resolve():
    for name in nn_farm.farm.__all__:
        assert getattr(nn_farm.farm, name) is not None
    with pytest.raises(AttributeError):
        nn_farm.farm.no_such_name  # noqa: B018
