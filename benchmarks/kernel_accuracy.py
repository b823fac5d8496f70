#!/usr/bin/env python
"""Per-kernel accuracy of a predictor build on this host's CPU, and what the profiling cost.

Runs (or resumes) ``build_latency_predictor`` in a workspace on ``host-cpu-litert``
(one thread, the default measurement policy) and reports, per kernel type, the kept
round's RMSPE and +-5/10/15% accuracy on its held-out configs (20% of round 1, fixed
across rounds, never trained on), every round's accuracy, and the profiling cost:
kernels measured and device-seconds, beside nn-Meter's default initial budget
(10,000 conv, 5,000 dwconv, 3,000 for each other kernel type).

Targets (issue 6): conv and dwconv +-10% accuracy >= 95%, at a cost well below
nn-Meter's defaults.

Usage:
    .venv/bin/python benchmarks/kernel_accuracy.py                      # the config's budget, ~25 min quiet
    .venv/bin/python benchmarks/kernel_accuracy.py --scale 0.25 --kernels conv-bn-relu dwconv-bn-relu
    .venv/bin/python benchmarks/kernel_accuracy.py --workspace W2 --mark s2   # an independent sample

The workspace (default bench_out/kernel_accuracy) is resumable: a rerun measures
nothing twice. A bar chart goes next to the JSON (kernel_accuracy.png); the last
line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
NN_METER_INIT = {"conv-bn-relu": 10_000, "dwconv-bn-relu": 5_000}
NN_METER_OTHER = 3_000


def _workspace(path: pathlib.Path, kernels, scale: float, iteration: int | None, backend: str):
    import yaml

    from nn_farm.builder.workspace import Workspace, create_workspace

    ws = Workspace(path.resolve())
    if not ws.configs_dir.is_dir():
        create_workspace(ws.root, backend=backend)
    config = yaml.safe_load(ws.predbuild_config.read_text())
    entries = config["KERNELS"]
    if kernels:
        entries = {k: entries.get(k) or {} for k in kernels}
    for name, entry in entries.items():
        from nn_farm.builder.config import budget_for

        base = budget_for(name)
        entry["INIT_SAMPLE_NUM"] = max(5, int(round(base.init_sample_num * scale)))
        entry.setdefault("FINEGRAINED_SAMPLE_NUM", base.finegrained_sample_num)
        entry.setdefault("ERROR_THRESHOLD", base.error_threshold)
        entry["ITERATION"] = iteration or entry.get("ITERATION", base.iteration)
    config["KERNELS"] = entries
    ws.predbuild_config.write_text(yaml.safe_dump(config, sort_keys=False))
    return ws


def _plot(path, kernels: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(kernels)
    acc = [100 * (kernels[k]["acc10"] or 0) for k in names]
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(names) + 2), 4))
    ax.bar(range(len(names)), acc, color=["C0" if a >= 95 else "C1" for a in acc])
    ax.axhline(95, color="k", lw=0.8, ls="--", label="target 95% (conv, dwconv)")
    for i, k in enumerate(names):
        ax.text(i, acc[i] + 1, f"n={kernels[k]['n_test']}", ha="center", fontsize=7)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("+-10% accuracy on held-out configs (%)")
    ax.set_ylim(0, 108)
    ax.legend(fontsize=8)
    ax.set_title("per-kernel accuracy, host CPU (LiteRT, 1 thread)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", default=str(ROOT / "bench_out" / "kernel_accuracy"))
    parser.add_argument("--backend", default="host-cpu-litert")
    parser.add_argument("--kernels", nargs="+", help="kernel types (default: the config's 16)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every INIT_SAMPLE_NUM of the default budget (default 1)")
    parser.add_argument("--iteration", type=int, help="ITERATION for every kernel (default: the budget's)")
    parser.add_argument("--mark", default="",
                        help="another sample of configs: the data files' mark, which also seeds the sampling")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    import torch  # noqa: F401  (before tensorflow: see nn_farm/_compat.py)

    from nn_farm.builder.kernel_builder import build_latency_predictor

    load_before = os.getloadavg()
    ws = _workspace(pathlib.Path(args.workspace), args.kernels, args.scale, args.iteration, args.backend)
    started = time.perf_counter()
    result = build_latency_predictor(workspace=ws.root, ruletest="skip", register=False,
                                     progress=not args.no_progress, mark=args.mark)
    wall = time.perf_counter() - started
    summary = result.summary()

    per_kernel = {}
    for name, k in summary["kernels"].items():
        m = k["metrics"]
        per_kernel[name] = {"rmspe": m.get("rmspe"), "acc5": m.get("acc5"), "acc10": m.get("acc10"),
                            "acc15": m.get("acc15"), "n_train": int(m.get("n_train", 0)),
                            "n_test": int(m.get("n_test", 0)), "kept_round": k["kept_round"],
                            "rounds_acc10": [r["acc10"] for r in k["rounds"]], "stopped": k["stopped"]}
    measured_total = 0
    for p in ws.results_dir.glob("profiled_*.json"):
        data = json.loads(p.read_text())
        measured_total += sum(len(v) for v in data.values())
    nn_meter = sum(NN_METER_INIT.get(k, NN_METER_OTHER) for k in per_kernel)

    print(f"\n{'kernel':<16} {'train':>5} {'test':>4} {'rmspe %':>8} {'+-10%':>6}  rounds (+-10%)  kept")
    for name, k in per_kernel.items():
        rounds = " ".join(f"{100 * a:.0f}" for a in k["rounds_acc10"] if a is not None)
        print(f"{name:<16} {k['n_train']:>5} {k['n_test']:>4} {k['rmspe']:>8.1f} {100 * k['acc10']:>5.0f}%  "
              f"{rounds:<14}  {k['kept_round']}")
    print(f"kernels measured: {measured_total} ({result.measured} in this run), device-seconds "
          f"{summary['device_s_total']:.0f} ({summary['device_s']:.0f} in this run); nn-Meter's default initial "
          f"budget for these kernel types: {nn_meter} kernels ({measured_total / nn_meter:.1%} of it)")
    png = _plot(ws.root / "kernel_accuracy.png", per_kernel)
    report = {
        "benchmark": "kernel_accuracy", "backend": args.backend, "workspace": str(ws.root), "mark": args.mark,
        "runtime": summary["runtime"], "runtime_version": summary["runtime_version"],
        "kernels": per_kernel,
        "conv_acc10": per_kernel.get("conv-bn-relu", {}).get("acc10"),
        "dwconv_acc10": per_kernel.get("dwconv-bn-relu", {}).get("acc10"),
        "kernels_measured": measured_total, "kernels_measured_this_run": result.measured,
        "device_s": round(summary["device_s_total"], 1), "device_s_this_run": round(summary["device_s"], 1),
        "nn_meter_default_kernels": nn_meter, "cost_vs_nn_meter": round(measured_total / nn_meter, 4),
        "wall_s": round(wall, 1), "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
        "plot": png,
    }
    (ws.root / "kernel_accuracy.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
