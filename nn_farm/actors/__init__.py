"""The Ray side of nn-farm: one actor per device, the scheduler, the result store.

    farm.yaml -> FarmConfig -> Farm.discover() (ListDevices on every agent)
    Farm.profile(jobs) -> device actors (DeviceWorker over gRPC) -> ResultStore (SQLite, WAL)

Names are loaded on first use, so importing this package does not import Ray.
"""

from __future__ import annotations

from nn_farm._lazy import lazy_exports

_LAZY = {
    "Farm": "nn_farm.actors.scheduler",
    "FarmDevice": "nn_farm.actors.scheduler",
    "Job": "nn_farm.actors.jobs",
    "JobResult": "nn_farm.actors.jobs",
    "ErrorKind": "nn_farm.actors.jobs",
    "policy_hash": "nn_farm.actors.jobs",
    "digest_of": "nn_farm.actors.jobs",
    "FarmConfig": "nn_farm.actors.config",
    "AgentEntry": "nn_farm.actors.config",
    "CalibrationConfig": "nn_farm.actors.config",
    "load_farm_config": "nn_farm.actors.config",
    "ResultStore": "nn_farm.actors.store",
    "DeviceWorker": "nn_farm.actors.device",
    "device_actor_class": "nn_farm.actors.device",
    "Calibrator": "nn_farm.actors.calibration",
    "init_ray": "nn_farm.actors.ray_init",
    "ray_environment": "nn_farm.actors.ray_init",
}

__all__, __getattr__, __dir__ = lazy_exports(globals(), _LAZY)
