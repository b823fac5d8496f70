"""How the farm's scheduler scales: N jobs on 1, 4, 16 and 32 devices.

Real parts: agents run as `nn-farm agent` subprocesses (8 devices each), one Ray
actor per device, the real scheduler and result store. Only the devices are
fake: they use the SIMULATED runtime, whose "model" is a JSON file naming a
latency and whose runs sleep (nn_farm/farm/runtimes/simulated.py). Each job's
latency comes from a cost model of sampled kernels: lognormal around
``--median-ms`` (sigma 0.8, clipped to [0.2, 40] ms), ``--runs`` timed runs per job
(30, the default policy's min_runs: about 0.2 s of device time per job; a real
default-policy job takes 0.5 s or more, so this is the harder case).

For each device count, after a short warm-up (actors and agent workers up), it
prints:
- efficiency = total device time / devices / wall time, where device time is
  the sum of each measurement's own span (started -> finished, on the agent);
- overhead_ms_per_job = the driver's CPU time per job (the scheduler's own cost);
- idle_ms_per_job = (devices x wall - device time) / jobs: device time lost to
  everything between measurements (scheduler, Ray, gRPC, the agent).
The last line is one JSON object with every figure.

    .venv/bin/python benchmarks/farm_scaling.py                 # 5,000 jobs (about 25 min, 17 of them on 1 device)
    .venv/bin/python benchmarks/farm_scaling.py --jobs 400 --devices 1 4 16
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

DEVICES_PER_AGENT = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_agents(n_devices: int, workdir: pathlib.Path) -> list[tuple[subprocess.Popen, str]]:
    """Start ceil(n / 8) agent subprocesses serving n simulated devices in all."""
    agents = []
    for a in range(math.ceil(n_devices / DEVICES_PER_AGENT)):
        count = min(DEVICES_PER_AGENT, n_devices - a * DEVICES_PER_AGENT)
        port = free_port()
        devices = "\n".join(f"  - {{id: sim{a}-{i}, device_class: simulated, runtime: simulated}}"
                            for i in range(count))
        config = workdir / f"agent{a}.yaml"
        config.write_text(f"agent: {{host: 127.0.0.1, port: {port}, cache_dir: {workdir}/cache{a}}}\n"
                          f"devices:\n{devices}\n")
        proc = subprocess.Popen([sys.executable, "-m", "nn_farm.cli", "agent", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=open(workdir / f"agent{a}.log", "w"))
        agents.append((proc, f"127.0.0.1:{port}"))
    from nn_farm.farm.client import AgentClient

    for proc, address in agents:
        deadline = time.monotonic() + 120
        while True:
            try:
                with AgentClient(address, timeout_s=2) as c:
                    c.list_devices()
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"agent {address} did not start; see {workdir}")
                time.sleep(0.3)
    return agents


def jobs_for(n: int, median_ms: float, seed: int, prefix: str):
    from nn_farm.actors import Job

    rng = np.random.default_rng(seed)
    lat = np.clip(rng.lognormal(math.log(median_ms), 0.8, n), 0.2, 40.0)
    return [Job(name=f"{prefix}{i}", format="json", group="simulated",
                data=json.dumps({"simulated_latency_ms": round(float(x), 4), "jitter": 0.05,
                                 "job": f"{prefix}{i}"}).encode()) for i, x in enumerate(lat)]


def run_one(n_devices: int, n_jobs: int, args, workdir: pathlib.Path) -> dict:
    from nn_farm.actors import AgentEntry, Farm, FarmConfig
    from nn_farm.farm.policy import MeasurePolicy, SpeedGate

    policy = MeasurePolicy(warmup_runs=1, warmup_s=0.001, runs_exact=args.runs, min_runs=1, min_s=0.001,
                           speed_gate=SpeedGate(mode="off"))
    agents = start_agents(n_devices, workdir)
    try:
        config = FarmConfig(agents=tuple(AgentEntry(addr) for _, addr in agents),
                            store=str(workdir / f"results-{n_devices}.db"))
        with Farm(config, progress=args.progress, calibrate=False) as farm:
            farm.profile(jobs_for(n_devices * 3, args.median_ms, 1, f"warm{n_devices}-"), policy=policy)
            jobs = jobs_for(n_jobs, args.median_ms, 2, f"job{n_devices}-")
            cpu0, t0 = time.process_time(), time.perf_counter()
            results = farm.profile(jobs, policy=policy)
            wall = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
    finally:
        for proc, _ in agents:
            proc.terminate()
        for proc, _ in agents:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    ok = [r for r in results if r.ok]
    device_s = sum(r.measurement.finished_unix_s - r.measurement.started_unix_s for r in ok)
    per_device = {}
    for r in ok:
        per_device[r.device_id] = per_device.get(r.device_id, 0) + 1
    return {
        "devices": n_devices, "jobs": n_jobs, "failed": len(results) - len(ok),
        "wall_s": round(wall, 3), "device_s": round(device_s, 3),
        "efficiency": round(device_s / n_devices / wall, 4),
        "overhead_ms_per_job": round(1000 * cpu / n_jobs, 3),
        "idle_ms_per_job": round(1000 * (n_devices * wall - device_s) / n_jobs, 3),
        "jobs_per_s": round(n_jobs / wall, 2),
        "device_job_spread": [min(per_device.values()), max(per_device.values())] if per_device else [],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--median-ms", type=float, default=5.0, help="median simulated kernel latency (ms)")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per job (30: the default policy's min_runs)")
    parser.add_argument("--progress", action="store_true", help="show the progress bars")
    args = parser.parse_args()

    from nn_farm.actors.ray_init import init_ray

    init_ray(num_cpus=os.cpu_count())
    rows = []
    with tempfile.TemporaryDirectory(prefix="farm-scaling-") as tmp:
        for n in args.devices:
            workdir = pathlib.Path(tmp) / f"d{n}"
            workdir.mkdir()
            row = run_one(n, args.jobs, args, workdir)
            rows.append(row)
            print(f"{n:>3} device(s): {row['jobs']} jobs in {row['wall_s']:.1f} s, efficiency "
                  f"{row['efficiency']:.3f}, scheduler CPU {row['overhead_ms_per_job']:.2f} ms/job, "
                  f"device idle {row['idle_ms_per_job']:.2f} ms/job, jobs per device "
                  f"{row['device_job_spread']}", flush=True)
    by = {r["devices"]: r for r in rows}
    summary = {
        "benchmark": "farm_scaling", "jobs": args.jobs, "median_ms": args.median_ms, "runs": args.runs,
        "cpus": os.cpu_count(), "results": rows,
        "max_overhead_ms_per_job": max(r["overhead_ms_per_job"] for r in rows),
        "targets": {"overhead_ms_per_job_below": 5.0, "efficiency_16_at_least": 0.9,
                    "efficiency_32_at_least": 0.8},
        "met": {
            "overhead": max(r["overhead_ms_per_job"] for r in rows) < 5.0,
            "efficiency_16": by[16]["efficiency"] >= 0.9 if 16 in by else None,
            "efficiency_32": by[32]["efficiency"] >= 0.8 if 32 in by else None,
        },
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
