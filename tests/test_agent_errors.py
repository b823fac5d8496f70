"""Bad input and failing runtimes, through a real agent: each gets its status, and the agent keeps serving."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time

import grpc
import pytest

from nn_farm import errors
from nn_farm.farm._proto import farm_pb2 as pb
from nn_farm.farm._proto import farm_pb2_grpc as pb_grpc
from nn_farm.farm.agent import start_agent
from nn_farm.farm.client import AgentClient
from nn_farm.farm.devices import AgentConfig, DeviceConfig
from nn_farm.farm.policy import MeasurePolicy
from test_agent import QUICK, make_onnx

ORT = "cpu/ort"
LONG = MeasurePolicy.from_dict({"warmup_runs": 1, "min_runs": 1, "min_s": 60.0, "max_s": 60.0,
                                "speed_gate": {"mode": "off"}, "timeout_s": 120})


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    return make_onnx(tmp_path_factory.mktemp("m") / "net.onnx")


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    devices = (DeviceConfig(ORT, "cpu-ort", "onnxruntime", {"intra_op_threads": 1}),
               DeviceConfig("cpu/npu", "npu", "openvino", {"device": "NPU"}),
               DeviceConfig("cpu/ort-core0", "cpu-ort", "onnxruntime", cpu_affinity=(0,)))
    config = AgentConfig(port=0, cache_dir=str(tmp_path_factory.mktemp("cache")), devices=devices,
                         max_upload_bytes=200_000)
    running = start_agent(config, warm=True)
    yield running
    running.stop()


@pytest.fixture()
def client(agent):
    with AgentClient(agent.address, token="", timeout_s=60) as c:
        yield c


def stub_of(client: AgentClient):
    return pb_grpc.ProfilerStub(client._channel)


def still_serving(client, onnx_model):
    m = client.profile(client.put_model(onnx_model), ORT, policy=QUICK)
    assert m.runs == 20


def worker_pid(client, device_id=ORT) -> int:
    return next(d["worker_pid"] for d in client.health()["devices"] if d["device_id"] == device_id)


def wait_busy(client, device_id=ORT, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = next(d["state"] for d in client.health()["devices"] if d["device_id"] == device_id)
        if state == "busy":
            return
        time.sleep(0.05)
    raise AssertionError(f"{device_id} never became busy")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_model_is_invalid_argument_naming_digest_and_runtime_message(client, onnx_model, damage):
    good = onnx_model.read_bytes()
    data = os.urandom(4096) if damage == "garbage" else good[: len(good) // 2]
    digest = client.put_model(data, format="onnx")
    with pytest.raises(errors.InvalidModel) as info:
        client.profile(digest, ORT, policy=QUICK)
    message = str(info.value)
    assert digest in message
    assert "onnxruntime" in message
    assert info.value.digest == digest and info.value.device_id == ORT
    assert isinstance(info.value.__cause__, grpc.RpcError)
    assert info.value.__cause__.code() == grpc.StatusCode.INVALID_ARGUMENT
    still_serving(client, onnx_model)


def test_unknown_device_and_digest_are_not_found(client, onnx_model):
    digest = client.put_model(onnx_model)
    with pytest.raises(errors.DeviceNotFound) as info:
        client.profile(digest, "no/such-device", policy=QUICK)
    assert "no/such-device" in str(info.value) and info.value.__cause__.code() == grpc.StatusCode.NOT_FOUND
    missing = hashlib.sha256(b"never uploaded").hexdigest()
    with pytest.raises(errors.ModelNotFound) as info:
        client.profile(missing, ORT, policy=QUICK)
    assert missing in str(info.value) and info.value.digest == missing
    assert info.value.__cause__.code() == grpc.StatusCode.NOT_FOUND


def test_oversize_upload_is_resource_exhausted(agent, client):
    big = os.urandom(300_000)
    with pytest.raises(errors.ModelTooLarge) as info:
        client.put_model(big, format="onnx")
    assert info.value.__cause__.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # A client that understates total_size is stopped by the bytes it actually sends.
    digest = hashlib.sha256(big).hexdigest()
    chunks = [pb.ModelChunk(digest=digest, format="onnx", total_size=10, data=big[:150_000]),
              pb.ModelChunk(data=big[150_000:])]
    with pytest.raises(grpc.RpcError) as raw:
        stub_of(client).PutModel(iter(chunks))
    assert raw.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert not client.has_model(digest)
    assert not [p for p in agent.agent.cache.root.iterdir() if p.name.startswith(".tmp-")]


def test_bytes_that_do_not_match_the_digest_are_rejected(agent, client):
    data = b"\x08" + os.urandom(1000)
    claimed = hashlib.sha256(b"something else").hexdigest()
    chunks = [pb.ModelChunk(digest=claimed, format="onnx", total_size=len(data), data=data)]
    with pytest.raises(grpc.RpcError) as raw:
        stub_of(client).PutModel(iter(chunks))
    assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert claimed in raw.value.details()
    assert not client.has_model(claimed)
    assert not client.has_model(hashlib.sha256(data).hexdigest())


def test_crash_inside_runtime_is_internal_and_agent_survives(client, onnx_model):
    digest = client.put_model(onnx_model)
    client.profile(digest, ORT, policy=QUICK)  # worker up and warm
    failure: list[BaseException] = []

    def measure():
        try:
            client.profile(digest, ORT, policy=LONG)
        except BaseException as exc:  # collected for the assertions below
            failure.append(exc)

    thread = threading.Thread(target=measure)
    thread.start()
    wait_busy(client)
    pid = worker_pid(client)
    os.kill(pid, signal.SIGSEGV)
    thread.join(60)
    assert len(failure) == 1 and isinstance(failure[0], errors.DeviceCrashed), failure
    assert "SIGSEGV" in str(failure[0]) and failure[0].device_id == ORT and failure[0].digest == digest
    assert failure[0].__cause__.code() == grpc.StatusCode.INTERNAL
    still_serving(client, onnx_model)
    assert worker_pid(client) not in (0, pid)
    health = next(d for d in client.health()["devices"] if d["device_id"] == ORT)
    assert health["failures"] >= 1


def test_hang_past_the_timeout_is_deadline_exceeded_and_agent_survives(client, onnx_model):
    digest = client.put_model(onnx_model)
    client.profile(digest, ORT, policy=QUICK)
    failure: list[BaseException] = []
    hanging = LONG.replace(timeout_s=3.0)

    def measure():
        try:
            client.profile(digest, ORT, policy=hanging)
        except BaseException as exc:  # collected for the assertions below
            failure.append(exc)

    thread = threading.Thread(target=measure)
    thread.start()
    wait_busy(client)
    pid = worker_pid(client)
    os.kill(pid, signal.SIGSTOP)  # a real hang: the process stops answering
    thread.join(60)
    assert len(failure) == 1 and isinstance(failure[0], errors.DeviceTimeout), failure
    assert "timeout" in str(failure[0]) and failure[0].digest == digest
    assert failure[0].__cause__.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the hung worker was killed, not left behind
    still_serving(client, onnx_model)


def test_missing_device_is_listed_with_reason_and_failed_precondition(client, onnx_model):
    npu = next(d for d in client.list_devices() if d.id == "cpu/npu")
    assert not npu.available and "NPU" in npu.unavailable_reason
    with pytest.raises(errors.DeviceUnavailable) as info:
        client.profile(client.put_model(onnx_model), "cpu/npu", policy=QUICK)
    assert "NPU" in str(info.value) and info.value.__cause__.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_model_of_the_wrong_format_for_the_device(client):
    digest = client.put_model(b"not really tflite", format="tflite")
    with pytest.raises(errors.InvalidModel, match="tflite"):
        client.profile(digest, ORT, policy=QUICK)


def test_bad_policy_and_bad_input_shape(client, onnx_model):
    digest = client.put_model(onnx_model)
    request = pb.ProfileRequest(model_digest=digest, device_id=ORT,
                                policy=pb.MeasurePolicy(trim_fraction=0.7))
    with pytest.raises(grpc.RpcError) as raw:
        stub_of(client).Profile(request)
    assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "trim_fraction" in raw.value.details()
    from nn_farm.farm.tensors import TensorSpec

    with pytest.raises(errors.InvalidModel, match="nope"):
        client.profile(digest, ORT, inputs=[TensorSpec("nope", (1, 3, 16, 16))], policy=QUICK)
    still_serving(client, onnx_model)


def test_device_cpu_affinity_pins_the_measurement(client, onnx_model):
    digest = client.put_model(onnx_model)
    m = client.profile(digest, "cpu/ort-core0", policy=QUICK)
    assert m.device["cpu_affinity"] == [0] and m.policy.cpu_affinity == (0,)
    # The agent memoises policies read off the wire: the same policy on an unpinned device stays unpinned.
    assert client.profile(digest, ORT, policy=QUICK).policy.cpu_affinity == ()
    if len(os.sched_getaffinity(0)) > 1:
        other = max(os.sched_getaffinity(0))
        m = client.profile(digest, "cpu/ort-core0", policy=QUICK.replace(cpu_affinity=(other,)))
        assert m.device["cpu_affinity"] == [other]  # a policy's own affinity wins
    with pytest.raises(errors.PolicyError, match="cpu_affinity"):
        client.profile(digest, "cpu/ort-core0", policy=QUICK.replace(cpu_affinity=(4096,)))


def test_an_agent_that_is_gone_is_agent_unavailable(tmp_path):
    config = AgentConfig(port=0, cache_dir=str(tmp_path), devices=(DeviceConfig("x", "x", "onnxruntime"),))
    running = start_agent(config)
    address = running.address
    running.stop()
    with AgentClient(address, token="", timeout_s=10) as c:
        with pytest.raises(errors.AgentUnavailable, match=address):
            c.list_devices()
        with pytest.raises(errors.AgentUnavailable):
            c.profile(hashlib.sha256(b"m").hexdigest(), "x")


def test_a_worker_killed_while_idle_is_replaced_without_losing_a_job(client, onnx_model):
    still_serving(client, onnx_model)
    pid = worker_pid(client)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while worker_pid(client) == pid and time.monotonic() < deadline:
        time.sleep(0.05)  # until the agent notices the process is gone
    still_serving(client, onnx_model)
    assert worker_pid(client) not in (0, pid)
