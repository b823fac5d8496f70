"""The measurement loop: time a loaded model under a policy, gated by host speed.

    model file --Runtime.load--> Session --measure_session(policy, probe)--> Measurement

One measurement, with speed gating on (the default):

    1. wait for calm: the speed probe reads fast for a short period
       (see :meth:`SpeedProbe.wait_for_calm`; at most ``speed_gate.calm_wait_s``);
    2. warm up: ``warmup_runs`` runs and at least ``warmup_s``;
    3. sample: time one run, then one probe, until ``min_runs`` and ``min_s``
       are both reached, or ``max_runs`` or ``max_s`` is (``runs_exact``: exactly
       that many). A run counts as fast when both probes around it read within
       ``tolerance`` of the probe's best and, for a model computed on this CPU,
       the process was on the CPU for all but ``tolerance`` of the run (its CPU
       time is at least ``(1 - tolerance)`` of its wall time): the probe is too
       short to see another process taking the core in the middle of a run;
    4. if fewer than ``min_fast`` runs so far are fast, wait for calm again and
       do another attempt (1-3), up to ``max_attempts``; runs accumulate.

Statistics are over the kept runs (all runs when gating is off). A measurement
still short of ``min_fast`` fast runs after every attempt is reported with
speed_state "slow", and keeps the ``min_fast`` runs taken closest to the fast
state (uninterrupted runs first, then by lowest probe). Raw samples, probes and
the kept mask are all kept.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import socket
import statistics
import time

from nn_farm.errors import DeviceUnavailable, PolicyError
from nn_farm.farm.measurement import Measurement
from nn_farm.farm.policy import DEFAULT_POLICY, MeasurePolicy
from nn_farm.farm.runtimes import get_runtime
from nn_farm.farm.runtimes.base import Session
from nn_farm.farm.speed import SpeedProbe, default_probe
from nn_farm.farm.tensors import TensorSpec


def measure_session(session: Session, policy: MeasurePolicy | None = None,
                    probe: SpeedProbe | None = None) -> Measurement:
    """Measure a loaded model under ``policy``.

    Args:
        session: a loaded model (see :meth:`Runtime.load`).
        policy: how to measure; the default policy if None.
        probe: the speed probe (default: this process's shared probe). Unused
            when ``policy.speed_gate.mode`` is "off".

    Returns:
        A Measurement with samples_ms, probe_ms, kept, statistics, runs,
        kept_runs, speed_factor, speed_state, best_probe_ms, attempts,
        calm_wait_s, timestamps, device (the session's identity) and policy.
        Ids, runtime name and version are left for the caller.

    Raises:
        Whatever ``session.run`` raises (the runtime failed mid-measurement).
    """
    policy = policy or DEFAULT_POLICY
    gate = policy.speed_gate
    probe = (probe or default_probe()) if gate.enabled else None
    started_wall, started = time.time(), time.monotonic()
    samples: list[float] = []
    probes: list[float] = []
    on_cpu: list[bool] = []
    calm_wait_s = 0.0
    attempts = 0
    while True:
        attempts += 1
        attempt_began = time.monotonic()
        if probe is not None:
            calm_wait_s += probe.wait_for_calm(gate)
        _warm_up(session, policy)
        _sample(session, policy, probe, samples, probes, on_cpu)
        if probe is None or attempts >= gate.max_attempts:
            break
        if _fast_mask(probes, on_cpu, probe, gate.tolerance).count(True) >= gate.min_fast:
            break
        # Only retry if another attempt like this one still fits in the timeout.
        spent, last = time.monotonic() - started, time.monotonic() - attempt_began
        if spent + last > policy.timeout_s:
            break

    m = Measurement(device=dict(session.identity), policy=policy, samples_ms=samples,
                    started_unix_s=started_wall, attempts=attempts, calm_wait_s=calm_wait_s)
    if probe is None:
        m.kept = [True] * len(samples)
        m.speed_state = "ungated"
    else:
        fast = _fast_mask(probes, on_cpu, probe, gate.tolerance)
        m.probe_ms = probes
        m.best_probe_ms = probe.best_ms
        if fast.count(True) >= gate.min_fast:
            m.kept, m.speed_state = fast, "fast"
        else:
            m.kept, m.speed_state = _closest_to_fast(probes, on_cpu, gate.min_fast), "slow"
        kept_probes = [p for p, k in zip(probes, m.kept) if k]
        m.speed_factor = statistics.median(kept_probes) / probe.best_ms
    m.compute_stats()
    m.finished_unix_s = time.time()
    return m


def measure_file(runtime: str, path: str, inputs: list[TensorSpec] | None = None,
                 policy: MeasurePolicy | None = None, options: dict | None = None,
                 probe: SpeedProbe | None = None) -> Measurement:
    """Load a model file on a runtime of this host, measure it, and close it.

    Pins this process to ``policy.cpu_affinity`` (if any) for the duration, so
    call it in the process that should do the measuring (the agent runs it in
    a per-device worker process).

    Args:
        runtime: a runtime name (see :data:`RUNTIME_NAMES`).
        path: the model file.
        inputs: shapes for dynamic inputs (TensorSpec or dicts), matched by name.
        policy: how to measure; the default policy if None.
        options: runtime options, e.g. ``{"threads": 2}``.
        probe: the speed probe (default: this process's shared probe).

    Returns:
        A Measurement with runtime, runtime_version and the device identity
        (host, CPU, threads, delegate, affinity) filled in; ids left empty.

    Raises:
        DeviceUnavailable: the runtime or its device is not present.
        InvalidModel: missing, corrupt or unsupported model, or bad input shapes.
        PolicyError: ``cpu_affinity`` names cores this host does not have.
        ConfigError: an unknown runtime option.

    Example:
        >>> from nn_farm.farm.runtimes import bundled_model
        >>> m = measure_file("onnxruntime", bundled_model("onnxruntime"))  # doctest: +SKIP
        >>> print(m.summary())  # doctest: +SKIP
    """
    policy = policy or DEFAULT_POLICY
    rt = get_runtime(runtime)
    status = rt.status(options)
    if not status.available:
        raise DeviceUnavailable(f"runtime {runtime!r} is unavailable: {status.reason}")
    inputs = [s if isinstance(s, TensorSpec) else TensorSpec.from_dict(s) for s in inputs or []] or None
    with pinned_to(policy.cpu_affinity):
        with rt.load(path, inputs, options) as session:
            m = measure_session(session, policy, probe)
        m.device = {**host_identity(), **m.device}
    m.runtime, m.runtime_version = runtime, status.version
    return m


@contextlib.contextmanager
def pinned_to(cores):
    """Pin this process to ``cores`` for the block (no-op when empty), then restore.

    Raises:
        PolicyError: the host does not have those cores.
    """
    if not cores:
        yield
        return
    previous = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, cores)
    except OSError as exc:
        raise PolicyError(f"cpu_affinity {list(cores)} is not possible here "
                          f"(cores present: {sorted(previous)}): {exc}") from exc
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


def host_identity() -> dict:
    """This host and process: hostname, CPU model, OS and current CPU affinity."""
    return {**_host(), "cpu_affinity": sorted(os.sched_getaffinity(0))}


@functools.cache
def _host() -> dict:
    # Read once per process: a worker labels every measurement, and reading
    # /proc/cpuinfo each time cost more than the agent's whole pipe round trip.
    return {"hostname": socket.gethostname(), "cpu_model": _cpu_model(),
            "os": f"{platform.system()} {platform.release()}"}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _warm_up(session: Session, policy: MeasurePolicy) -> None:
    start, n = time.perf_counter(), 0
    while n < policy.warmup_runs or time.perf_counter() - start < policy.warmup_s:
        session.run()
        n += 1


def _sample(session: Session, policy: MeasurePolicy, probe: SpeedProbe | None,
            samples: list[float], probes: list[float], on_cpu: list[bool]) -> None:
    """One attempt's sampling phase, appending to ``samples``, ``probes``, ``on_cpu``."""
    # Each run's probe value is the slower of the probes just before and just
    # after it, so a slow spell that starts or ends during the run is caught.
    before = probe.sample() if probe is not None else 0.0
    tolerance = policy.speed_gate.tolerance
    check_cpu = getattr(session, "cpu_bound", False)
    start, n = time.perf_counter(), 0
    clock, cpu_clock = time.perf_counter, time.process_time
    while True:
        c0 = cpu_clock()
        t0 = clock()
        session.run()
        t1 = clock()
        c1 = cpu_clock()
        samples.append((t1 - t0) * 1e3)
        if probe is not None:
            on_cpu.append(not check_cpu or c1 - c0 >= (1.0 - tolerance) * (t1 - t0))
            after = probe.sample()
            probes.append(max(before, after))
            before = after
        n += 1
        if policy.runs_exact:
            if n >= policy.runs_exact:
                return
            continue
        elapsed = clock() - start
        if n >= policy.max_runs or elapsed >= policy.max_s:
            return
        if n >= policy.min_runs and elapsed >= policy.min_s:
            return


def _fast_mask(probes: list[float], on_cpu: list[bool], probe: SpeedProbe,
               tolerance: float) -> list[bool]:
    limit = probe.threshold_ms(tolerance)
    return [p <= limit and c for p, c in zip(probes, on_cpu)]


def _closest_to_fast(probes: list[float], on_cpu: list[bool], count: int) -> list[bool]:
    """The ``count`` runs nearest the fast state: uninterrupted first, then lowest probe."""
    order = sorted(range(len(probes)), key=lambda i: (not on_cpu[i], probes[i]))
    chosen = set(order[:count])
    return [i in chosen for i in range(len(probes))]
