"""DeviceWorker (the plain class under each device actor) against a real agent on loopback."""

from __future__ import annotations

import pytest

from nn_farm.actors import DeviceWorker, ErrorKind
from nn_farm.actors.jobs import digest_of
from nn_farm.farm.policy import MeasurePolicy, SpeedGate
from ray_cluster import onnx_agent, tiny_onnx_bytes

FAST = MeasurePolicy(warmup_runs=1, warmup_s=0.001, runs_exact=4, min_runs=1, min_s=0.001,
                     speed_gate=SpeedGate(mode="off")).to_dict()


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    running = onnx_agent(tmp_path_factory.mktemp("cache"), 0, token="tok")
    yield running
    running.stop()


def _item(i: int, index: int | None = None, data: bytes | None = None) -> dict:
    data = data if data is not None else tiny_onnx_bytes(i)
    return {"index": i if index is None else index, "digest": digest_of(data), "format": "onnx", "data": data}


def test_batch_measures_each_model_and_uploads_once(agent):
    worker = DeviceWorker(agent.address, "core0/onnxruntime", token="tok")
    fetched = []

    def lazy(i):
        def load():
            fetched.append(i)
            return tiny_onnx_bytes(i)
        return load

    items = [{**_item(i), "data": lazy(i)} for i in range(3)]
    out = worker.run_batch(items, FAST)
    assert [o["index"] for o in out] == [0, 1, 2]
    assert all(o["ok"] for o in out), [o["error"] for o in out]
    m = out[0]["measurement"]
    assert m.model_digest == items[0]["digest"] and len(m.samples_ms) == 4 and m.mean_ms > 0
    assert m.device["cpu_affinity"] == [0]
    # Again: the worker knows the agent has them, so no bytes are fetched.
    again = worker.run_batch([{**_item(i), "data": lazy(i)} for i in range(3)], FAST)
    assert all(o["ok"] for o in again) and fetched == [0, 1, 2]
    health = worker.health()
    assert health["jobs"] == 6 and health["state"] == "ok" and health["device_s"] > 0
    worker.close()


def test_bad_model_is_data_not_an_exception(agent):
    worker = DeviceWorker(agent.address, "core0/onnxruntime", token="tok")
    junk = b"\x08\x07this is not an onnx model"
    out = worker.run_batch([_item(0, index=7, data=junk), _item(5, index=8)], FAST)
    assert out[0]["ok"] is False and out[0]["error_kind"] == ErrorKind.INVALID_MODEL
    assert "InvalidModel" in out[0]["error"] and digest_of(junk) in out[0]["error"]
    assert out[1]["ok"]  # the batch goes on
    worker.close()


def test_wrong_token_and_unknown_device_are_device_side_errors(agent):
    bad = DeviceWorker(agent.address, "core0/onnxruntime", token="nope")
    out = bad.run_batch([_item(1)], FAST)
    assert out[0]["error_kind"] == ErrorKind.AUTHENTICATION and ErrorKind.AUTHENTICATION.retryable
    ghost = DeviceWorker(agent.address, "no-such-device", token="tok")
    out = ghost.run_batch([_item(1)], FAST)
    assert out[0]["error_kind"] == ErrorKind.DEVICE_UNAVAILABLE and "no-such-device" in out[0]["error"]


def test_unreachable_agent_backs_off_then_gives_up_on_the_batch():
    # Port 1 on loopback: nothing listens there.
    worker = DeviceWorker("127.0.0.1:1", "d", reconnect_attempts=3, backoff_s=0.01)
    out = worker.run_batch([_item(1, index=0), _item(2, index=1)], FAST)
    assert out[0]["error_kind"] == ErrorKind.AGENT_UNAVAILABLE and out[0]["attempted"]
    assert out[1]["error_kind"] == ErrorKind.AGENT_UNAVAILABLE and not out[1]["attempted"]
    health = worker.health()
    assert health["state"] == "unreachable" and health["reconnects"] == 2


def test_reconnects_when_the_agent_comes_back(tmp_path):
    first = onnx_agent(tmp_path / "c1", 0)
    port = first.port
    worker = DeviceWorker(first.address, "core0/onnxruntime", reconnect_attempts=40, backoff_s=0.05,
                          max_backoff_s=0.2)
    assert worker.run_batch([_item(3)], FAST)[0]["ok"]
    first.stop()
    from nn_farm.farm.agent import start_agent

    # The agent restarts on the same port, with an empty cache.
    config = first.agent.config.replace(port=port, cache_dir=str(tmp_path / "c2"))
    second = start_agent(config)
    try:
        out = worker.run_batch([_item(3)], FAST)
        assert out[0]["ok"], out[0]["error"]
        assert second.agent.cache.has(_item(3)["digest"])  # uploaded again after the restart
    finally:
        second.stop()
        worker.close()


def test_public_names_are_honest_and_importing_them_is_light():
    import subprocess
    import sys

    import nn_farm.actors as actors

    for name in actors.__all__:
        assert getattr(actors, name) is not None, name
    # Importing the package and its CLI must not pull in Ray, gRPC or the runtimes.
    code = ("import sys, nn_farm.actors, nn_farm.actors.cli; "
            "heavy = [m for m in ('ray', 'grpc', 'torch', 'tensorflow', 'onnxruntime') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
