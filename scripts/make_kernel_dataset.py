#!/usr/bin/env python
"""Measure a small REAL kernel dataset on this host, for the training tests.

    sample_kernel_configs (model-zoo priors) -> build_and_convert (torch -> .onnx)
    -> measure_file("onnxruntime", one thread, pinned to one core, speed-gated)
    -> write_configs / write_profiled  (nn-Meter's kernel-data files)

Kernels: conv-bn-relu, dwconv-bn-relu and relu (about 150 in all). The configs
come from the shipped priors, limited to inputs of at most ``MAX_HW`` pixels a side
so each kernel measures in well under a second. The files land in
``tests/data/kernels_host_cpu_onnxruntime/`` in a workspace's ``results`` layout:

    <kernel>_prior.json       {kernel: {id: {"model", "shapes", "config"}}}
    profiled_<kernel>.json    {kernel: {id: {"latency": "<mean> +- <std>"}}}
    host.json                 the host, runtime and policy the latencies were measured with

The committed dataset was made with this script on 2026-12-04 on the 2-core
development VM (shared with other jobs; measurements are speed-gated), ONNX Runtime
1.31.1, one intra-op thread, core 1. Model files are not kept (the JSON names them
by file name only).

Usage:
    .venv/bin/python scripts/make_kernel_dataset.py [OUT_DIR] [--core N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "tests/data/kernels_host_cpu_onnxruntime"
MAX_HW = 56
PLAN = {"conv-bn-relu": 60, "dwconv-bn-relu": 50, "relu": 40}
SEED = 20261204


def configs_for(kernel_type: str, n: int) -> list[dict]:
    """``n`` prior-sampled configs with HW <= MAX_HW (sampled in surplus, then filtered)."""
    from nn_farm.builder.sampling import sample_kernel_configs

    pool = sample_kernel_configs(kernel_type, 8 * n, seed=SEED)
    small = [c for c in pool if c["HW"] <= MAX_HW]
    return [{k: int(v) for k, v in c.items()} for c in small[:n]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("out", nargs="?", default=str(DEFAULT_OUT))
    parser.add_argument("--core", type=int, default=1, help="host core to measure on")
    args = parser.parse_args(argv)

    from nn_farm.builder.convert import build_and_convert
    from nn_farm.builder.kernel_data import new_ids, write_configs, write_profiled
    from nn_farm.farm.measure import host_identity, measure_file
    from nn_farm.farm.policy import DEFAULT_POLICY

    out = Path(args.out)
    # write_configs / write_profiled take a workspace; point its results dir at OUT.
    staging = Path(tempfile.mkdtemp(prefix="kernel-dataset-"))
    results = staging / "predictor_build" / "results"
    policy = replace(DEFAULT_POLICY, cpu_affinity=(args.core,))
    options = {"intra_op_threads": 1}
    started = time.time()
    try:
        for kernel_type, n in PLAN.items():
            configs = configs_for(kernel_type, n)
            ids = new_ids(len(configs))
            kernels, profiled = {}, {}
            for rid, config in tqdm(list(zip(ids, configs)), desc=kernel_type, unit="kernel"):
                path = build_and_convert("kernel", kernel_type, config, "torch", "onnx",
                                         staging / "kernels")
                m = measure_file("onnxruntime", path, policy=policy, options=options)
                kernels[rid] = {"model": Path(path).name, "config": config}
                profiled[rid] = {"latency": (m.mean_ms, m.std_ms), "speed_state": m.speed_state,
                                 "kept_runs": m.kept_runs}
            write_configs(staging, kernel_type, "prior", kernels)
            write_profiled(staging, kernel_type, profiled)
        out.mkdir(parents=True, exist_ok=True)
        for f in results.glob("*.json"):
            shutil.copy(f, out / f.name)
        import onnxruntime

        (out / "host.json").write_text(json.dumps({
            "made_by": "scripts/make_kernel_dataset.py",
            "made_unix_s": int(started),
            "host": host_identity(),
            "runtime": "onnxruntime",
            "runtime_version": onnxruntime.__version__,
            "options": options,
            "core": args.core,
            "seed": SEED,
            "plan": PLAN,
            "max_hw": MAX_HW,
            "minutes": round((time.time() - started) / 60, 1),
        }, indent=2))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote {out} in {(time.time() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
