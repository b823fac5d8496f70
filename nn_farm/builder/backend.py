"""Open the farm a workspace's backend config names, for the rule tester and the builder.

A ``host-cpu-<runtime>`` backend (``FARM: embedded``) starts a gRPC agent inside this
process, serving ``DEVICES`` devices of this host's CPU, each pinned to its own core
and running ``THREADS`` threads; the farm's Ray actors talk to it over loopback, the
same path a remote agent takes. Any other backend opens the farm.yaml in ``FARM``.

Example:
    >>> with open_backend("ws") as backend:                          # doctest: +SKIP
    ...     results = backend.farm.profile(jobs, device_class=backend.device_class)
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import tempfile
from dataclasses import dataclass
from typing import Iterator

from nn_farm.builder import config as cfg
from nn_farm.errors import ConfigError

# The model file format each runtime measures, for builder-generated models.
RUNTIME_FORMATS = {"litert": "tflite", "onnxruntime": "onnx", "openvino": "onnx"}
# The framework a format is generated from.
FORMAT_IMPLEMENTS = {"tflite": "tensorflow", "onnx": "torch", "openvino": "torch"}
STORE_NAME = "results.db"
# The runtime option THREADS sets (litert, openvino and torch call it "threads").
THREAD_OPTIONS = {"onnxruntime": "intra_op_threads"}


@dataclass
class Backend:
    """An open farm, with what the builder needs to send it jobs.

    Attributes:
        farm: the :class:`~nn_farm.actors.scheduler.Farm`.
        device_class: the class jobs go to.
        policy: the measurement policy for builder jobs.
        format: the model format the devices measure (``tflite``, ``onnx``, ...).
        implement: the framework models are generated in for that format.
        name: the backend's name.
        devices: devices in the class.
    """

    farm: object
    device_class: str
    policy: object
    format: str
    implement: str
    name: str
    devices: int


def model_format(backend_config: dict) -> str:
    """The model format a backend's devices measure (``FORMAT``, else from ``RUNTIME``)."""
    if backend_config.get("FORMAT"):
        return backend_config["FORMAT"]
    runtime = backend_config.get("RUNTIME", "litert")
    if runtime not in RUNTIME_FORMATS:
        raise ConfigError(f"the builder cannot generate models for runtime {runtime!r}; "
                          f"use one of {sorted(RUNTIME_FORMATS)} or set FORMAT", key="RUNTIME")
    return RUNTIME_FORMATS[runtime]


def embedded_devices(backend_config: dict, count: int | None = None):
    """The agent devices of an embedded backend: one per core, pinned, ``THREADS`` threads each."""
    from nn_farm.farm.devices import DeviceConfig

    count = count or int(backend_config.get("DEVICES", 1))
    cores = sorted(os.sched_getaffinity(0))
    if count > len(cores):
        raise ConfigError(f"{count} embedded devices asked for, but this process may use only "
                          f"{len(cores)} core(s)", key="DEVICES")
    runtime = backend_config["RUNTIME"]
    threads = int(backend_config.get("THREADS", 1))
    # Each runtime names its thread option its own way.
    options = {THREAD_OPTIONS.get(runtime, "threads"): threads}
    # The last cores first: core 0 carries the driver, Ray and conversion work.
    picked = cores[len(cores) - count:]
    return tuple(DeviceConfig(id=f"host-cpu{core}/{runtime}", device_class=backend_config["DEVICE_CLASS"],
                              runtime=runtime, options=dict(options), cpu_affinity=(core,))
                 for core in picked)


def measure_policy(backend_config: dict):
    """The builder's measurement policy: the farm default, changed by the config's ``POLICY``."""
    from nn_farm.farm.policy import MeasurePolicy

    return MeasurePolicy.from_dict(backend_config.get("POLICY") or {})


@contextlib.contextmanager
def open_backend(workspace: str | os.PathLike | None = None, *, backend_config: dict | None = None,
                 devices: int | None = None, store: str | os.PathLike | None = None,
                 ray_address: str | None = None, progress: bool = True,
                 calibrate: bool | None = None) -> Iterator[Backend]:
    """Open a workspace's backend as a farm; close it (and any embedded agent) on exit.

    Args:
        workspace: the workspace whose ``configs/backend_config.yaml`` is read.
        backend_config: a checked backend config instead of the workspace's.
        devices: embedded backends: how many host cores to measure on (default
            the config's ``DEVICES``, else 1).
        store: the result store (default ``<workspace>/results.db``), so an
            interrupted run resumes where it stopped.
        ray_address: the Ray cluster to join (None: the running one, or a local one).
        progress: show the farm's progress bar.
        calibrate: passed to the farm (default: its config's).

    Raises:
        ConfigError: no workspace and no config, a bad config, too many devices.
    """
    from nn_farm.actors.config import AgentEntry, FarmConfig, load_farm_config
    from nn_farm.actors.scheduler import Farm

    if backend_config is None:
        if workspace is None:
            raise ConfigError("give a workspace or a backend config", key="workspace")
        backend_config = cfg.ConfigManager().init(workspace).get_module("backend")
    if store is None:
        if workspace is None:
            raise ConfigError("give a workspace or a store path", key="store")
        store = pathlib.Path(workspace) / STORE_NAME
    fmt = model_format(backend_config)
    if fmt not in FORMAT_IMPLEMENTS:
        raise ConfigError(f"unknown model format {fmt!r} (known: {sorted(FORMAT_IMPLEMENTS)})", key="FORMAT")
    policy = measure_policy(backend_config)

    with contextlib.ExitStack() as stack:
        if backend_config.get("FARM", cfg.EMBEDDED_FARM) == cfg.EMBEDDED_FARM:
            from nn_farm.farm.agent import start_agent
            from nn_farm.farm.devices import AgentConfig

            logging.getLogger("nn_farm.farm.agent").setLevel(logging.WARNING)
            cache = stack.enter_context(tempfile.TemporaryDirectory(prefix="nn-farm-backend-"))
            agent_devices = embedded_devices(backend_config, devices)
            running = stack.enter_context(start_agent(
                AgentConfig(host="127.0.0.1", port=0, cache_dir=cache, devices=agent_devices), warm=True))
            farm_config = FarmConfig(agents=(AgentEntry(running.address),), store=str(store))
        else:
            farm_path = pathlib.Path(backend_config["FARM"])
            if not farm_path.is_absolute() and workspace is not None:
                farm_path = pathlib.Path(workspace) / "configs" / farm_path
            farm_config = load_farm_config(farm_path)
        farm = Farm(farm_config, store=str(store), ray_address=ray_address, progress=progress,
                    calibrate=calibrate)
        stack.callback(farm.close)
        device_class = backend_config["DEVICE_CLASS"]
        pool = farm.device_classes().get(device_class, [])
        if not pool:
            raise ConfigError(f"the farm has no device of class {device_class!r} "
                              f"(it has: {sorted(farm.device_classes())})", key="DEVICE_CLASS")
        yield Backend(farm=farm, device_class=device_class, policy=policy, format=fmt,
                      implement=FORMAT_IMPLEMENTS[fmt], name=backend_config["BACKEND"], devices=len(pool))
