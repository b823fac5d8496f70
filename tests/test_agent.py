"""The agent end to end: a real gRPC server on loopback, real worker processes, real runtimes.

Models are tiny conv networks made here: torch -> ONNX (onnxruntime, openvino) and
TorchScript (torch). For LiteRT the default tests use the bundled tiny conv network
(scripts/make_bundled_models.py), because converting with tensorflow costs 10-40 s
on a loaded host; the slow test converts a fresh Keras model (in a child process,
so tensorflow never loads in the test process).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch

from nn_farm.farm._proto import farm_pb2 as pb
from nn_farm.farm._proto import farm_pb2_grpc as pb_grpc
from nn_farm.farm.agent import start_agent
from nn_farm.farm.client import AgentClient, DeviceInfo
from nn_farm.farm.devices import AgentConfig, DeviceConfig, default_devices
from nn_farm.farm.policy import MeasurePolicy
from nn_farm.farm.runtimes import RUNTIME_NAMES, bundled_model
from nn_farm.farm.tensors import TensorSpec

QUICK = MeasurePolicy.from_dict({"warmup_runs": 2, "warmup_s": 1e-6, "runs_exact": 20,
                                 "speed_gate": {"mode": "off"}, "timeout_s": 120})


class TinyConvNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean(dim=(2, 3)))


def make_onnx(path, seed: int = 0):
    """A tiny conv network as a single ONNX file (1x3x16x16 input)."""
    torch.manual_seed(seed)
    torch.onnx.export(TinyConvNet().eval(), (torch.randn(1, 3, 16, 16),), str(path), dynamo=False,
                      input_names=["input"], output_names=["logits"])
    return path


def make_torchscript(path):
    torch.manual_seed(0)
    torch.jit.trace(TinyConvNet().eval(), torch.randn(1, 3, 16, 16)).save(str(path))
    return path


def make_tflite(path):
    """A tiny Keras conv network converted to TFLite, in a child process (keeps TF out of this one)."""
    code = textwrap.dedent(f"""
        from nn_farm._compat import import_tensorflow
        tf = import_tensorflow()
        tf.keras.utils.set_random_seed(0)
        m = tf.keras.Sequential([tf.keras.Input((16, 16, 3), batch_size=1),
                                 tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
                                 tf.keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
                                 tf.keras.layers.GlobalAveragePooling2D(), tf.keras.layers.Dense(10)])
        open({str(path)!r}, "wb").write(tf.lite.TFLiteConverter.from_keras_model(m).convert())
    """)
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {"onnxruntime": make_onnx(d / "net.onnx"), "openvino": d / "net.onnx",
            "torch": make_torchscript(d / "net.pt"), "litert": bundled_model("litert")}


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    config = AgentConfig(port=0, cache_dir=str(tmp_path_factory.mktemp("cache")), devices=default_devices())
    running = start_agent(config, warm=True)
    yield running
    running.stop()


@pytest.fixture()
def client(agent):
    with AgentClient(agent.address, token="", timeout_s=60) as c:
        yield c


def test_lists_this_hosts_cpu_on_every_runtime(client):
    devices = client.list_devices()
    assert [d.id for d in devices] == [f"host-cpu/{name}" for name in RUNTIME_NAMES]
    for d in devices:
        assert isinstance(d, DeviceInfo)
        assert d.available, d.unavailable_reason
        assert d.runtime_version
        assert d.identity["hostname"] and d.identity["cpu_model"]
        assert d.formats


@pytest.mark.parametrize("runtime", RUNTIME_NAMES)
def test_each_runtime_measures_a_conv_network(client, models, runtime):
    path = models[runtime]
    digest = client.put_model(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    # TorchScript stores no input shapes: the caller gives them.
    inputs = [TensorSpec("x", (1, 3, 16, 16))] if runtime == "torch" else None
    m = client.profile(digest, f"host-cpu/{runtime}", inputs=inputs, policy=QUICK)
    assert (m.model_digest, m.device_id, m.runtime) == (digest, f"host-cpu/{runtime}", runtime)
    assert m.device_class == f"host-cpu-{runtime}"
    assert m.runtime_version
    assert m.runs == len(m.samples_ms) == 20 and m.kept_runs == 20
    assert all(s > 0 for s in m.samples_ms)
    assert min(m.samples_ms) <= m.median_ms <= max(m.samples_ms)
    assert m.min_ms == pytest.approx(min(m.samples_ms))
    assert m.speed_state == "ungated"
    assert m.policy.runs_exact == 20
    assert m.started_unix_s < m.finished_unix_s
    assert m.device["hostname"] and m.device["cpu_model"]


@pytest.mark.slow
def test_litert_measures_a_freshly_converted_keras_network(client, tmp_path):
    path = make_tflite(tmp_path / "fresh.tflite")
    m = client.profile(client.put_model(path), "host-cpu/litert", policy=QUICK)
    assert m.runs == 20 and all(s > 0 for s in m.samples_ms) and m.device["delegate"]


def test_speed_gated_measurement_keeps_its_probes(client, models):
    digest = client.put_model(models["onnxruntime"])
    policy = MeasurePolicy.from_dict({"warmup_runs": 2, "min_runs": 15, "min_s": 0.0, "max_runs": 40,
                                      "speed_gate": {"calm_wait_s": 1.0, "min_fast": 3, "max_attempts": 2}})
    m = client.profile(digest, "host-cpu/onnxruntime", policy=policy)
    assert len(m.probe_ms) == len(m.samples_ms) == len(m.kept) == m.runs
    assert m.kept_runs == sum(m.kept) > 0
    assert m.speed_state in ("fast", "slow")
    assert m.best_probe_ms > 0


def test_a_model_is_uploaded_once(agent, client, tmp_path):
    path = make_onnx(tmp_path / "once.onnx", seed=7)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert not client.has_model(digest)
    assert client.put_model(path) == digest
    assert client.has_model(digest)
    stored = agent.agent.cache.get(digest).path
    before = stored.stat().st_ino
    assert client.put_model(path) == digest
    assert stored.stat().st_ino == before  # not rewritten
    # A client that uploads anyway is told the agent already has it.
    stub = pb_grpc.ProfilerStub(client._channel)
    reply = stub.PutModel(iter([pb.ModelChunk(digest=digest, format="onnx", total_size=1, data=b"x")]))
    assert reply.already_present


def test_two_clients_on_one_device_are_serialised(agent, client, models):
    import os
    import signal

    long = QUICK.replace(runs_exact=0, min_runs=1, min_s=1.0, max_s=1.0)
    digest = client.put_model(models["onnxruntime"])
    results, failures = [], []

    def run(policy):
        try:
            with AgentClient(agent.address, token="") as c:
                results.append(c.profile(digest, "host-cpu/onnxruntime", policy=policy))
        except Exception as exc:  # reported below; a thread cannot fail the test itself
            failures.append(exc)

    first = threading.Thread(target=run, args=(long,))
    first.start()
    wait_for(lambda: device_health(client)["state"] == "busy")
    pid = device_health(client)["worker_pid"]
    os.kill(pid, signal.SIGSTOP)  # hold the device, however slow this host is today
    try:
        others = [threading.Thread(target=run, args=(QUICK.replace(runs_exact=300),)) for _ in range(2)]
        for t in others:
            t.start()
        # Both wait their turn while the first measures: the agent reports them queued.
        wait_for(lambda: device_health(client)["queue_length"] == 2)
        assert next(d for d in client.list_devices() if d.id == "host-cpu/onnxruntime").queue_length == 2
    finally:
        os.kill(pid, signal.SIGCONT)
    for t in [first, *others]:
        t.join(120)
    assert not failures
    spans = sorted((m.started_unix_s, m.finished_unix_s) for m in results)
    assert len(spans) == 3
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start, f"measurements overlap: {spans}"
    assert device_health(client)["queue_length"] == 0


def device_health(client, device_id="host-cpu/onnxruntime") -> dict:
    return next(d for d in client.health()["devices"] if d["device_id"] == device_id)


def wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def test_health_shows_live_workers(agent, client, models):
    import os

    client.profile(client.put_model(models["onnxruntime"]), "host-cpu/onnxruntime", policy=QUICK)
    health = client.health()
    assert health["status"] == "SERVING"
    assert health["cache_models"] >= 1 and health["cache_bytes"] > 0
    by_id = {d["device_id"]: d for d in health["devices"]}
    ort = by_id["host-cpu/onnxruntime"]
    assert ort["measurements"] >= 1 and ort["state"] == "idle"
    assert ort["worker_pid"] > 0 and ort["worker_pid"] != os.getpid()
    os.kill(ort["worker_pid"], 0)  # raises if no such process


def test_openvino_ir_travels_as_one_upload(tmp_path, models):
    """An .xml + .bin IR is packed into one irtar upload and unpacked under fixed names."""
    code = textwrap.dedent(f"""
        import openvino as ov
        ov.save_model(ov.convert_model({str(models['openvino'])!r}), {str(tmp_path / 'net.xml')!r})
    """)
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
    config = AgentConfig(port=0, cache_dir=str(tmp_path / "cache"),
                         devices=(DeviceConfig("ov", "ov-cpu", "openvino", {"device": "CPU"}),))
    with start_agent(config) as running, AgentClient(running.address, token="") as c:
        digest = c.put_model(tmp_path / "net.xml")
        assert c.put_model(tmp_path / "net.xml") == digest  # deterministic packing: same digest
        m = c.profile(digest, "ov", policy=QUICK)
        assert m.runs == 20 and m.runtime == "openvino"
        unpacked = running.agent.cache.get(digest).path
        assert unpacked.name == "model.xml" and unpacked.with_suffix(".bin").is_file()
