"""``nn-farm runtimes``: the bundled tiny model on every runtime of this host (was ``nn-farm demo``).

Starts an in-process agent for this host's CPU, uploads the bundled tiny conv
network once per format, and profiles it on every runtime through the agent,
over real gRPC on loopback. One line per runtime; a runtime that is missing or
fails is a line saying so, not an abort.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from dataclasses import dataclass
from typing import TextIO

# Short but still gated: the demo must finish in a minute or two.
DEMO_POLICY = {"warmup_runs": 5, "min_runs": 30, "min_s": 0.3, "max_s": 5.0, "timeout_s": 120.0,
               "speed_gate": {"calm_wait_s": 3.0, "max_attempts": 2}}


@dataclass
class DemoLine:
    """One runtime's outcome: a measurement, or why there is none."""

    device_id: str
    runtime: str
    version: str = ""
    measurement: object | None = None
    error: str = ""

    def format(self) -> str:
        m = self.measurement
        version = self.version.split("-")[0] or "-"  # OpenVINO appends its build id
        if m is None:
            return f"{self.runtime:<12} {version:<10} {self.error}"
        return (f"{self.runtime:<12} {version:<10} {m.mean_ms:8.3f} +- {m.std_ms:6.3f} ms  "
                f"median {m.median_ms:8.3f} ms  {m.kept_runs:>3}/{m.runs:<3} kept  speed {m.speed_state}")


def run_demo(*, out: TextIO = sys.stdout, policy=None, progress: bool = True) -> list[DemoLine]:
    """Profile the bundled model on every host runtime through an in-process agent.

    Args:
        out: where the table goes.
        policy: a :class:`~nn_farm.farm.policy.MeasurePolicy`; default :data:`DEMO_POLICY`.
        progress: show a tqdm bar (with ETA) on stderr.

    Returns:
        One :class:`DemoLine` per device, in device order.
    """
    from tqdm import tqdm

    from nn_farm import errors
    from nn_farm.farm.agent import start_agent
    from nn_farm.farm.client import AgentClient
    from nn_farm.farm.devices import AgentConfig, default_devices
    from nn_farm.farm.policy import MeasurePolicy
    from nn_farm.farm.runtimes import bundled_model

    policy = policy or MeasurePolicy.from_dict(DEMO_POLICY)
    logging.getLogger("nn_farm.farm.agent").setLevel(logging.WARNING)  # keep the table readable
    lines: list[DemoLine] = []
    with tempfile.TemporaryDirectory(prefix="nn-farm-demo-") as cache_dir:
        config = AgentConfig(host="127.0.0.1", port=0, cache_dir=cache_dir, devices=default_devices())
        print(f"starting an agent for this host's CPU ({len(config.devices)} runtimes)...", file=out, flush=True)
        with start_agent(config, warm=True) as running, AgentClient(running.address, token="") as client:
            devices = client.list_devices()
            print(f"agent at {running.address}; profiling the bundled tiny conv network\n", file=out, flush=True)
            print(f"{'runtime':<12} {'version':<10} {'mean +- std':>22}  {'median':>15}  kept/runs  speed",
                  file=out)
            for device in tqdm(devices, desc="runtimes", unit="runtime", disable=not progress, file=sys.stderr):
                line = DemoLine(device.id, device.runtime, device.runtime_version)
                if not device.available:
                    line.error = f"unavailable: {device.unavailable_reason}"
                else:
                    try:
                        digest = client.put_model(bundled_model(device.runtime))
                        line.measurement = client.profile(digest, device.id, policy=policy)
                        line.version = line.measurement.runtime_version or line.version
                    except errors.FarmError as exc:
                        line.error = f"failed: {type(exc).__name__}: {exc}"
                lines.append(line)
                tqdm.write(line.format(), file=out)
    return lines
