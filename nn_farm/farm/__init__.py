"""The device side of nn-farm: runtimes, measurement policy, the gRPC agent and its client.

    AgentClient --gRPC--> agent (Profiler) --> DeviceWorker process --> runtime --> Measurement

Knows nothing of Ray, builders or predictors. Names are loaded on first use so
that importing this package (and ``nn-farm --help``) stays fast.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "AgentClient": "nn_farm.farm.client",
    "DeviceInfo": "nn_farm.farm.client",
    "start_agent": "nn_farm.farm.agent",
    "serve": "nn_farm.farm.agent",
    "RunningAgent": "nn_farm.farm.agent",
    "Agent": "nn_farm.farm.agent",
    "AgentConfig": "nn_farm.farm.devices",
    "DeviceConfig": "nn_farm.farm.devices",
    "load_config": "nn_farm.farm.devices",
    "default_devices": "nn_farm.farm.devices",
    "ModelCache": "nn_farm.farm.cache",
    "MeasurePolicy": "nn_farm.farm.policy",
    "SpeedGate": "nn_farm.farm.policy",
    "Measurement": "nn_farm.farm.measurement",
    "TensorSpec": "nn_farm.farm.tensors",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
