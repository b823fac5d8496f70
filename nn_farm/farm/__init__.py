"""The device side of nn-farm: runtimes, measurement policy, the gRPC agent and its client.

    AgentClient --gRPC--> agent (Profiler) --> DeviceWorker process --> runtime --> Measurement

Knows nothing of Ray, builders or predictors. Names are loaded on first use so
that importing this package (and ``nn-farm --help``) stays fast.
"""

from __future__ import annotations

from nn_farm._lazy import lazy_exports

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

__all__, __getattr__, __dir__ = lazy_exports(globals(), _LAZY)
