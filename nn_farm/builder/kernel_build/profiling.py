"""Kernel records -> farm jobs -> latencies: how the builder measures kernels.

A record is nn-Meter's ``{kernel_type: {id: {"model": path, "config": {...}}}}``.
Each distinct model becomes one :class:`~nn_farm.actors.jobs.Job`: an existing file
is sent as it is; a missing one is a *generator* job, built and converted by
:func:`nn_farm.builder.convert.build_and_convert` in a Ray task running ahead of the
devices, so conversion on the cluster's CPUs overlaps measurement and no device
waits. Job names are the model file names (kernel type + a hash of the config,
format and generator version), so a rerun finds finished kernels in the result
store before generating anything.
"""

from __future__ import annotations

import functools
import math
import os
import pathlib
from dataclasses import dataclass, field

__all__ = ["ProfileOutcome", "kernel_jobs", "profile_records", "latency_text", "parse_latency"]


def latency_text(mean_ms: float, std_ms: float) -> str:
    """nn-Meter's latency string, ``"mean +- std"`` in ms."""
    return f"{mean_ms} +- {0.0 if math.isnan(std_ms) else std_ms}"


def parse_latency(value) -> float:
    """The mean (ms) of a latency string ``"mean +- std"``, a number, or a dict with ``avg``."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return float(value.get("avg", value.get("mean_ms")))
    return float(str(value).split("+-")[0])


@dataclass
class ProfileOutcome:
    """What one profiling run gave.

    Attributes:
        latency: ``{(kernel_type, id): (mean_ms, std_ms)}`` of measured kernels.
        errors: ``{(kernel_type, id): message}`` of kernels that failed.
        measured: kernels measured in this run (not found in the store).
        reused: kernels whose measurement came from the store.
        device_s: device time spent measuring in this run (sum over devices).
        device_s_total: device time of every kernel returned, stored ones included.
        runtime, runtime_version: the runtime that measured (from a measurement).
    """

    latency: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    measured: int = 0
    reused: int = 0
    device_s: float = 0.0
    device_s_total: float = 0.0
    runtime: str = ""
    runtime_version: str = ""


def kernel_jobs(models: dict, fmt: str, implement: str, kernels_dir: str | os.PathLike):
    """One job per distinct model file of the records.

    Returns:
        ``(jobs, owners)``: the jobs, and ``{job name: [(kernel_type, id), ...]}``.
    """
    from nn_farm.actors.jobs import Job
    from nn_farm.builder.convert import build_and_convert

    jobs, owners = [], {}
    for kernel_type, entries in models.items():
        for kid, entry in entries.items():
            path = pathlib.Path(entry.get("converted_model") or entry["model"])
            name = path.name
            if name in owners:
                owners[name].append((kernel_type, kid))
                continue
            owners[name] = [(kernel_type, kid)]
            meta = {"kernel_type": kernel_type, "id": kid, "config": dict(entry["config"])}
            if path.exists():
                jobs.append(Job.from_path(path, name=name, group=kernel_type, meta=meta))
            else:
                generate = functools.partial(build_and_convert, "kernel", kernel_type, dict(entry["config"]),
                                             implement, fmt, str(path.parent if path.parent != pathlib.Path(".")
                                                                 else kernels_dir))
                jobs.append(Job(name=name, generate=generate, format=fmt, group=kernel_type, meta=meta))
    return jobs, owners


def profile_records(backend, models: dict, kernels_dir: str | os.PathLike) -> ProfileOutcome:
    """Measure every kernel of the records on the backend's device class, in one farm run.

    Every kernel type in ``models`` goes into the same run, so devices never idle
    between kernel types. Latencies are also written into the records
    (``entry["latency"] = "mean +- std"``), nn-Meter's in-memory format.

    Args:
        backend: an open :class:`~nn_farm.builder.backend.Backend`.
        models: nn-Meter's kernel records.
        kernels_dir: where generated model files go.

    Returns:
        A :class:`ProfileOutcome`.
    """
    jobs, owners = kernel_jobs(models, backend.format, backend.implement, kernels_dir)
    out = ProfileOutcome()
    if not jobs:
        return out
    for result in backend.farm.profile(jobs, device_class=backend.device_class, policy=backend.policy,
                                       stream=True):
        m = result.measurement
        for kernel_type, kid in owners[result.job_name]:
            entry = models[kernel_type][kid]
            if result.ok:
                out.latency[(kernel_type, kid)] = (m.mean_ms, m.std_ms)
                entry["latency"] = latency_text(m.mean_ms, m.std_ms)
                entry["converted_model"] = entry.get("converted_model") or entry["model"]
            else:
                out.errors[(kernel_type, kid)] = f"{result.error_kind.name}: {result.error}"
                entry.pop("latency", None)
        if result.ok:
            spent = max(0.0, (m.finished_unix_s or 0.0) - (m.started_unix_s or 0.0))
            out.device_s_total += spent
            if result.skipped:
                out.reused += 1
            else:
                out.measured += 1
                out.device_s += spent
            if not out.runtime:
                out.runtime, out.runtime_version = m.runtime, m.runtime_version
    return out
