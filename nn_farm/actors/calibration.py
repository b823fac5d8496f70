"""Calibration: is each device still as fast as it was?

Every device runs the same reference model (the runtime's bundled tiny network)
when the farm starts using it and again every ``every_jobs`` jobs. Two numbers
come out, both stored per device in the result store:

- the speed factor: the device's reference latency over the median first
  reference latency of its class (1.0 = a typical member; 1.3 = 30% slower);
- the drift: its latest reference latency over its own first one, minus 1.

A drift beyond the threshold (thermal throttling, a foreign load) flags the
device: the results it stored since its last good calibration are marked, and
its results stay marked until a calibration reads normal again. The reference
is measured with the speed gate off, because the gate exists to hide exactly
the slowdowns calibration has to see.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass

from nn_farm.actors.config import CalibrationConfig
from nn_farm.farm.policy import MeasurePolicy, SpeedGate

log = logging.getLogger(__name__)

REFERENCE_POLICY = MeasurePolicy(warmup_runs=3, runs_exact=20, min_runs=1, speed_gate=SpeedGate(mode="off"))
"""Short, ungated: the reference run costs about 25 runs of a tiny model."""


def reference_format(runtime: str) -> str:
    from nn_farm.farm.runtimes import format_of

    return "json" if runtime == "simulated" else format_of(str(_bundled_path(runtime)))


def _bundled_path(runtime: str):
    from nn_farm.farm.runtimes import bundled_model

    return bundled_model(runtime)


def reference_model(runtime: str) -> bytes | None:
    """The reference model's bytes for a runtime, or None when it has none."""
    if runtime == "simulated":
        # The benchmark-only runtime has no file to ship: a fixed 1 ms "model".
        return b'{"simulated_latency_ms": 1.0, "jitter": 0.0}'
    try:
        path = _bundled_path(runtime)
    except Exception as exc:  # no bundled model for this runtime: calibration is skipped
        log.info("no reference model for runtime %s: %s", runtime, exc)
        return None
    with open(path, "rb") as f:
        return f.read()


@dataclass
class DeviceCalibration:
    """A device's calibration state (``baseline_ms``: its first reference latency)."""

    device_id: str
    device_class: str
    baseline_ms: float | None = None
    latest_ms: float | None = None
    flagged: bool = False
    failed: str = ""  # the reference itself failed on this device: no calibration
    last_good_unix_s: float = 0.0
    jobs_since: int = 0

    @property
    def drift(self) -> float:
        if not self.baseline_ms or self.latest_ms is None:
            return 0.0
        return self.latest_ms / self.baseline_ms - 1.0


class Calibrator:
    """Keeps the calibration state of every device and writes it to the store.

    Args:
        config: when to calibrate and the drift threshold.
        store: a :class:`~nn_farm.actors.store.ResultStore` (or None to keep it in memory).
    """

    def __init__(self, config: CalibrationConfig, store=None):
        self.config = config
        self.store = store
        self.devices: dict[str, DeviceCalibration] = {}

    def state(self, device_id: str, device_class: str = "") -> DeviceCalibration:
        if device_id not in self.devices:
            self.devices[device_id] = DeviceCalibration(device_id, device_class, last_good_unix_s=time.time())
        return self.devices[device_id]

    def due(self, device_id: str) -> bool:
        s = self.devices.get(device_id)
        if not self.config.enabled or (s is not None and s.failed):
            return False
        return s is None or s.baseline_ms is None or s.jobs_since >= self.config.every_jobs

    def count_job(self, device_id: str) -> None:
        self.state(device_id).jobs_since += 1

    def record(self, device_id: str, device_class: str, runtime_version: str, latency_ms: float) -> DeviceCalibration:
        """Take one reference measurement (ms); flag or clear the device; store it.

        Returns:
            The device's updated state (``flagged`` says whether it drifted).
        """
        s = self.state(device_id, device_class)
        now = time.time()
        s.jobs_since = 0
        if s.baseline_ms is None:
            s.baseline_ms = latency_ms
        s.latest_ms = latency_ms
        was_flagged = s.flagged
        s.flagged = abs(s.drift) > self.config.drift_threshold
        if s.flagged:
            reason = (f"drift: reference {latency_ms:.3f} ms vs {s.baseline_ms:.3f} ms at start "
                      f"({s.drift:+.1%}) on {device_id}")
            log.warning("device %s %s", device_id, reason)
            if self.store is not None and not was_flagged:
                n = self.store.flag_results(device_id, s.last_good_unix_s, reason)
                log.warning("flagged %d result(s) of %s measured since its last good calibration", n, device_id)
        else:
            s.last_good_unix_s = now
        if self.store is not None:
            self.store.add_calibration(device_id, device_class, runtime_version, latency_ms,
                                       self.speed_factor(device_id), s.drift, s.flagged)
        return s

    def failed(self, device_id: str, device_class: str, message: str) -> None:
        """The reference model failed on this device: stop calibrating it (the jobs go on)."""
        log.warning("calibration of %s failed, not calibrating it again: %s", device_id, message)
        self.state(device_id, device_class).failed = message

    def flag_for(self, device_id: str) -> str | None:
        """The flag to store with a new result from this device (None when it is fine)."""
        s = self.devices.get(device_id)
        if s is not None and s.flagged:
            return f"drift: device {device_id} {s.drift:+.1%} off its start speed"
        return None

    def speed_factor(self, device_id: str) -> float:
        """Latest reference latency over the class's median baseline (1.0 = typical)."""
        s = self.devices[device_id]
        peers = [d.baseline_ms for d in self.devices.values()
                 if d.device_class == s.device_class and d.baseline_ms]
        if not peers or s.latest_ms is None:
            return 1.0
        return s.latest_ms / statistics.median(peers)
