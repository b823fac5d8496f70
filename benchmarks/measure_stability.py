"""Pass-to-pass stability of latency measurements, with and without speed gating.

    build N small real networks (torchvision with weights=None, then seeded
    synthetic conv nets) -> ONNX files
    measure every model in four passes, ordered gated, ungated, ungated, gated
    (ABBA, so neither mode gets the earlier or later machine state)
    -> per model: relative difference of the two passes' medians, per mode
    -> median and p90 of that difference over models, per mode

Target (issue 2): with gating, median <= 2% and p90 <= 5%. Only meaningful on a
machine nobody else is loading. The last line is one JSON object.

    .venv/bin/python benchmarks/measure_stability.py --models 20
    .venv/bin/python benchmarks/measure_stability.py --models 3 --runtime openvino
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
import warnings

import torch  # before anything that might load tensorflow (nn_farm/_compat.py)
import torchvision

import numpy as np
from tqdm import tqdm

from nn_farm.farm.measure import measure_file
from nn_farm.farm.policy import MeasurePolicy, SpeedGate
from nn_farm.farm.speed import default_probe

INPUT_HW = 64
# Cheap first, so a small --models count is quick.
TORCHVISION = ("mobilenet_v3_small", "shufflenet_v2_x0_5", "squeezenet1_1", "mnasnet0_5",
               "mobilenet_v2", "regnet_x_400mf", "shufflenet_v2_x1_0", "mobilenet_v3_large",
               "regnet_y_400mf", "efficientnet_b0", "resnet18", "mnasnet1_0", "squeezenet1_0",
               "densenet121", "resnet34")


def synthetic_convnet(seed: int) -> tuple[torch.nn.Module, int]:
    """A seeded conv-bn-relu stack of random depth, width and input size."""
    rng = np.random.default_rng(seed)
    layers, cin = [], 3
    for _ in range(int(rng.integers(3, 9))):
        cout = int(rng.choice([16, 24, 32, 48, 64]))
        k = int(rng.choice([1, 3, 5]))
        stride = int(rng.choice([1, 1, 2]))
        groups = cin if (cin == cout and rng.random() < 0.3) else 1
        layers += [torch.nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                   torch.nn.BatchNorm2d(cout), torch.nn.ReLU()]
        cin = cout
    layers += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(cin, 10)]
    return torch.nn.Sequential(*layers).eval(), int(rng.choice([32, 48, 64, 96]))


def build_models(count: int, workdir: pathlib.Path) -> list[pathlib.Path]:
    """ONNX files of ``count`` networks in ``workdir`` (reused if already there)."""
    workdir.mkdir(parents=True, exist_ok=True)
    names = list(TORCHVISION[:count]) + [f"synthetic{i}" for i in range(max(0, count - len(TORCHVISION)))]
    paths = []
    for name in tqdm(names, desc="models", unit="model", file=sys.stderr):
        path = workdir / f"{name}.onnx"
        if not path.exists():
            if name.startswith("synthetic"):
                net, hw = synthetic_convnet(int(name.removeprefix("synthetic")))
            else:
                net, hw = torchvision.models.get_model(name, weights=None).eval(), INPUT_HW
            tmp = path.with_suffix(".tmp.onnx")
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is the quick one
            torch.onnx.export(net, (torch.randn(1, 3, hw, hw),), str(tmp), input_names=["input"],
                              opset_version=17, dynamo=False)
            tmp.rename(path)
        paths.append(path)
    return paths


def rel_diff(a: float, b: float) -> float:
    return abs(a - b) / ((a + b) / 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=20, help="number of networks (default 20)")
    parser.add_argument("--runtime", default="onnxruntime", choices=("onnxruntime", "openvino"))
    parser.add_argument("--workdir", default="/tmp/nn-farm-stability-models", help="cache of ONNX files")
    parser.add_argument("--min-s", type=float, default=0.3, help="policy min_s per measurement (s)")
    parser.add_argument("--affinity", type=int, nargs="*", default=None,
                        help="pin to these cores (default: the last core)")
    args = parser.parse_args(argv)

    paths = build_models(args.models, pathlib.Path(args.workdir))
    cores = tuple(args.affinity) if args.affinity is not None else (max(os.sched_getaffinity(0)),)
    gated = MeasurePolicy(min_s=args.min_s, cpu_affinity=cores)
    modes = {"gated": gated, "ungated": gated.replace(speed_gate=SpeedGate(mode="off"))}
    order = [("gated", 0), ("ungated", 0), ("ungated", 1), ("gated", 1)]

    default_probe().calibrate(200)
    results: dict[str, list[list[dict]]] = {m: [[], []] for m in modes}
    wall = {m: 0.0 for m in modes}
    bar = tqdm(total=len(order) * len(paths), desc="measuring", unit="job", file=sys.stderr)
    for mode, pass_index in order:
        for path in paths:
            t0 = time.monotonic()
            m = measure_file(args.runtime, str(path), policy=modes[mode])
            wall[mode] += time.monotonic() - t0
            results[mode][pass_index].append({"median_ms": m.median_ms, "runs": m.runs, "kept": m.kept_runs,
                                              "attempts": m.attempts, "state": m.speed_state,
                                              "calm_wait_s": m.calm_wait_s})
            bar.update()
    bar.close()

    print(f"{'model':22s} {'gated A':>9s} {'gated B':>9s} {'diff':>7s} {'ungated A':>10s} {'ungated B':>10s} "
          f"{'diff':>7s}  kept/runs(A)  attempts  state")
    diffs = {m: [] for m in modes}
    for i, path in enumerate(paths):
        row = f"{path.stem:22s}"
        for mode in modes:
            a, b = (results[mode][p][i]["median_ms"] for p in (0, 1))
            diffs[mode].append(rel_diff(a, b))
            row += f" {a:9.3f} {b:9.3f} {diffs[mode][-1]:7.2%}" if mode == "gated" else \
                f" {a:10.3f} {b:10.3f} {diffs[mode][-1]:7.2%}"
        g = results["gated"]
        row += (f"  {g[0][i]['kept']:5d}/{g[0][i]['runs']:<5d}  {g[0][i]['attempts']},{g[1][i]['attempts']}"
                f"       {g[0][i]['state']},{g[1][i]['state']}")
        print(row)

    summary = {"benchmark": "measure_stability", "runtime": args.runtime, "models": len(paths),
               "cpu_affinity": list(cores), "best_probe_ms": default_probe().best_ms}
    for mode in modes:
        d = np.array(diffs[mode])
        summary[f"{mode}_median_rel_diff"] = float(np.median(d))
        summary[f"{mode}_p90_rel_diff"] = float(np.percentile(d, 90))
        summary[f"{mode}_wall_s"] = wall[mode]
    g_all = results["gated"][0] + results["gated"][1]
    summary["gated_slow_jobs"] = sum(r["state"] == "slow" for r in g_all)
    summary["gated_mean_attempts"] = float(np.mean([r["attempts"] for r in g_all]))
    summary["gated_mean_calm_wait_s"] = float(np.mean([r["calm_wait_s"] for r in g_all]))
    summary["target_met"] = summary["gated_median_rel_diff"] <= 0.02 and summary["gated_p90_rel_diff"] <= 0.05
    for mode in modes:
        print(f"{mode:8s}: pass-to-pass difference of medians: median {summary[f'{mode}_median_rel_diff']:.2%}, "
              f"p90 {summary[f'{mode}_p90_rel_diff']:.2%}, wall {summary[f'{mode}_wall_s']:.1f} s")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
