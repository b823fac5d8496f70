"""farm.yaml: parsed into records; every mistake names the file and the key."""

from __future__ import annotations

import subprocess

import pytest

from nn_farm.actors.config import AgentEntry, FarmConfig, load_farm_config
from nn_farm.errors import ConfigError


def _write(tmp_path, text: str):
    path = tmp_path / "farm.yaml"
    path.write_text(text)
    return path


def test_full_config_is_read_with_files_relative_to_it(tmp_path):
    (tmp_path / "token").write_text("s3cret\n")
    (tmp_path / "ca.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    path = _write(tmp_path, """
store: out/results.db
agents:
  - address: 10.0.0.2:50051
    token_file: token
    root_cert: ca.pem
    node_resource: nnfarm_host_a
    devices: [host-cpu/onnxruntime]
  - address: phone-rack:50052
    token: inline-token
device_classes: [host-cpu-onnxruntime]
calibration: {every_jobs: 100, drift_threshold: 0.2}
""")
    config = load_farm_config(path)
    a, b = config.agents
    assert a == AgentEntry("10.0.0.2:50051", token="s3cret", root_cert=b"-----BEGIN CERTIFICATE-----\n",
                           node_resource="nnfarm_host_a", devices=("host-cpu/onnxruntime",))
    assert b.token == "inline-token" and b.node_resource == "nnfarm_agent_phone-rack"
    assert config.store == str(tmp_path / "out" / "results.db")
    assert config.device_classes == ("host-cpu-onnxruntime",)
    assert config.calibration.every_jobs == 100 and config.calibration.drift_threshold == 0.2


def test_token_comes_from_the_environment_when_not_in_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("NN_FARM_TOKEN", "from-env")
    config = load_farm_config(_write(tmp_path, "agents: [{address: '127.0.0.1:1234'}]\n"))
    assert config.agents[0].token == "from-env"


@pytest.mark.parametrize("text, key, words", [
    ("agents: [{address: 'h:1', tokn: x}]\n", "agents[0].tokn", "unknown key"),
    ("agents: [{address: 'nohost'}]\n", "agents[0].address", "host:port"),
    ("agents: [{address: 'h:99999'}]\n", "agents[0].address", "host:port"),
    ("agents: [{token: x}]\n", "agents[0].address", "required"),
    ("agents: []\n", "agents", "at least one agent"),
    ("agents: [{address: 'h:1', token_file: missing.txt}]\n", "agents[0].token_file", "cannot read"),
    ("agents: [{address: 'h:1', token: a, token_file: b}]\n", "agents[0].token", "not both"),
    ("agents: [{address: 'h:1'}]\ncalibration: {every_jobs: 0}\n", "calibration.every_jobs", "positive"),
    ("agents: [{address: 'h:1'}]\ncalibration: {every_jobs: true}\n", "calibration.every_jobs", "must be int"),
    ("agents: [{address: 'h:1'}, {address: 'h:1'}]\n", "agents", "duplicate"),
    ("agents: [{address: 'h:1'}]\nstorage: x.db\n", "storage", "unknown key"),
])
def test_mistakes_name_the_file_and_the_key(tmp_path, text, key, words):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_farm_config(path)
    message = str(info.value)
    assert str(path) in message and key in message and words in message


def test_malformed_yaml_and_missing_file(tmp_path):
    path = _write(tmp_path, "agents: [{address: 'h:1'\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_farm_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_farm_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_farm_config(_write(tmp_path, "- just a list\n"))


def test_records_are_frozen_and_checked_directly():
    config = FarmConfig(agents=(AgentEntry("127.0.0.1:50051"),))
    with pytest.raises(Exception):
        config.store = "x"  # type: ignore[misc]
    with pytest.raises(ConfigError, match="host:port"):
        AgentEntry("127.0.0.1")


# Ray's two ways to time out starting a node, as it words them.
_TIMEOUTS = [RuntimeError("Timed out waiting for file /tmp/x/gcs_server_port_abc"),
             Exception("The current node timed out during startup. This could happen because some of "
                       "the raylet failed to startup or the GCS has become overloaded.")]


@pytest.mark.parametrize("timeout", _TIMEOUTS, ids=["gcs-port-file", "node-registration"])
def test_a_local_ray_start_that_times_out_is_tried_once_more(monkeypatch, timeout):
    import ray

    from nn_farm.actors import ray_init

    calls, left_behind = [], []

    def init(address=None, **kwargs):
        calls.append(address)
        if len(calls) == 1:
            # what a timed-out start leaves: a GCS server that nothing will stop
            left_behind.append(subprocess.Popen(["sleep", "300"]))
            raise timeout

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    bystander = subprocess.Popen(["sleep", "300"])  # started before: not the start's to stop
    try:
        ray_init.init_ray()
        assert calls == [None, None]
        assert left_behind[0].wait(timeout=10) is not None
        assert bystander.poll() is None
    finally:
        for proc in (bystander, *left_behind):
            proc.kill()
            proc.wait()
    # joining a named cluster is not retried: its address may simply be wrong
    calls.clear()
    with pytest.raises(type(timeout), match="(?i)timed out"):
        ray_init.init_ray("10.0.0.1:6379")
    assert calls == ["10.0.0.1:6379"]
    # nor is any other failure of a local start
    calls.clear()
    monkeypatch.setattr(ray, "init", lambda address=None, **kw: calls.append(address) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        ray_init.init_ray()
    assert calls == [None]
