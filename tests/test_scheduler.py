"""The farm on a real local multi-node Ray cluster, with real agents and onnxruntime.

One cluster for the module: a head and two worker nodes, each worker declaring
its own resource; one in-process agent per worker node serving ONE host core
(cores 0 and 1) as a device of the same class.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from nn_farm import errors
from nn_farm.actors import AgentEntry, ErrorKind, Farm, FarmConfig, Job, ResultStore
from nn_farm.farm.policy import MeasurePolicy, SpeedGate
from ray_cluster import local_cluster, onnx_agent, tiny_onnx_bytes, tiny_onnx_models

# Short and ungated: a job is a handful of runs of a tiny model.
FAST = MeasurePolicy(warmup_runs=1, warmup_s=0.001, runs_exact=5, min_runs=1, min_s=0.001,
                     speed_gate=SpeedGate(mode="off"))
CLASS = "test-cpu-onnxruntime"


@pytest.fixture(scope="module")
def farm_cluster(tmp_path_factory):
    import ray.cloudpickle

    import ray_cluster

    # Workers cannot import the tests package: ship the generator jobs by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.cloudpickle.register_pickle_by_value(ray_cluster)
    cache = tmp_path_factory.mktemp("agents")
    with local_cluster(("nnfarm_node_a", "nnfarm_node_b")) as cluster:
        a = onnx_agent(cache / "a", 0, device_class=CLASS)
        b = onnx_agent(cache / "b", 1, device_class=CLASS)
        cluster.agents = {"nnfarm_node_a": a, "nnfarm_node_b": b}
        try:
            yield cluster
        finally:
            a.stop()
            b.stop()


def _config(cluster, store) -> FarmConfig:
    return FarmConfig(agents=tuple(AgentEntry(agent.address, node_resource=res)
                                   for res, agent in cluster.agents.items()), store=str(store))


def _measurements(agent) -> int:
    return sum(slot.measurements for slot in agent.agent.slots.values())


def test_200_models_across_both_devices(farm_cluster, tmp_path):
    import ray

    models = tiny_onnx_models(tmp_path / "models", 200)
    with Farm(_config(farm_cluster, tmp_path / "r.db"), progress=False) as farm:
        results = farm.profile(models, device_class=CLASS, policy=FAST)
        # Each device actor sits on the node of its agent's host.
        nodes = {d.agent.node_resource: ray.get(d.actor.node_id.remote()) for d in farm.devices()}
        expected = {res: node.node_id for res, node in farm_cluster.workers.items()}
        assert nodes == expected
        rows = farm.store.rows()
        calibrations = farm.store.rows("calibrations")

    assert [r.job_name for r in results] == [m.name for m in models]
    # Each device ran the reference model before its first job, and the store keeps its speed factor.
    assert {c["device_id"] for c in calibrations} == {"core0/onnxruntime", "core1/onnxruntime"}
    assert all(c["latency_ms"] > 0 and c["speed_factor"] > 0 for c in calibrations)
    bad = [(r.job_name, r.error) for r in results if not r.ok]
    assert not bad
    by_device = collections.Counter(r.device_id for r in results)
    assert set(by_device) == {"core0/onnxruntime", "core1/onnxruntime"}
    assert min(by_device.values()) > 0
    assert len(rows) == 200 and len({r["model_digest"] for r in rows}) == 200
    m = results[0].measurement
    assert m.runs == 5 and len(m.samples_ms) == 5 and m.mean_ms > 0
    assert m.device_class == CLASS and m.runtime == "onnxruntime"


def test_corrupt_model_fails_with_its_message_and_the_rest_complete(farm_cluster, tmp_path):
    models = tiny_onnx_models(tmp_path / "models", 20)
    corrupt = tmp_path / "models" / "corrupt.onnx"
    corrupt.write_bytes(models[3].read_bytes()[:40])  # a truncated protobuf
    jobs = models[:10] + [corrupt] + models[10:]
    with Farm(_config(farm_cluster, tmp_path / "r.db"), progress=False) as farm:
        results = farm.profile(jobs, device_class=CLASS, policy=FAST)
        failures = farm.store.rows("failures")

    bad = [r for r in results if not r.ok]
    assert [r.job_name for r in bad] == ["corrupt.onnx"]
    assert bad[0].error_kind == ErrorKind.INVALID_MODEL
    assert bad[0].model_digest[:12] in bad[0].error or bad[0].model_digest in bad[0].error
    assert bad[0].attempts == 1  # a bad model is not retried on the other device
    assert [f["job_name"] for f in failures] == ["corrupt.onnx"] and failures[0]["final"] == 1
    assert sum(r.ok for r in results) == 20


def test_generator_jobs_run_as_ray_tasks_and_failures_are_data(farm_cluster, tmp_path):
    jobs = [Job(name=f"gen{i}", generate=_Gen(i), format="onnx", group="matmul") for i in range(6)]
    jobs.append(Job(name="gen-broken", generate=_Broken(), format="onnx"))
    with Farm(_config(farm_cluster, tmp_path / "r.db"), progress=False, calibrate=False) as farm:
        results = list(farm.profile(jobs, device_class=CLASS, policy=FAST, stream=True))
        exported = farm.store.export_nnmeter(tmp_path / "profiled.json")
        again = farm.profile(jobs, device_class=CLASS, policy=FAST)

    done = {r.job_name: r for r in results}
    assert set(done) == {j.name for j in jobs}
    assert done["gen-broken"].error_kind == ErrorKind.GENERATION_ERROR
    assert "no such kernel: broken on purpose" in done["gen-broken"].error
    assert all(done[f"gen{i}"].ok for i in range(6))
    assert sorted(exported["matmul"]) == [f"gen{i}" for i in range(6)]
    assert " +- " in exported["matmul"]["gen0"]["latency"]
    # The rerun finds every generator job by name: nothing generated or measured again.
    assert all(r.skipped for r in again)


def test_one_model_under_many_names_is_measured_once_per_call(farm_cluster, tmp_path):
    """Test cases share models (a rule test's relu, say): each model is measured once
    and every job naming it gets that measurement, as a rerun would find it stored."""
    models = tiny_onnx_models(tmp_path / "models", 3)
    copies = []
    for i in range(4):
        copy = tmp_path / "models" / f"copy{i}.onnx"
        copy.write_bytes(models[0].read_bytes())
        copies.append(copy)
    gens = [Job(name=f"gen-same{i}", generate=_Gen(7), format="onnx") for i in range(3)]
    a, b = farm_cluster.agents.values()
    before = _measurements(a) + _measurements(b)
    with Farm(_config(farm_cluster, tmp_path / "r.db"), progress=False, calibrate=False) as farm:
        results = farm.profile(models + copies + gens, device_class=CLASS, policy=FAST)
        again = farm.profile(models + copies + gens, device_class=CLASS, policy=FAST)

    assert all(r.ok for r in results) and len(results) == 10
    assert _measurements(a) + _measurements(b) - before == 4  # three files and one generated model
    first = {r.job_name: r for r in results}
    same = [first[m.name] for m in models[:1] + copies]
    assert len({r.measurement.started_unix_s for r in same}) == 1
    assert [r.skipped for r in same] == [False, True, True, True, True]
    assert len({tuple(first[j.name].measurement.samples_ms) for j in gens}) == 1
    assert [r.measurement.samples_ms for r in again] == [r.measurement.samples_ms for r in results]


def test_cli_profiles_a_directory_then_shows_status(farm_cluster, tmp_path):
    import json

    tiny_onnx_models(tmp_path / "models", 6, prefix="cli")
    farm_yaml = tmp_path / "farm.yaml"
    farm_yaml.write_text("store: results.db\nagents:\n" + "".join(
        f"  - {{address: '{agent.address}', node_resource: {res}}}\n" for res, agent in farm_cluster.agents.items()))
    cli = [sys.executable, "-m", "nn_farm.cli", "farm"]
    run = subprocess.run(cli + ["profile", "--config", str(farm_yaml), str(tmp_path / "models"), "--runs", "5",
                                "--no-gate", "--ray-address", farm_cluster.address,
                                "--export", str(tmp_path / "profiled.json")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert sum(" ms on core" in line for line in run.stdout.splitlines()) == 6
    exported = json.loads((tmp_path / "profiled.json").read_text())
    assert sorted(exported["models"]) == [f"cli{i:04d}.onnx" for i in range(6)]

    status = subprocess.run(cli + ["status", "--config", str(farm_yaml), "--json"],
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr[-2000:]
    report = json.loads(status.stdout)
    devices = {d["device_id"]: d for d in report["devices"]}
    assert set(devices) == {"core0/onnxruntime", "core1/onnxruntime"}
    assert sum(d["results"] for d in devices.values()) == 6
    assert all(d["state"] in ("idle", "busy") and d["measurements"] > 0 for d in devices.values())
    assert report["classes"][CLASS]["devices"] == 2


def test_tls_agent_with_token_from_farm_yaml(farm_cluster, tmp_path):
    from nn_farm.actors import load_farm_config
    from nn_farm.farm.agent import start_agent
    from nn_farm.farm.devices import AgentConfig, DeviceConfig
    from test_agent_security import self_signed

    cert, key = self_signed(tmp_path, "agent")
    device = DeviceConfig("tls/core1", CLASS, "onnxruntime", options={"intra_op_threads": 1}, cpu_affinity=(1,))
    agent = start_agent(AgentConfig(port=0, cache_dir=str(tmp_path / "cache"), devices=(device,),
                                    token="tls-token", tls_cert=str(cert), tls_key=str(key)))
    try:
        (tmp_path / "token").write_text("tls-token\n")
        (tmp_path / "farm.yaml").write_text(
            f"store: r.db\nagents:\n  - {{address: '{agent.address}', token_file: token, root_cert: agent.crt}}\n")
        with Farm(load_farm_config(tmp_path / "farm.yaml"), progress=False, calibrate=False) as farm:
            results = farm.profile(tiny_onnx_models(tmp_path / "models", 4), policy=FAST)
    finally:
        agent.stop()
    assert all(r.ok and r.device_id == "tls/core1" for r in results), [r.error for r in results]


def test_one_laptop_local_ray_and_a_loopback_agent(tmp_path):
    """No cluster: `nn-farm farm profile` starts its own local Ray (in a subprocess,
    since this process is joined to the test cluster) and stops it on exit."""
    agent = onnx_agent(tmp_path / "cache", 0, device_class="laptop-cpu")
    try:
        tiny_onnx_models(tmp_path / "models", 3)
        (tmp_path / "farm.yaml").write_text(f"store: r.db\nagents: [{{address: '{agent.address}'}}]\n")
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_TMPDIR")}
        run = subprocess.run([sys.executable, "-m", "nn_farm.cli", "farm", "profile", "--config",
                              str(tmp_path / "farm.yaml"), str(tmp_path / "models"), "--runs", "3", "--no-gate"],
                             capture_output=True, text=True, timeout=300, env=env)
    finally:
        agent.stop()
    assert run.returncode == 0, run.stderr[-2000:]
    assert sum(" ms on core0/onnxruntime" in line for line in run.stdout.splitlines()) == 3
    with ResultStore(tmp_path / "r.db") as store:
        assert store.count() == 3


def test_agent_refusing_the_token_gives_a_clear_error(tmp_path):
    agent = onnx_agent(tmp_path / "cache", 0, token="right-token")
    try:
        config = FarmConfig(agents=(AgentEntry(agent.address, token="wrong-token"),), store=str(tmp_path / "r.db"))
        with Farm(config, progress=False) as farm:
            with pytest.raises(errors.AuthenticationError, match=f"agent {agent.address} refused our token"):
                farm.profile([tmp_path / "x.onnx"], policy=FAST)
    finally:
        agent.stop()


def test_worker_node_killed_mid_run_every_job_ends_exactly_once(farm_cluster, tmp_path):
    import ray

    farm_cluster.add_worker("nnfarm_node_c")
    c = onnx_agent(tmp_path / "c", 0, device_class=CLASS, device_id="nodec/onnxruntime")
    try:
        agents = tuple(AgentEntry(agent.address, node_resource=res) for res, agent in farm_cluster.agents.items())
        config = FarmConfig(agents=agents + (AgentEntry(c.address, node_resource="nnfarm_node_c"),),
                            store=str(tmp_path / "r.db"))
        models = tiny_onnx_models(tmp_path / "models", 120)
        seen, killed_at = [], None
        with Farm(config, progress=False, calibrate=False, batch_s=0.2) as farm:
            farm.start()  # the new node's actor is up before the run, not after most of it
            for r in farm.profile(models, device_class=CLASS, policy=FAST, stream=True):
                seen.append(r)
                if killed_at is None and sum(x.device_id == "nodec/onnxruntime" for x in seen) >= 5:
                    # The host dies: its Ray node and every process on it, the device actor included.
                    (dev_c,) = [d for d in farm.devices() if d.id == "nodec/onnxruntime"]
                    actor_pid = ray.get(dev_c.actor.pid.remote())
                    farm_cluster.kill_worker("nnfarm_node_c")
                    _kill_if_alive(actor_pid)
                    killed_at = len(seen)
            store_rows = farm.store.rows()
            with pytest.raises(ray.exceptions.RayError):
                ray.get(dev_c.actor.ping.remote(), timeout=60)
            # Jobs it held when it died (if any: a call already running may still
            # have answered) were retired with it and measured elsewhere.
            assert dev_c.alive is False or not any(
                f["device_id"] == "nodec/onnxruntime" for f in farm.store.rows("failures"))
    finally:
        c.stop()

    assert killed_at is not None and killed_at < 100  # the node died mid-run, 20+ jobs still to go
    assert sorted(r.job_name for r in seen) == sorted(m.name for m in models)
    assert all(r.ok for r in seen), [r.error for r in seen if not r.ok]
    assert sorted(r["job_name"] for r in store_rows) == sorted(m.name for m in models)
    assert collections.Counter(r.device_id for r in seen)["nodec/onnxruntime"] >= 5


_DRIVER = textwrap.dedent("""
    import sys
    from nn_farm.actors import AgentEntry, Farm, FarmConfig
    from nn_farm.farm.policy import MeasurePolicy, SpeedGate

    address, store, models_dir, agent_a, agent_b = sys.argv[1:6]
    import pathlib
    models = sorted(pathlib.Path(models_dir).glob("*.onnx"))
    policy = MeasurePolicy(warmup_runs=1, warmup_s=0.001, runs_exact=5, min_runs=1, min_s=0.001,
                           speed_gate=SpeedGate(mode="off"))
    config = FarmConfig(agents=(AgentEntry(agent_a, node_resource="nnfarm_node_a"),
                                AgentEntry(agent_b, node_resource="nnfarm_node_b")), store=store)
    farm = Farm(config, ray_address=address, progress=False, calibrate=False, batch_s=0.1)
    for r in farm.profile(models, policy=policy, stream=True):
        print(r.job_name, flush=True)
""")


def _settled(agents, quiet_s: float = 1.5, limit_s: float = 60.0) -> int:
    """Total measurements on the agents once the count stops moving."""
    deadline = time.monotonic() + limit_s
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = sum(_measurements(a) for a in agents)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > quiet_s:
            return now
        time.sleep(0.2)
    return last


def test_driver_killed_and_restarted_does_not_measure_finished_jobs_again(farm_cluster, tmp_path):
    agents = list(farm_cluster.agents.values())
    models = tiny_onnx_models(tmp_path / "models", 150)
    store_path = tmp_path / "r.db"
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER)
    a, b = (farm_cluster.agents[k].address for k in ("nnfarm_node_a", "nnfarm_node_b"))
    proc = subprocess.Popen([sys.executable, str(script), farm_cluster.address, str(store_path),
                             str(tmp_path / "models"), a, b],
                            cwd=os.path.dirname(os.path.dirname(__file__)), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        printed = 0
        for _ in proc.stdout:
            printed += 1
            if printed >= 40:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert printed >= 40, "the driver died before it profiled anything"

    measured_before = _settled(agents)
    with ResultStore(store_path) as store:
        before = {r["job_name"]: r["created_unix_s"] for r in store.rows()}
    assert 40 <= len(before) < 150

    config = _config(farm_cluster, store_path)
    with Farm(config, progress=False, calibrate=False) as farm:
        results = farm.profile(models, policy=FAST)
        after = {r["job_name"]: r["created_unix_s"] for r in farm.store.rows()}
    measured_after = sum(_measurements(x) for x in agents)

    assert all(r.ok for r in results)
    assert {r.job_name for r in results if r.skipped} == set(before)
    assert sorted(after) == sorted(m.name for m in models)
    assert all(after[name] == t for name, t in before.items())  # finished rows untouched
    # The agents measured exactly the jobs that were not finished: none twice.
    assert measured_after - measured_before == 150 - len(before)


def _kill_if_alive(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class _Gen:
    """A picklable generator job: builds the i-th tiny model (as a builder would)."""

    def __init__(self, i: int):
        self.i = i

    def __call__(self):
        return tiny_onnx_bytes(1000 + self.i), "onnx"


class _Broken:
    def __call__(self):
        raise ValueError("no such kernel: broken on purpose")
