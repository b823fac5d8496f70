"""What the agent and gRPC add to a measurement, measured side by side in one run.

    python benchmarks/agent_overhead.py [--n 200] [--runtime onnxruntime]

Profiles the bundled tiny conv network N times through an agent over loopback
(client -> gRPC -> agent -> worker process -> warm session) and, interleaved
call by call, the same in this process:

- ``measure_file``: what a caller without the agent would run (loads the model
  every call);
- ``measure_session`` on a session loaded once: the runtime's own work and
  nothing else, so agent wall minus this is the pure agent + gRPC overhead.

Part 1 uses a 5-run policy so the overhead is not drowned by runtime work;
part 2 gives the overhead's share of wall time for 50-run policies. The
overhead is estimated per call, paired: wall time minus the span the
measurement itself reports, agent minus warm session. Target:
under 2 ms per call, under 5% of wall for a 50-run policy. Last line: one JSON
object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time


def _timed(fn) -> tuple[float, float]:
    """Wall time of ``fn()`` and the part of it the measurement itself spanned, in ms."""
    start = time.perf_counter()
    m = fn()
    wall = (time.perf_counter() - start) * 1000.0
    return wall, (m.finished_unix_s - m.started_unix_s) * 1000.0


def compare(n: int, policy, client, digest, device_id, runtime, path, session, label: str) -> dict:
    """Interleave the three ways N times; medians in ms.

    Two overhead estimates: the difference of median walls (agent minus warm
    session), and a paired one, the median of (wall - the measurement's own span)
    per call, agent minus warm session. The paired one cancels the runtime's
    noise inside each call, which dominates when a policy runs for 0.5 s.
    """
    from tqdm import tqdm

    from nn_farm.farm.measure import measure_file, measure_session
    from nn_farm.farm.policy import MeasurePolicy

    # On the wire 0 means "default"; measure in-process exactly what the agent will.
    same = MeasurePolicy.from_proto(policy.to_proto())
    ways = {
        "agent": lambda: client.profile(digest, device_id, policy=policy),
        "in_process_file": lambda: measure_file(runtime, str(path), policy=same),
        "in_process_session": lambda: measure_session(session, same),
    }
    walls: dict[str, list[float]] = {k: [] for k in ways}
    outside: dict[str, list[float]] = {k: [] for k in ways}
    order = list(ways)
    for i in tqdm(range(n), desc=label, unit="call"):
        # Rotate the order so no way always runs right after another.
        for name in order[i % 3:] + order[:i % 3]:
            wall, span = _timed(ways[name])
            walls[name].append(wall)
            outside[name].append(wall - span)
    med = {k: statistics.median(v) for k, v in walls.items()}
    paired = statistics.median(outside["agent"]) - statistics.median(outside["in_process_session"])
    return {
        "n": n,
        "median_ms": {k: round(v, 4) for k, v in med.items()},
        "overhead_ms": round(paired, 4),
        "overhead_median_difference_ms": round(med["agent"] - med["in_process_session"], 4),
        "overhead_vs_measure_file_ms": round(med["agent"] - med["in_process_file"], 4),
        "ratio_agent_over_session": round(med["agent"] / med["in_process_session"], 4),
        "ratio_agent_over_file": round(med["agent"] / med["in_process_file"], 4),
        "overhead_share_of_wall": round(paired / med["agent"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="calls per way for the per-call overhead")
    parser.add_argument("--n50", type=int, default=30, help="calls per way for the 50-run policies")
    parser.add_argument("--runtime", default="onnxruntime")
    args = parser.parse_args()

    from nn_farm.farm.agent import start_agent
    from nn_farm.farm.client import AgentClient
    from nn_farm.farm.devices import AgentConfig, DeviceConfig
    from nn_farm.farm.policy import MeasurePolicy
    from nn_farm.farm.runtimes import bundled_model, get_runtime

    path = bundled_model(args.runtime)
    load_before = os.getloadavg()[0]  # the host is shared: say how busy it was
    device_id = f"bench/{args.runtime}"
    ungated = {"mode": "off"}
    small = MeasurePolicy.from_dict({"warmup_runs": 1, "warmup_s": 1e-6, "runs_exact": 5, "speed_gate": ungated})
    exact50 = MeasurePolicy.from_dict({"warmup_runs": 5, "warmup_s": 1e-6, "runs_exact": 50, "speed_gate": ungated})
    # warmup_s=0 would read as "default" (0.2 s) on the wire, hence 1e-6.
    # The default policy asking for 50 runs: warm-up and sampling times apply (gating off so
    # the three ways are not told apart by how long each waited for calm).
    min50 = MeasurePolicy.from_dict({"min_runs": 50, "speed_gate": ungated})

    with tempfile.TemporaryDirectory() as cache_dir:
        config = AgentConfig(port=0, cache_dir=cache_dir, devices=(DeviceConfig(device_id, "bench", args.runtime),))
        with start_agent(config, warm=True) as running, AgentClient(running.address, token="") as client:
            digest = client.put_model(path)
            client.profile(digest, device_id, policy=small)  # worker warm, session cached
            with get_runtime(args.runtime).load(str(path)) as session:
                per_call = compare(args.n, small, client, digest, device_id, args.runtime, path, session,
                                   "5-run policy")
                policy50 = compare(args.n50, exact50, client, digest, device_id, args.runtime, path, session,
                                   "exactly 50 runs")
                default50 = compare(args.n50, min50, client, digest, device_id, args.runtime, path, session,
                                    "min_runs=50")

    load = (round(load_before, 2), round(os.getloadavg()[0], 2))
    print()
    print(f"model: bundled tiny conv network on {args.runtime}, agent over loopback gRPC; "
          f"1-min load average {load[0]} before, {load[1]} after ({os.cpu_count()} CPUs)")
    for label, r in (("5-run policy", per_call), ("exactly 50 runs, no warm-up time", policy50),
                     ("min_runs=50 (default warm-up 0.2 s, min 0.3 s)", default50)):
        m = r["median_ms"]
        print(f"{label}:")
        print(f"  median wall per call: agent {m['agent']:.3f} ms, in-process measure_file "
              f"{m['in_process_file']:.3f} ms, in-process warm session {m['in_process_session']:.3f} ms")
        print(f"  agent + gRPC overhead {r['overhead_ms']:.3f} ms per call, paired "
              f"({r['overhead_median_difference_ms']:.3f} ms as a difference of medians), "
              f"{100 * r['overhead_share_of_wall']:.2f}% of wall; ratio of walls {r['ratio_agent_over_session']:.3f} "
              f"vs warm session, {r['ratio_agent_over_file']:.3f} vs measure_file")
    result = {
        "benchmark": "agent_overhead",
        "runtime": args.runtime,
        "loadavg_1min_before_after": load,
        "per_call": per_call,
        "policy_exact50": policy50,
        "policy_min50": default50,
        "target_overhead_ms": 2.0,
        "target_share_50run": 0.05,
        "overhead_under_2ms": per_call["overhead_ms"] < 2.0,
        "share_under_5pct_exact50": policy50["overhead_share_of_wall"] < 0.05,
        "share_under_5pct_min50": default50["overhead_share_of_wall"] < 0.05,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
