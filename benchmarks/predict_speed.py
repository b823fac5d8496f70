#!/usr/bin/env python
"""How fast does nn-farm predict latency? Single models and NAS-sized batches.

Measured side by side in one run, on one predictor package:

1. ``onnx``  ms per model, end to end from an .onnx file (torchvision models,
   weights=None): parse + shape inference -> IR -> kernels -> features -> ms.
2. ``ir``    ms per model from an IR graph already in memory (the NAS fast path).
3. ``batch`` models/s for ``predict_many`` over N NAS-sampled MobileNetV2-style IR
   graphs (depth, expand ratio, kernel size, width and resolution sampled per block),
   and, as the peer, the same graphs priced the way nn-Meter's predictor does it
   (``predict_by_kernel.predict_model``: per model, one scikit-learn ``predict``
   call per kernel type on Python lists). Kernel detection is shared, so the ratio
   isolates the pricing pipeline; the detection share is printed too.

Targets (issue 4): <= 20 ms per torchvision model from ONNX, <= 2 ms from IR,
>= 2,000 models/s batched. They are wall-clock figures; the machine is shared, so
the run also prints the load average and the same figures in CPU time of this
process (``time.process_time``), which other processes disturb much less. Garbage
left by building the inputs is collected before each timed part, so a collection
it owes is not billed to prediction.

The VM under this benchmark drifts between speed states (10-40% slower for
seconds to minutes, invisible from inside: CPU time slows as much as wall time).
So every timing is repeated with the farm's speed probe (``nn_farm.farm.speed``,
the fixed workload the device measurements gate on) read before and after each
repeat. A repeat is *fast-state* when both readings are within 10% of the probe's
best. The figures judged against the targets are medians over fast-state repeats;
the medians over all repeats are printed beside them (``*_all``), and the share of
fast-state repeats says how calm the run was.

nn-Meter itself: its end-to-end pipeline (``nn_meter.load_latency_predictor(...)
.predict(model, model_type)``) was not measured here; it needs its released
predictor weights, which this environment does not have. Nor is there a
published per-model prediction time to quote: nn-Meter's paper pages, docs and
repository (searched) report prediction accuracy, not prediction speed. The peer
figures below are nn-Meter's *pricing loop* re-implemented on our kernels, not
nn-Meter's converters or kernel detector.

Usage:
    .venv/bin/python benchmarks/predict_speed.py [--predictor NAME_OR_PATH] [--n 1000]

The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "nn_farm/predictor/fixtures/synthetic_fixture_cpu"

# MobileNetV2's stages: (output channels, max depth, first stride)
_STAGES = [(16, 1, 1), (24, 2, 2), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2), (320, 1, 1)]


class _IRBuilder:
    """Builds one nn-Meter IR dict in ONNX spelling (NHWC shapes)."""

    def __init__(self):
        self.nodes: dict[str, dict] = {}

    def add(self, name, type_, inputs, out_shape, attr=None):
        self.nodes[name] = {
            "inbounds": list(inputs),
            "attr": {"name": name, "type": type_,
                     "input_shape": [self.nodes[i]["attr"]["output_shape"][0] for i in inputs],
                     "output_shape": [out_shape], "attr": attr or {}},
            "outbounds": [],
        }
        for i in inputs:
            self.nodes[i]["outbounds"].append(name)
        return name

    def conv_bn(self, name, x, cout, k, stride, depthwise=False, act=True):
        n, h, w, cin = self.nodes[x]["attr"]["output_shape"][0]
        oh, ow = -(-h // stride), -(-w // stride)
        p = k // 2
        x = self.add(f"{name}/Conv", "Conv", [x], [n, oh, ow, cout],
                     {"dilations": [1, 1], "group": cin if depthwise else 1,
                      "kernel_shape": [k, k], "pads": [p, p, p, p], "strides": [stride, stride]})
        x = self.add(f"{name}/BatchNormalization", "BatchNormalization", [x], [n, oh, ow, cout],
                     {"epsilon": 1e-5})
        if act:
            x = self.add(f"{name}/Clip", "Clip", [x], [n, oh, ow, cout], {"min": 0.0, "max": 6.0})
        return x


def sample_mobilenet_ir(rng: np.random.Generator) -> dict:
    """One MobileNetV2-style network from a ProxylessNAS/OFA-like space, as IR JSON."""
    resolution = int(rng.choice([160, 176, 192, 208, 224]))
    width = float(rng.choice([0.75, 1.0, 1.25]))
    b = _IRBuilder()
    x = b.add("input", "Placeholder", [], [1, resolution, resolution, 3])
    b.nodes[x]["attr"]["input_shape"] = []
    c = int(32 * width)
    x = b.conv_bn("stem", x, c, 3, 2)
    for s, (base, max_depth, stride) in enumerate(_STAGES):
        cout = max(8, int(round(base * width / 8)) * 8)
        for d in range(int(rng.integers(1, max_depth + 2)) if s else 1):
            name, first = f"stage{s}/block{d}", x
            st = stride if d == 0 else 1
            expand = 1 if s == 0 else int(rng.choice([3, 4, 6]))
            k = int(rng.choice([3, 5, 7]))
            h = x
            if expand > 1:
                h = b.conv_bn(f"{name}/expand", h, c * expand, 1, 1)
            h = b.conv_bn(f"{name}/dw", h, c * expand, k, st, depthwise=True)
            h = b.conv_bn(f"{name}/project", h, cout, 1, 1, act=False)
            if st == 1 and c == cout:
                shape = b.nodes[h]["attr"]["output_shape"][0]
                h = b.add(f"{name}/Add", "Add", [first, h], shape)
            x, c = h, cout
    x = b.conv_bn("head", x, 1280, 1, 1)
    n, h, w, ch = b.nodes[x]["attr"]["output_shape"][0]
    x = b.add("GlobalAveragePool", "GlobalAveragePool", [x], [n, 1, 1, ch])
    x = b.add("Flatten", "Flatten", [x], [n, ch], {"axis": 1})
    b.add("Gemm", "Gemm", [x], [n, 1000], {"alpha": 1.0, "beta": 1.0, "transB": 1})
    return b.nodes


def nnmeter_style_prices(predictor, unit_lists) -> list[float]:
    """nn-Meter's pricing loop: per model, per kernel type, one sklearn predict on lists."""
    from nn_farm.errors import UnknownKernelError
    from nn_farm.predictor.kernel_specs import config_row_from_kernel_unit, features

    totals = []
    for units in unit_lists:
        by_type: dict[str, list] = {}
        for unit in units:
            try:
                kernel_type, row = config_row_from_kernel_unit(unit)
            except UnknownKernelError:
                continue
            key = predictor._model_key(kernel_type)
            if key is not None:
                by_type.setdefault(key, []).append(features(key, [row])[0].tolist())
        totals.append(sum(float(sum(predictor.package.models[k].predict(rows)))
                          for k, rows in by_type.items()))
    return totals


#: A repeat counts as fast-state when the probe reads within this of its best.
FAST_TOLERANCE = 0.10


class _Timings:
    """Repeated timings of one thing, each with the speed probe read around it."""

    def __init__(self, probe):
        self.probe = probe
        self.wall_ms: list[float] = []
        self.cpu_ms: list[float] = []
        self.probe_ms: list[float] = []

    def run(self, fn, repeat: int, setup=None):
        """Time ``fn()`` ``repeat`` times (``setup()`` before each, untimed); returns
        the last result."""
        gc.collect()
        for _ in range(repeat):
            arg = setup() if setup is not None else None
            before = self._read()
            start, start_cpu = time.perf_counter(), time.process_time()
            out = fn() if setup is None else fn(arg)
            cpu = time.process_time() - start_cpu
            wall = time.perf_counter() - start
            self.probe_ms.append(max(before, self._read()))
            self.wall_ms.append(wall * 1e3)
            self.cpu_ms.append(cpu * 1e3)
        return out

    def _read(self) -> float:
        # a median of three: single readings blip (one in ten reads 20-30% slow)
        return statistics.median(self.probe.sample() for _ in range(3))

    def fast(self) -> list[bool]:
        limit = self.probe.threshold_ms(FAST_TOLERANCE)
        return [p <= limit for p in self.probe_ms]

    @property
    def median_all(self) -> float:
        return statistics.median(self.wall_ms)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu_ms)

    @property
    def median(self) -> float:
        """Median wall ms of the fast-state repeats (of all, when none was fast)."""
        kept = [w for w, f in zip(self.wall_ms, self.fast()) if f]
        return statistics.median(kept or self.wall_ms)

    @property
    def fast_share(self) -> float:
        return sum(self.fast()) / len(self.wall_ms)


class _Timer:
    """Wall and CPU seconds of a block, after collecting the garbage owed so far."""

    def __enter__(self):
        gc.collect()
        self.start, self.start_cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.cpu = time.process_time() - self.start_cpu
        self.wall = time.perf_counter() - self.start


def _loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _export_onnx(names, directory: Path) -> dict[str, Path]:
    import torch
    import torchvision

    paths = {}
    for name in names:
        model = getattr(torchvision.models, name)(weights=None).eval()
        path = directory / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, torch.randn(1, 3, 224, 224), str(path), dynamo=False)
        paths[name] = path
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictor", default=str(FIXTURE), help="registered name or path")
    parser.add_argument("--n", type=int, default=1000, help="NAS graphs for the batch test")
    parser.add_argument("--peer-n", type=int, default=200, help="graphs for the nn-Meter-style loop")
    parser.add_argument("--repeat", type=int, default=15, help="repeats per single-model timing")
    parser.add_argument("--batch-repeat", type=int, default=7, help="repeats of the batch timing")
    parser.add_argument("--torchvision", nargs="+",
                        default=["mobilenet_v2", "resnet18", "resnet50", "shufflenet_v2_x1_0"])
    args = parser.parse_args(argv)

    import torch  # noqa: F401  (load torch before anything that might load TF)
    from tqdm import tqdm

    from nn_farm.farm.speed import SpeedProbe
    from nn_farm.predictor import load_latency_predictor
    from nn_farm.predictor.ir import IRGraph, model_to_ir
    from nn_farm.predictor.kernels import detect_kernels

    predictor = load_latency_predictor(args.predictor, on_unknown="ignore")
    print(f"predictor: {predictor.name} {predictor.version} ({predictor.device})")
    result = {"benchmark": "predict_speed", "predictor": predictor.name,
              "predictor_version": predictor.version}

    load_before = _loadavg()
    print(f"load average (1, 5, 15 min): {load_before} on {os.cpu_count()} CPUs")
    probe = SpeedProbe()
    probe.calibrate(30)
    timings: dict[str, _Timings] = {}

    def timed(label, fn, repeat, setup=None):
        timings[label] = _Timings(probe)
        return timings[label].run(fn, repeat, setup)

    # 1 + 2: single models, from ONNX files and from IR
    with tempfile.TemporaryDirectory() as tmp:
        files = _export_onnx(args.torchvision, Path(tmp))
        onnx_ms, ir_ms, onnx_cpu_ms = {}, {}, {}
        print(f"\n{'model':22s} {'onnx ms':>9s} {'(cpu)':>7s} {'ir ms':>9s} {'kernels':>8s} {'pred ms':>9s}")
        for name, path in files.items():
            predictor.predict(path, "onnx")  # warm caches (imports, rules)
            timed(f"onnx {name}", lambda: predictor.predict(path, "onnx"), args.repeat)
            onnx_ms[name], onnx_cpu_ms[name] = timings[f"onnx {name}"].median, timings[f"onnx {name}"].median_cpu
            ir = model_to_ir(path, "onnx")
            timed(f"ir {name}", lambda: predictor.predict(ir, "nnmeter-ir"), args.repeat * 4)
            ir_ms[name] = timings[f"ir {name}"].median
            units = predictor.kernel_units(ir, "nnmeter-ir")
            print(f"{name:22s} {onnx_ms[name]:9.2f} {onnx_cpu_ms[name]:7.2f} {ir_ms[name]:9.3f} "
                  f"{len(units):8d} {predictor.predict(ir, 'nnmeter-ir'):9.2f}")

    # 3: NAS batch
    rng = np.random.default_rng(0)
    samples = [sample_mobilenet_ir(rng) for _ in tqdm(range(args.n), desc="sample graphs", file=sys.stderr)]
    nas_graph = IRGraph.from_json(samples[0])
    timed("ir nas graph", lambda: predictor.predict(nas_graph, "nnmeter-ir"), args.repeat * 4)
    nas_ir_ms = timings["ir nas graph"].median

    def fresh_graphs():
        # for every repeat: a graph caches its topological order, and a NAS loop
        # predicts each graph once
        return [IRGraph.from_json(sample) for sample in samples]

    batched = timed("batch", lambda gs: predictor.predict_many(gs, "nnmeter-ir"), args.batch_repeat,
                    setup=fresh_graphs)
    batch_s, batch_all_s, batch_cpu_s = (timings["batch"].median / 1e3, timings["batch"].median_all / 1e3,
                                         timings["batch"].median_cpu / 1e3)

    rules = predictor.fusion_rules()
    unit_lists = timed("detect", lambda gs: [detect_kernels(g, rules) for g in gs], 3, setup=fresh_graphs)
    detect_s = timings["detect"].median / 1e3
    priced = timed("price", lambda: predictor.predict_many(unit_lists, "kernels"), 3)
    price_s = timings["price"].median / 1e3

    peer = unit_lists[: args.peer_n]
    with _Timer() as t_peer:
        peer_totals = nnmeter_style_prices(predictor, peer)
    peer_price_s = t_peer.wall
    np.testing.assert_allclose(peer_totals, priced[: len(peer)], rtol=1e-9)
    np.testing.assert_allclose(batched, priced, rtol=1e-12)

    n_kernels = sum(len(u) for u in unit_lists)
    models_per_s = args.n / batch_s
    models_per_all_s = args.n / batch_all_s
    models_per_cpu_s = args.n / batch_cpu_s
    pricing_per_s = args.n / price_s
    peer_pricing_per_s = len(peer) / peer_price_s
    detect_ms = detect_s / args.n * 1e3
    peer_end_to_end_per_s = 1e3 / (detect_ms + 1e3 / peer_pricing_per_s)
    load_after = _loadavg()
    print(f"\nNAS batch: {args.n} MobileNetV2-style graphs, {n_kernels / args.n:.1f} kernels each")
    print(f"  single predict from IR              {nas_ir_ms:9.3f} ms/model")
    print(f"  predict_many, IR -> ms              {models_per_s:9.0f} models/s "
          f"({models_per_all_s:.0f} over all repeats, {models_per_cpu_s:.0f} per CPU second)")
    print(f"    kernel detection (with names)     {detect_ms:9.3f} ms/model")
    print(f"    pricing only (kernels -> ms)      {pricing_per_s:9.0f} models/s")
    print(f"  nn-Meter-style pricing loop         {peer_pricing_per_s:9.0f} models/s "
          f"(batched pricing is {pricing_per_s / peer_pricing_per_s:.1f}x faster)")
    print(f"  nn-Meter-style, IR -> ms            {peer_end_to_end_per_s:9.0f} models/s "
          f"(predict_many is {models_per_s / peer_end_to_end_per_s:.1f}x faster)")
    print(f"load average after: {load_after}")
    shares = {label: round(t.fast_share, 2) for label, t in timings.items()}
    print(f"fast-state repeats: {min(shares.values()):.0%} to {max(shares.values()):.0%} per timing "
          f"(batch {shares['batch']:.0%}); probe best {probe.best_ms:.3f} ms")

    result.update({
        "onnx_ms_per_model": {k: round(v, 3) for k, v in onnx_ms.items()},
        "onnx_ms_per_model_max": round(max(onnx_ms.values()), 3),
        "onnx_cpu_ms_per_model": {k: round(v, 3) for k, v in onnx_cpu_ms.items()},
        "onnx_ms_per_model_all": {k: round(timings[f"onnx {k}"].median_all, 3) for k in onnx_ms},
        "ir_ms_per_model": {k: round(v, 3) for k, v in ir_ms.items()},
        "ir_ms_per_model_nas_graph": round(nas_ir_ms, 3),
        "ir_ms_per_model_max": round(max([*ir_ms.values(), nas_ir_ms]), 3),
        "batch_n_models": args.n,
        "batch_kernels_per_model": round(n_kernels / args.n, 1),
        "batch_models_per_s": round(models_per_s, 1),
        "batch_models_per_s_all": round(models_per_all_s, 1),
        "batch_models_per_cpu_s": round(models_per_cpu_s, 1),
        "batch_repeats": args.batch_repeat,
        "fast_state_share": shares,
        "batch_detect_ms_per_model": round(detect_ms, 4),
        "batch_pricing_models_per_s": round(pricing_per_s, 1),
        "nnmeter_style_pricing_models_per_s": round(peer_pricing_per_s, 1),
        "nnmeter_style_end_to_end_models_per_s": round(peer_end_to_end_per_s, 1),
        "speedup_pricing_vs_nnmeter_style": round(pricing_per_s / peer_pricing_per_s, 2),
        "speedup_end_to_end_vs_nnmeter_style": round(models_per_s / peer_end_to_end_per_s, 2),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "cpus": os.cpu_count(),
        "nnmeter_pipeline_measured": False,
        "targets": {"onnx_ms_max": 20, "ir_ms_max": 2, "batch_models_per_s_min": 2000},
    })
    result["targets_met"] = {
        "onnx": result["onnx_ms_per_model_max"] <= 20,
        "ir": result["ir_ms_per_model_max"] <= 2,
        "batch": result["batch_models_per_s"] >= 2000,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
