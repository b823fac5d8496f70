#!/usr/bin/env python
"""Predicted vs measured latency of whole models on this host's CPU, beside the noise floor.

Two sets, both built in Keras with random weights and converted to .tflite as Ray tasks
feeding the farm:

- real architectures: 16 keras.applications models (MobileNets, EfficientNets,
  NASNetMobile, DenseNets, ResNets, InceptionV3, Xception) and 7 torchvision ones
  (through ONNX into Keras: nn_farm/builder/onnx_to_keras.py);
- NAS-sampled networks: MobileNetV3/OFA-style nets (depths, expansions, kernel sizes,
  squeeze-excite, activations and resolution drawn per network; see
  nn_farm/builder/zoo_models.py).

Each model is measured twice on the workspace's device (two passes over every model;
the second pass uses a policy with one more warm-up run, so the result store keeps both
instead of returning the first), and predicted by the workspace's predictor package.
Reported per set: RMSPE and +-5/10/15% accuracy of predicted vs the first measurement
(and vs the mean of both), and the noise floor: how often the two measurements of a
model lie within 10% of each other.

Targets (issue 6): +-10% accuracy within 5 points of the noise floor on the NAS set, and
within 10 points on the real architectures.

Usage:
    .venv/bin/python benchmarks/end_to_end_accuracy.py --workspace nn-farm-demo
    .venv/bin/python benchmarks/end_to_end_accuracy.py --workspace WS --real 4 --nas 20   # smaller

The workspace must hold a built predictor (``nn-farm demo`` or ``nn-farm build``).
Writes end_to_end_accuracy.{json,png} under <workspace>/end_to_end/; the last line of
output is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pathlib
import statistics
import sys
import time
import warnings

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _rel_errors(pred, meas):
    return [(p - m) / m for p, m in zip(pred, meas) if m and m > 0 and math.isfinite(p)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", default="nn-farm-demo", help="a workspace with a built predictor")
    parser.add_argument("--real", type=int, default=None, help="how many real architectures (default all 16)")
    parser.add_argument("--nas", type=int, default=100, help="how many NAS-sampled networks (default 100)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    import torch  # noqa: F401  (before tensorflow: see nn_farm/_compat.py)

    from nn_farm.builder.backend import open_backend
    from nn_farm.builder.main_job import accuracy_stats, write_scatter
    from nn_farm.builder.zoo_models import BENCHMARK_MODELS, nas_job, nas_network, zoo_model_job, zoo_model_path
    from nn_farm.predictor.registry import load_latency_predictor

    ws = pathlib.Path(args.workspace).resolve()
    package = ws / "predictor_build" / "package"
    if not (package / "manifest.json").exists():
        print(f"no predictor package in {package}: run `nn-farm demo --workspace {ws}` or "
              f"`nn-farm build --workspace {ws}` first", file=sys.stderr)
        return 2
    out_dir = ws / "end_to_end"
    model_dir = out_dir / "models"
    model_dir.mkdir(parents=True, exist_ok=True)
    real = list(BENCHMARK_MODELS[: args.real] if args.real is not None else BENCHMARK_MODELS)
    nas = [nas_network(seed) for seed in range(args.nas)]
    jobs = [zoo_model_job(name, model_dir) for name in real] + [nas_job(d, model_dir) for d in nas]
    paths = [zoo_model_path(name, model_dir) for name in real] + \
            [str(model_dir / f"{j.meta['model']}.tflite") for j in jobs[len(real):]]
    sets = ["real"] * len(real) + ["nas"] * len(nas)
    names = real + [j.meta["model"] for j in jobs[len(real):]]

    load_before = os.getloadavg()
    started = time.perf_counter()
    measured: list[list] = [[None] * len(jobs), [None] * len(jobs)]
    device_s = 0.0
    with open_backend(ws, progress=not args.no_progress) as backend:
        second = dataclasses.replace(backend.policy, warmup_runs=backend.policy.warmup_runs + 1)
        for p, policy in enumerate((backend.policy, second)):
            print(f"pass {p + 1} of 2: {len(jobs)} models on {backend.device_class}", flush=True)
            for i, res in enumerate(backend.farm.profile(jobs, device_class=backend.device_class, policy=policy)):
                if res.ok:
                    measured[p][i] = res.measurement.mean_ms
                    m = res.measurement
                    device_s += max(0.0, m.finished_unix_s - m.started_unix_s)
                else:
                    print(f"  {names[i]}: {res.error_kind.name}: {res.error[:200]}", flush=True)
        device_class = backend.device_class

    predictor = load_latency_predictor(package)
    ok = [i for i in range(len(jobs)) if measured[0][i] and measured[1][i] and os.path.exists(paths[i])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unpriced kernels are counted below instead
        details = {i: predictor.predict_detail(paths[i], "tflite") for i in ok}
    report_sets = {}
    groups = {}
    for label in ("real", "nas"):
        idx = [i for i in ok if sets[i] == label]
        pred = [details[i]["latency_ms"] for i in idx]
        m1 = [measured[0][i] for i in idx]
        m2 = [measured[1][i] for i in idx]
        mean = [(a + b) / 2 for a, b in zip(m1, m2)]
        noise = _rel_errors(m2, m1)
        stats = accuracy_stats(pred, m1)
        report_sets[label] = {
            **stats, "acc10_vs_mean_of_two": accuracy_stats(pred, mean)["acc10"],
            "noise_floor_acc10": sum(abs(e) <= 0.10 for e in noise) / len(noise) if noise else float("nan"),
            "noise_rmspe": 100 * math.sqrt(sum(e * e for e in noise) / len(noise)) if noise else float("nan"),
            "unpriced_kernels": sum(details[i]["n_unknown"] for i in idx),
            # a bias shows here before it shows in the accuracy: > 1 is predicted too low
            "median_measured_over_predicted": statistics.median(m / p for m, p in zip(m1, pred)) if idx else float("nan"),
            "models": [{"model": names[i], "predicted_ms": details[i]["latency_ms"], "measured_ms": measured[0][i],
                        "measured_again_ms": measured[1][i], "unpriced": details[i]["n_unknown"]} for i in idx],
        }
        r = report_sets[label]
        r["gap_to_noise_floor_points"] = 100 * (r["noise_floor_acc10"] - r["acc10"]) if idx else float("nan")
        groups[f"{label} ({len(idx)})"] = (pred, m1, [names[i] for i in idx] if label == "real" else None)

    width = max([18] + [len(row["model"]) for row in report_sets["real"]["models"]])
    print(f"\n{'model':<{width}} {'predicted ms':>12} {'measured ms':>12} {'again ms':>10} {'error':>8}")
    for row in report_sets["real"]["models"]:
        err = 100 * (row["predicted_ms"] - row["measured_ms"]) / row["measured_ms"]
        print(f"{row['model']:<{width}} {row['predicted_ms']:>12.2f} {row['measured_ms']:>12.2f} "
              f"{row['measured_again_ms']:>10.2f} {err:>+7.1f}%")
    for label, r in report_sets.items():
        print(f"{label}: {r['n']} models, +-10% accuracy {100 * r['acc10']:.0f}% (RMSPE {r['rmspe']:.1f}%), "
              f"noise floor {100 * r['noise_floor_acc10']:.0f}% of models re-measure within 10% "
              f"(gap {r['gap_to_noise_floor_points']:.0f} points)")
    png = write_scatter(out_dir / "end_to_end_accuracy.png", groups,
                        f"{device_class}: predicted vs measured (first of two measurements)")
    report = {"benchmark": "end_to_end_accuracy", "workspace": str(ws), "predictor": str(package),
              "device_class": device_class, "sets": report_sets, "device_s": round(device_s, 1),
              "wall_s": round(time.perf_counter() - started, 1), "load_avg_before": load_before,
              "load_avg_after": os.getloadavg(), "plot": png}
    (out_dir / "end_to_end_accuracy.json").write_text(json.dumps(report, indent=2))  # every model
    # The last line stays short: the NAS set's models are in the file.
    short = {**report_sets["nas"], "models": len(report_sets["nas"]["models"])}
    print(json.dumps({**report, "sets": {**report_sets, "nas": short}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
