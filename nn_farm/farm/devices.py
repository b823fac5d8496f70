"""What an agent serves: ``agent.yaml`` read into small frozen records.

    agent:                          # every key optional
      host: 127.0.0.1
      port: 50051                   # 0 = any free port
      token_file: /etc/nn-farm/token   # or env NN_FARM_TOKEN; none = no auth
      tls_cert: agent.crt           # both or neither: TLS on the server side
      tls_key: agent.key
      cache_dir: ~/.cache/nn-farm/models
      cache_max_bytes: 2147483648
      max_upload_bytes: 268435456
    devices:                        # omitted: this host's CPU on every runtime
      - id: host-cpu/onnxruntime
        device_class: host-cpu-onnxruntime
        runtime: onnxruntime
        options: {threads: 1}
        cpu_affinity: [1]

Any unknown or wrongly typed key is a :class:`~nn_farm.errors.ConfigError`
naming the file and the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from dataclasses import dataclass, field
from typing import Any

from nn_farm.errors import ConfigError

TOKEN_ENV = "NN_FARM_TOKEN"
DEFAULT_PORT = 50051
DEFAULT_CACHE_DIR = "~/.cache/nn-farm/models"


@dataclass(frozen=True)
class DeviceConfig:
    """One device the agent serves.

    Attributes:
        id: unique on this agent, e.g. ``host-cpu/onnxruntime``.
        device_class: the set of identical devices this one belongs to.
        runtime: a runtime name (``nn_farm.farm.runtimes.RUNTIME_NAMES``).
        options: runtime options (``threads``, ``device`` for OpenVINO, ...).
        cpu_affinity: cores the measuring process is pinned to (empty: any).
    """

    id: str
    device_class: str
    runtime: str
    options: dict = field(default_factory=dict)
    cpu_affinity: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", dict(self.options))
        object.__setattr__(self, "cpu_affinity", tuple(int(c) for c in self.cpu_affinity))


@dataclass(frozen=True)
class AgentConfig:
    """How the agent listens and stores models.

    Attributes:
        host, port: where to listen; port 0 takes any free port.
        token: the bearer token clients must send; None disables auth.
        tls_cert, tls_key: PEM files; both set turns TLS on.
        cache_dir: where uploaded models live (content-addressed).
        cache_max_bytes: size cap of the cache; least recently used go first.
        max_upload_bytes: the largest model accepted.
        devices: the devices served; empty means :func:`default_devices`.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    cache_dir: str = DEFAULT_CACHE_DIR
    cache_max_bytes: int = 2 * 1024**3
    max_upload_bytes: int = 256 * 1024**2
    devices: tuple[DeviceConfig, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "devices", tuple(self.devices))
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("tls_cert and tls_key must be given together", key="tls_cert")
        for name in ("cache_max_bytes", "max_upload_bytes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"must be positive, got {getattr(self, name)}", key=name)
        if not 0 <= self.port < 65536:
            raise ConfigError(f"must be in [0, 65535], got {self.port}", key="port")
        ids = [d.id for d in self.devices]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ConfigError(f"duplicate device id(s) {dupes}", key="devices")

    def replace(self, **changes: Any) -> "AgentConfig":
        return dataclasses.replace(self, **changes)

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)


_AGENT_KEYS = {
    "host": str, "port": int, "token_file": str, "tls_cert": str, "tls_key": str,
    "cache_dir": str, "cache_max_bytes": int, "max_upload_bytes": int,
}
_DEVICE_KEYS = {"id": str, "device_class": str, "runtime": str, "options": dict, "cpu_affinity": list}


def load_config(path: str | os.PathLike | None = None, **overrides: Any) -> AgentConfig:
    """Read ``agent.yaml`` (or nothing) into an :class:`AgentConfig`.

    Args:
        path: the YAML file; None gives the defaults and :func:`default_devices`.
        overrides: fields that win over the file (``host``, ``port`` from the
            command line); None values are ignored.

    Returns:
        The agent config, with the token read from ``token_file`` or the
        ``NN_FARM_TOKEN`` environment variable.

    Raises:
        ConfigError: unreadable or malformed YAML, an unknown key, a wrong type.
    """
    import yaml

    raw: dict = {}
    where = str(path) if path else None
    if path is not None:
        try:
            text = pathlib.Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", path=where) from exc
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"malformed YAML: {exc}", path=where) from exc
        if not isinstance(raw, dict):
            raise ConfigError("top level must be a mapping", path=where)
    unknown = set(raw) - {"agent", "devices"}
    if unknown:
        raise ConfigError("unknown key (expected 'agent' and 'devices')", path=where, key=sorted(unknown)[0])
    agent = _checked(raw.get("agent") or {}, _AGENT_KEYS, where, "agent")
    fields = {k: v for k, v in agent.items() if k != "token_file"}
    fields["token"] = read_token(agent.get("token_file"), where=where)
    devices_raw = raw.get("devices")
    if devices_raw is None:
        devices: tuple[DeviceConfig, ...] = ()
    elif not isinstance(devices_raw, list):
        raise ConfigError("must be a list of devices", path=where, key="devices")
    else:
        devices = tuple(_device(d, i, where) for i, d in enumerate(devices_raw))
    fields["devices"] = devices or default_devices()
    fields.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return AgentConfig(**fields)
    except ConfigError as exc:
        raise ConfigError(str(exc), path=where) from exc


def _checked(section: Any, schema: dict, where: str | None, name: str) -> dict:
    if not isinstance(section, dict):
        raise ConfigError("must be a mapping", path=where, key=name)
    for key, value in section.items():
        if key not in schema:
            raise ConfigError(f"unknown key (known: {sorted(schema)})", path=where, key=f"{name}.{key}")
        want = schema[key]
        # bool is an int in Python; a port of `true` is still a typo.
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise ConfigError(f"must be {want.__name__}, got {value!r}", path=where, key=f"{name}.{key}")
    return dict(section)


def _device(raw: Any, index: int, where: str | None) -> DeviceConfig:
    name = f"devices[{index}]"
    d = _checked(raw, _DEVICE_KEYS, where, name)
    for key in ("id", "runtime"):
        if not d.get(key):
            raise ConfigError("is required", path=where, key=f"{name}.{key}")
    from nn_farm.farm.runtimes import RUNTIME_NAMES

    # "simulated" is accepted only when named: it serves farm-scaling benchmarks.
    if d["runtime"] not in (*RUNTIME_NAMES, "simulated"):
        raise ConfigError(f"unknown runtime {d['runtime']!r} (known: {list(RUNTIME_NAMES)})",
                          path=where, key=f"{name}.runtime")
    affinity = d.get("cpu_affinity", [])
    if not all(isinstance(c, int) and c >= 0 for c in affinity):
        raise ConfigError(f"must be a list of core numbers, got {affinity!r}", path=where,
                          key=f"{name}.cpu_affinity")
    device = DeviceConfig(
        id=d["id"],
        device_class=d.get("device_class") or d["id"].replace("/", "-"),
        runtime=d["runtime"],
        options=d.get("options", {}),
        cpu_affinity=tuple(affinity),
    )
    try:
        check_device(device)
    except ConfigError as exc:
        raise ConfigError(str(exc), path=where, key=f"{name}.options") from exc
    return device


def check_device(device: DeviceConfig) -> None:
    """Fail early on a runtime option the device's runtime does not know.

    Raises:
        ConfigError: naming the device and the option.
    """
    from nn_farm.errors import DeviceUnavailable
    from nn_farm.farm.runtimes import get_runtime

    try:
        runtime = get_runtime(device.runtime)  # imports the runtime's module, not its library
    except DeviceUnavailable as exc:
        raise ConfigError(str(exc), key=f"{device.id}: runtime") from exc
    try:
        runtime.options(device.options)
    except ConfigError as exc:
        raise ConfigError(f"device {device.id}: {exc}") from exc


def read_token(token_file: str | os.PathLike | None = None, *, where: str | None = None) -> str | None:
    """The bearer token from ``token_file`` if given, else ``NN_FARM_TOKEN``, else None.

    Tokens come from a file or the environment, never the command line (``ps`` shows it).

    Raises:
        ConfigError: the file cannot be read or is empty.
    """
    if token_file:
        try:
            token = pathlib.Path(token_file).expanduser().read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read token file {token_file}: {exc.strerror}", path=where,
                              key="token_file") from exc
        if not token:
            raise ConfigError(f"token file {token_file} is empty", path=where, key="token_file")
        return token
    return os.environ.get(TOKEN_ENV) or None


def default_devices() -> tuple[DeviceConfig, ...]:
    """This host's CPU on each real runtime, installed or not.

    Returns:
        One device per runtime, ids ``host-cpu/<runtime>`` and classes
        ``host-cpu-<runtime>``; a runtime that is missing is still listed and
        the agent reports it unavailable, with the reason.
    """
    from nn_farm.farm.runtimes import RUNTIME_NAMES

    return tuple(DeviceConfig(id=f"host-cpu/{name}", device_class=f"host-cpu-{name}", runtime=name)
                 for name in RUNTIME_NAMES)
