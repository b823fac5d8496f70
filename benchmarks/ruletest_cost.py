"""What the fusion rule test costs on this host, and how often a verdict flips between two runs.

    for devices in (1, 2): a fresh workspace (fresh result store, fresh model files)
        -> nn-farm's whole rule test on host-cpu-litert with that many pinned cores
        -> wall time, models profiled, measurements taken, verdicts with confidences
    speed-up = wall(1) / wall(2)
    flips = test cases whose verdict differs between the two runs (two full runs:
            nothing is shared but the machine), also counted among verdicts both
            runs call confident (>= 0.99, the tester's own bar), and, beside them,
            the flips of the measurement's bare sign (nn-Meter's rule, before a
            verdict inside the noise keeps its prior)

Target (issue 5): no flips. The machine is shared and noisy: load averages are
printed beside every figure. The full default test (79 pairs + MON) takes tens
of minutes per run on 2 cores; --pairs N takes the first N default pairs.

    .venv/bin/python benchmarks/ruletest_cost.py                 # full, both device counts
    .venv/bin/python benchmarks/ruletest_cost.py --pairs 12 --no-mon

The last line is one JSON object; a PNG of every pair's z in both runs goes to --plot.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

import torch  # noqa: F401  before anything that might load tensorflow (nn_farm/_compat.py)
import yaml

from nn_farm.builder.config import DEFAULT_BASIC_TESTCASES
from nn_farm.builder.ruletest.run import CONFIDENCE_REQUIRED, ruletest
from nn_farm.builder.workspace import create_workspace

CONFIDENT = CONFIDENCE_REQUIRED


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def one_run(root: pathlib.Path, pairs: list[str], others: list[str], devices: int) -> dict:
    ws = create_workspace(root / f"ws-{devices}dev", backend="host-cpu-litert")
    config = yaml.safe_load(ws.ruletest_config.read_text())
    config["BASIC_TESTCASES"], config["OTHER_TESTCASES"] = pairs, others
    ws.ruletest_config.write_text(yaml.safe_dump(config))
    load_before = _load()
    started = time.perf_counter()
    report = ruletest(ws.root, devices=devices)
    wall = time.perf_counter() - started
    row = {"devices": devices, "wall_s": round(wall, 1), "models": report.models,
           "measurements": report.measured, "remeasured_cases": len(report.remeasured),
           "uncertain_after": report.uncertain(), "load_before": load_before, "load_after": _load(),
           "kept_prior": sorted(n for n, r in report.rules.items() if r.get("prior")),
           "rules": {n: {"obey": r["obey"], "measured_obey": r.get("measured_obey", r["obey"]),
                         "confidence": r["confidence"],
                         "z": (abs(r["margin_ms"]) / r["uncertainty_ms"]
                               if r.get("margin_ms") is not None and r.get("uncertainty_ms") else None)}
                     for n, r in report.rules.items()}}
    print(f"devices={devices}: {row['wall_s']} s, {row['models']} models, {row['measurements']} "
          f"measurements, {row['remeasured_cases']} case(s) re-measured, {len(row['kept_prior'])} kept "
          f"their prior, load {load_before} -> "
          f"{row['load_after']}", flush=True)
    return row


def plot(runs: list[dict], flips: list[str], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b = runs[0]["rules"], runs[1]["rules"]
    names = [n for n in a if n in b and a[n]["z"] is not None and b[n]["z"] is not None]

    def signed(r):
        return r["z"] if r["obey"] in (True, "case1") else -r["z"]

    fig, ax = plt.subplots(figsize=(6, 6))
    xs, ys = [signed(a[n]) for n in names], [signed(b[n]) for n in names]
    colours = ["tab:red" if n in flips else "tab:blue" for n in names]
    ax.scatter(xs, ys, c=colours, s=14)
    lim = max(5.0, min(60.0, max(map(abs, xs + ys), default=5.0)))
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel(f"run 1 ({runs[0]['devices']} device): signed z (+ fused / case1)")
    ax.set_ylabel(f"run 2 ({runs[1]['devices']} devices): signed z")
    ax.set_title(f"rule test verdicts, {len(names)} cases, {len(flips)} flip(s) (red)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=len(DEFAULT_BASIC_TESTCASES),
                        help="first N of nn-Meter's default pairs (default all)")
    parser.add_argument("--no-mon", action="store_true", help="leave MON out")
    parser.add_argument("--devices", default="1,2", help="device counts, one run each (default 1,2)")
    parser.add_argument("--workdir", help="keep workspaces here (default: a temporary directory)")
    parser.add_argument("--plot", default="benchmarks/ruletest_cost.png", help="PNG of the verdicts' z")
    args = parser.parse_args()

    pairs = list(DEFAULT_BASIC_TESTCASES[:args.pairs])
    others = [] if args.no_mon else ["MON"]
    counts = [int(d) for d in args.devices.split(",")]
    with tempfile.TemporaryDirectory(prefix="ruletest-cost-") as tmp:
        root = pathlib.Path(args.workdir or tmp)
        runs = [one_run(root, pairs, others, d) for d in counts]

    summary = {"pairs": len(pairs), "mon": not args.no_mon, "cpu_count": os.cpu_count(),
               "runs": [{k: v for k, v in r.items() if k != "rules"} for r in runs]}
    if len(runs) >= 2:
        a, b = runs[0]["rules"], runs[1]["rules"]
        flips = sorted(n for n in a if n in b and a[n]["obey"] != b[n]["obey"])
        confident = sorted(n for n in flips if a[n]["confidence"] >= CONFIDENT and b[n]["confidence"] >= CONFIDENT)
        summary.update({
            "speedup": round(runs[0]["wall_s"] / runs[1]["wall_s"], 2),
            "flips": len(flips), "flipped": flips, "confident_flips": len(confident),
            # what the bare sign of the margin (nn-Meter's rule, no prior) would have flipped
            "measured_flips": sorted(n for n in a if n in b and a[n]["measured_obey"] != b[n]["measured_obey"]),
            "cases_compared": len(a),
            "low_confidence": sorted(n for n in a if min(a[n]["confidence"], b.get(n, a[n])["confidence"]) < CONFIDENT),
        })
        for n in flips:
            print(f"flip {n}: run1 {a[n]} run2 {b[n]}")
        plot(runs, flips, pathlib.Path(args.plot))
        summary["plot"] = args.plot
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
