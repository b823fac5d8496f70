"""`nn-farm farm ...`: the farm's commands.

    nn-farm farm status  --config farm.yaml [--json]
    nn-farm farm profile --config farm.yaml MODEL_DIR [--device-class C] [--runs N] [--export out.json]
    nn-farm farm export  --config farm.yaml OUT.json [--device-class C]

Nothing heavy is imported here: Ray and gRPC load inside the command.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys


def register(subparsers) -> None:
    farm = subparsers.add_parser("farm", help="the device farm on Ray: status, profile a directory, export")
    sub = farm.add_subparsers(dest="farm_command", metavar="FARM_COMMAND")
    farm.set_defaults(func=lambda args: (farm.print_help(), 2)[1])

    p = sub.add_parser("status", help="devices, health, queue, throughput and the spread within each class")
    _common(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_status)

    p = sub.add_parser("profile", help="profile every model file of a directory on a device class")
    _common(p)
    p.add_argument("models", help="a directory of model files (or one file)")
    p.add_argument("--device-class", help="the class to use (optional if the farm has one)")
    p.add_argument("--runs", type=int, help="sample exactly this many runs per model")
    p.add_argument("--no-gate", action="store_true", help="turn the speed gate off")
    p.add_argument("--ray-address", help="join this Ray cluster (default: RAY_ADDRESS or a local Ray)")
    p.add_argument("--export", help="also write nn-Meter's profiled JSON here")
    p.set_defaults(func=_profile)

    p = sub.add_parser("export", help="write the store's results as nn-Meter's profiled JSON")
    _common(p)
    p.add_argument("out", help="the JSON file to write")
    p.add_argument("--device-class", help="only this class")
    p.set_defaults(func=_export)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", default="farm.yaml", help="the farm config (default: farm.yaml)")
    p.add_argument("--store", help="the result store (default: the config's store)")


def _status(args) -> int:
    from nn_farm.actors.config import load_farm_config
    from nn_farm.actors.store import ResultStore

    config = load_farm_config(args.config)
    from nn_farm.actors.scheduler import Farm

    with ResultStore(args.store or config.store) as store:
        farm = Farm(config, store=store, progress=False)
        rows = farm.status()
    spread = class_spread(rows)
    if args.json:
        print(json.dumps({"devices": rows, "classes": spread}))
        return 0
    header = f"{'device':<28} {'class':<24} {'state':<11} {'queue':>5} {'meas':>6} {'fail':>5} " \
             f"{'job/s':>6} {'speed':>6} {'drift':>7}"
    print(header)
    for r in rows:
        if r["device_id"] == "-":
            print(f"{r['agent']:<28} {'-':<24} {'unreachable':<11}  {r['error']}")
            continue
        speed = f"{r['speed_factor']:.2f}" if r.get("speed_factor") else "-"
        drift = f"{r['drift']:+.1%}" if r.get("drift") is not None else "-"
        flag = "  FLAGGED" if r.get("flagged") else ""
        print(f"{r['device_id']:<28} {r['device_class']:<24} {r['state']:<11} {r['queue']:>5} "
              f"{r['measurements']:>6} {r['failures']:>5} {r['jobs_per_s']:>6.2f} {speed:>6} {drift:>7}{flag}")
    for cls, s in spread.items():
        print(f"class {cls}: {s['devices']} device(s), speed factor {s['min']:.2f}..{s['max']:.2f} "
              f"(spread {s['spread']:.1%})" if s["min"] is not None else
              f"class {cls}: {s['devices']} device(s), not calibrated yet")
    return 0


def class_spread(rows: list[dict]) -> dict:
    """Per class: device count and min/max/relative spread of the calibrated speed factors.

    Returns:
        ``{class: {"devices", "min", "max", "spread"}}``; spread is (max - min) / median.
    """
    out: dict[str, dict] = {}
    for r in rows:
        if r["device_id"] == "-":
            continue
        out.setdefault(r["device_class"], []).append(r.get("speed_factor"))
    result = {}
    for cls, factors in out.items():
        known = [f for f in factors if f]
        if known:
            result[cls] = {"devices": len(factors), "min": min(known), "max": max(known),
                           "spread": (max(known) - min(known)) / statistics.median(known)}
        else:
            result[cls] = {"devices": len(factors), "min": None, "max": None, "spread": None}
    return result


def _profile(args) -> int:
    import pathlib

    from nn_farm.actors.jobs import Job, guess_format
    from nn_farm.actors.scheduler import Farm
    from nn_farm.errors import ConfigError
    from nn_farm.farm.policy import MeasurePolicy, SpeedGate

    root = pathlib.Path(args.models)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and guess_format(p))
    if not files:
        raise ConfigError(f"no model files (.onnx, .tflite, .xml, .pt, .json) under {root}", key="models")
    policy = MeasurePolicy()
    if args.runs:
        policy = policy.replace(runs_exact=args.runs, min_runs=1)
    if args.no_gate:
        policy = policy.replace(speed_gate=SpeedGate(mode="off"))
    jobs = [Job.from_path(p, name=str(p.relative_to(root)) if p != root else p.name) for p in files]
    with Farm(args.config, store=args.store, ray_address=args.ray_address) as farm:
        failed = 0
        for r in farm.profile(jobs, device_class=args.device_class, policy=policy, stream=True):
            if r.ok:
                m = r.measurement
                note = " (stored earlier)" if r.skipped else ""
                print(f"{r.job_name}: {m.mean_ms:.3f} +- {m.std_ms:.3f} ms on {r.device_id}{note}")
            else:
                failed += 1
                print(f"{r.job_name}: FAILED {r.error_kind.name}: {r.error}", file=sys.stderr)
        if args.export:
            farm.store.export_nnmeter(args.export, device_class=args.device_class)
    return 1 if failed else 0


def _export(args) -> int:
    from nn_farm.actors.config import load_farm_config
    from nn_farm.actors.store import ResultStore

    store_path = args.store or load_farm_config(args.config).store
    with ResultStore(store_path) as store:
        out = store.export_nnmeter(args.out, device_class=args.device_class)
    print(f"wrote {sum(len(v) for v in out.values())} result(s) in {len(out)} group(s) to {args.out}")
    return 0
