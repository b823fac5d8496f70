"""A builder workspace on disk: its layout, and creating one with default configs.

    <workspace>/
      configs/ruletest_config.yaml        nn-Meter's rule-test keys and defaults
      configs/predictorbuild_config.yaml  nn-Meter's build keys, nn-farm's budget
      configs/backend_config.yaml         backend name, farm, device class
      fusion_rule_test/                   rule tester output (origin_testcases.json, ...)
      predictor_build/kernels/            generated kernel models
      predictor_build/results/            <kernel>_<mark>.json, profiled_<kernel>.json

Example:
    >>> ws = create_workspace("ws", backend="host-cpu-litert")   # doctest: +SKIP
    >>> ws.ruletest_config.name
    'ruletest_config.yaml'
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

import yaml

from nn_farm.builder import config as cfg
from nn_farm.errors import ConfigError

__all__ = ["Workspace", "create_workspace"]


@dataclass(frozen=True)
class Workspace:
    """Paths of one workspace (nothing is created by making this record)."""

    root: pathlib.Path

    @property
    def configs_dir(self) -> pathlib.Path:
        return self.root / "configs"

    @property
    def ruletest_config(self) -> pathlib.Path:
        return self.configs_dir / cfg.RULETEST_FILE

    @property
    def predbuild_config(self) -> pathlib.Path:
        return self.configs_dir / cfg.PREDBUILD_FILE

    @property
    def backend_config(self) -> pathlib.Path:
        return self.configs_dir / cfg.BACKEND_FILE

    @property
    def fusion_rule_test(self) -> pathlib.Path:
        return self.root / "fusion_rule_test"

    @property
    def predictor_build(self) -> pathlib.Path:
        return self.root / "predictor_build"

    @property
    def kernels_dir(self) -> pathlib.Path:
        return self.predictor_build / "kernels"

    @property
    def results_dir(self) -> pathlib.Path:
        return self.predictor_build / "results"


_HEADERS = {
    cfg.RULETEST_FILE: "Fusion rule tester settings (nn-Meter's ruletest_config.yaml keys).\n"
                       "EMP_ALPHA: a pair is fused when T1 + T2 - T12 > EMP_ALPHA * min(T1, T2).",
    cfg.PREDBUILD_FILE: "Kernel predictor build settings (nn-Meter's predictorbuild_config.yaml keys).\n"
                        "Budgets are nn-farm's defaults, sized for one host CPU; raise them for a\n"
                        "real farm. ITERATION counts the prior round, so 2 = one adaptive round.",
    cfg.BACKEND_FILE: "Where kernels are measured. FARM: 'embedded' (an agent in the build\n"
                      "process, on this host's CPU) or the path of a farm.yaml.",
}


def _dump(path: pathlib.Path, data: dict) -> None:
    header = "".join(f"# {line}\n" for line in _HEADERS[path.name].splitlines())
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def create_workspace(workspace: str | os.PathLike, backend: str = cfg.DEFAULT_BACKEND,
                     farm: str | os.PathLike | None = None, device_class: str | None = None,
                     overwrite: bool = False) -> Workspace:
    """Create a workspace with default configs for one backend.

    Args:
        workspace: the directory (created if missing).
        backend: a builtin backend (``host-cpu-litert``, ``host-cpu-onnxruntime``,
            ``host-cpu-openvino``, ``host-cpu-torch``, ``remote-farm``) or a
            registered one.
        farm: the farm.yaml for a non-host backend (required for ``remote-farm``).
        device_class: the device class to measure on (default: the backend name).
        overwrite: replace existing config files; without it they are kept and
            only missing ones are written, so edits are never lost.

    Returns:
        The :class:`Workspace`.

    Raises:
        ConfigError: unknown backend, or a remote backend without a farm file.
    """
    from nn_farm.builder import registry

    known = registry.names("backend")
    if backend not in known:
        raise ConfigError(f"unknown backend {backend!r} (known: {', '.join(known)}; "
                          f"register others with nn-farm register --backend meta.yaml)",
                          key="backend")
    local = backend.startswith("host-cpu-")
    if not local and farm is None and backend == registry.REMOTE_BACKEND:
        raise ConfigError("the remote-farm backend needs --farm FARM_YAML", key="farm")
    farm_value = str(pathlib.Path(farm).resolve()) if farm is not None and not local else None
    backend_config = cfg.default_backend_config(backend, farm_value, device_class)
    meta = registry.get_meta("backend", backend)
    if meta and meta.get("defaultConfigFile"):
        backend_config["PARAMS"] = cfg.load_yaml(meta["defaultConfigFile"]) or {}

    ws = Workspace(pathlib.Path(workspace).resolve())
    for directory in (ws.configs_dir, ws.fusion_rule_test, ws.kernels_dir, ws.results_dir):
        directory.mkdir(parents=True, exist_ok=True)
    files = {
        ws.ruletest_config: cfg.default_ruletest_config(),
        ws.predbuild_config: cfg.default_predbuild_config(),
        ws.backend_config: backend_config,
    }
    for path, data in files.items():
        if overwrite or not path.exists():
            _dump(path, data)
    return ws
