"""What a farm is made of: ``farm.yaml`` read into small frozen records.

    store: results.db                  # optional; the SQLite result store
    agents:                            # required: at least one
      - address: 10.0.0.2:50051
        token_file: /etc/nn-farm/token # or token: ..., or env NN_FARM_TOKEN
        root_cert: ca.pem              # TLS: the CA that signed the agent's cert
        node_resource: nnfarm_host_a   # Ray custom resource on that host's node
        devices: [host-cpu/onnxruntime]  # optional subset of the agent's devices
    device_classes: [host-cpu-onnxruntime]  # optional: only these classes
    calibration:                       # optional
      every_jobs: 500                  # re-run the reference after this many jobs
      drift_threshold: 0.1             # flag a device 10% off its start speed

Devices themselves are discovered from each agent's ``ListDevices``. Any unknown
or wrongly typed key is a :class:`~nn_farm.errors.ConfigError` naming the file and
the key.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass, field
from typing import Any

from nn_farm.errors import ConfigError

TOKEN_ENV = "NN_FARM_TOKEN"
DEFAULT_STORE = "nn-farm-results.db"


@dataclass(frozen=True)
class AgentEntry:
    """One agent of the farm.

    Attributes:
        address: ``host:port`` of the agent's gRPC server.
        token: bearer token (None: no auth).
        root_cert: PEM bytes of the CA for TLS (None: plaintext).
        node_resource: the Ray custom resource that pins this agent's device
            actors to its host's node; used only where the cluster declares it.
            Default ``nnfarm_agent_<host>``.
        devices: device ids to use (empty: all the agent serves).
    """

    address: str
    token: str | None = None
    root_cert: bytes | None = None
    node_resource: str = ""
    devices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        host, sep, port = self.address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"must be host:port, got {self.address!r}", key="address")
        object.__setattr__(self, "devices", tuple(self.devices))
        if not self.node_resource:
            object.__setattr__(self, "node_resource", f"nnfarm_agent_{host}")

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0]


@dataclass(frozen=True)
class CalibrationConfig:
    """When devices re-run the reference model, and how much drift is too much.

    Attributes:
        enabled: run calibration at all.
        every_jobs: a device re-runs the reference after this many jobs.
        drift_threshold: relative change of the reference latency from the
            device's first calibration that flags the device (0.1 = 10%).
    """

    enabled: bool = True
    every_jobs: int = 500
    drift_threshold: float = 0.10

    def __post_init__(self) -> None:
        if self.every_jobs <= 0:
            raise ConfigError(f"must be positive, got {self.every_jobs}", key="calibration.every_jobs")
        if not 0 < self.drift_threshold < 10:
            raise ConfigError(f"must be in (0, 10), got {self.drift_threshold}",
                              key="calibration.drift_threshold")


@dataclass(frozen=True)
class FarmConfig:
    """A farm: its agents, the classes to use, the store and calibration.

    Example:
        >>> FarmConfig(agents=(AgentEntry("127.0.0.1:50051"),)).agents[0].node_resource
        'nnfarm_agent_127.0.0.1'
    """

    agents: tuple[AgentEntry, ...] = ()
    device_classes: tuple[str, ...] = ()
    store: str = DEFAULT_STORE
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "agents", tuple(self.agents))
        object.__setattr__(self, "device_classes", tuple(self.device_classes))
        addresses = [a.address for a in self.agents]
        dupes = sorted({a for a in addresses if addresses.count(a) > 1})
        if dupes:
            raise ConfigError(f"duplicate agent address(es) {dupes}", key="agents")


_TOP_KEYS = {"store": str, "agents": list, "device_classes": list, "calibration": dict}
_AGENT_KEYS = {"address": str, "token": str, "token_file": str, "root_cert": str,
               "node_resource": str, "devices": list}
_CALIBRATION_KEYS = {"enabled": bool, "every_jobs": int, "drift_threshold": (int, float)}


def load_farm_config(path: str | os.PathLike) -> FarmConfig:
    """Read ``farm.yaml`` into a :class:`FarmConfig`.

    Relative paths inside the file (store, token_file, root_cert) are taken
    relative to the file's directory.

    Args:
        path: the YAML file.

    Returns:
        The farm config, tokens and certificates read.

    Raises:
        ConfigError: unreadable or malformed YAML, an unknown key, a wrong type,
            no agents, an unreadable token or certificate file.
    """
    import yaml

    where = str(path)
    base = pathlib.Path(path).parent
    try:
        raw = yaml.safe_load(pathlib.Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=where) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML: {exc}", path=where) from exc
    if not isinstance(raw, dict):
        raise ConfigError("top level must be a mapping", path=where)
    _check(raw, _TOP_KEYS, where, "")
    agents_raw = raw.get("agents")
    if not agents_raw:
        raise ConfigError("at least one agent is required", path=where, key="agents")
    agents = tuple(_agent(a, i, where, base) for i, a in enumerate(agents_raw))
    classes = raw.get("device_classes") or []
    if not all(isinstance(c, str) for c in classes):
        raise ConfigError(f"must be a list of class names, got {classes!r}", path=where,
                          key="device_classes")
    cal = _check(raw.get("calibration") or {}, _CALIBRATION_KEYS, where, "calibration.")
    store = str(_resolve(base, raw.get("store", DEFAULT_STORE)))
    try:
        return FarmConfig(agents=agents, device_classes=tuple(classes), store=store,
                          calibration=CalibrationConfig(**cal))
    except ConfigError as exc:
        raise ConfigError(str(exc), path=where) from exc


def _agent(raw: Any, index: int, where: str, base: pathlib.Path) -> AgentEntry:
    name = f"agents[{index}]"
    d = _check(raw, _AGENT_KEYS, where, f"{name}.")
    if not d.get("address"):
        raise ConfigError("is required", path=where, key=f"{name}.address")
    if "token" in d and "token_file" in d:
        raise ConfigError("give token or token_file, not both", path=where, key=f"{name}.token")
    token = d.get("token")
    if "token_file" in d:
        token = _read(base, d["token_file"], where, f"{name}.token_file").decode().strip()
        if not token:
            raise ConfigError(f"token file {d['token_file']} is empty", path=where, key=f"{name}.token_file")
    token = token or os.environ.get(TOKEN_ENV) or None
    cert = _read(base, d["root_cert"], where, f"{name}.root_cert") if "root_cert" in d else None
    devices = d.get("devices", [])
    if not all(isinstance(x, str) for x in devices):
        raise ConfigError(f"must be a list of device ids, got {devices!r}", path=where, key=f"{name}.devices")
    try:
        return AgentEntry(address=d["address"], token=token, root_cert=cert,
                          node_resource=d.get("node_resource", ""), devices=tuple(devices))
    except ConfigError as exc:
        raise ConfigError(str(exc), path=where, key=f"{name}.{exc.key or 'address'}") from None


def _check(section: Any, schema: dict, where: str, prefix: str) -> dict:
    if not isinstance(section, dict):
        raise ConfigError("must be a mapping", path=where, key=prefix.rstrip(".") or None)
    for key, value in section.items():
        if key not in schema:
            raise ConfigError(f"unknown key (known: {sorted(schema)})", path=where, key=f"{prefix}{key}")
        want = schema[key]
        wants = want if isinstance(want, tuple) else (want,)
        # bool is an int in Python; `every_jobs: true` is still a typo.
        if not isinstance(value, wants) or (bool not in wants and isinstance(value, bool)):
            names = "/".join(w.__name__ for w in wants)
            raise ConfigError(f"must be {names}, got {value!r}", path=where, key=f"{prefix}{key}")
    return dict(section)


def _resolve(base: pathlib.Path, value: str) -> pathlib.Path:
    p = pathlib.Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _read(base: pathlib.Path, value: str, where: str, key: str) -> bytes:
    try:
        return _resolve(base, value).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {value}: {exc.strerror}", path=where, key=key) from exc
