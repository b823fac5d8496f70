"""Customized operators, test cases, kernels and backends, registered by meta file.

nn-Meter users register their own modules with a small meta YAML; nn-farm reads the
same keys:

    builtin_name: mylayer            # the name configs and test cases use
    package_location: ./my_package   # a directory put on sys.path (relative: to the meta file)
    class_module: my_ops.layers      # importable from package_location
    class_name: MyLayer
    implement: tensorflow            # operators, kernels: tensorflow | torch
    # kernels also:
    sampler_module: my_ops.sampling
    sampler_name: MySampler          # prior_config_sampling(n), finegrained_config_sampling(cfgs, n)
    parser_module: my_ops.parsing
    parser_name: MyParser
    # backends also (optional):
    defaultConfigFile: ./my_backend.yaml

    meta.yaml --check keys--> --import in a child process--> NN_FARM_HOME/builder_registry.yaml

Registration proves the module imports (in a child process, so a broken package
cannot leave half-imported state in the caller) and that every named class exists.
The registry file lives under ``NN_FARM_HOME`` (default ``~/.nn_farm``); the predictor
registry has its own file there. Builtin names come from the layer that owns them:
operators from ``nn_farm.builder.models.registry``, kernels from
``nn_farm.predictor.kernel_specs``, test cases from the default rule-test config.

Example:
    >>> register("kernel", "meta.yaml")                 # doctest: +SKIP
    'mykernel'
    >>> [n for n, custom in listing("kernel") if custom]  # doctest: +SKIP
    ['mykernel']
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
from typing import Any

import yaml

from nn_farm.errors import ConfigError

__all__ = [
    "KINDS",
    "BUILTIN_BACKENDS",
    "REMOTE_BACKEND",
    "registry_path",
    "builtin_names",
    "names",
    "listing",
    "format_listing",
    "read_meta",
    "register",
    "unregister",
    "get_meta",
    "load_class",
    "activate",
]

KINDS = ("operator", "testcase", "kernel", "backend")

REMOTE_BACKEND = "remote-farm"
BUILTIN_BACKENDS = (
    "host-cpu-litert",
    "host-cpu-onnxruntime",
    "host-cpu-openvino",
    "host-cpu-torch",
    REMOTE_BACKEND,
)

_COMMON_KEYS = ("builtin_name", "package_location", "class_module", "class_name")
# kind -> (required keys, optional keys)
META_KEYS = {
    "operator": (_COMMON_KEYS + ("implement",), ()),
    "testcase": (_COMMON_KEYS, ("implement",)),
    "kernel": (_COMMON_KEYS + ("sampler_module", "sampler_name", "parser_module",
                               "parser_name", "implement"), ()),
    "backend": (_COMMON_KEYS, ("defaultConfigFile",)),
}
# (module key, attribute key) pairs that must import.
_IMPORTS = {
    "operator": (("class_module", "class_name"),),
    "testcase": (("class_module", "class_name"),),
    "kernel": (("class_module", "class_name"), ("sampler_module", "sampler_name"),
               ("parser_module", "parser_name")),
    "backend": (("class_module", "class_name"),),
}
_IMPLEMENTS = ("tensorflow", "torch")
IMPORT_CHECK_TIMEOUT_S = 300.0  # a user's module may import tensorflow


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f"unknown module kind {kind!r}; one of {', '.join(KINDS)}")


def registry_path() -> pathlib.Path:
    """``$NN_FARM_HOME/builder_registry.yaml`` (NN_FARM_HOME defaults to ~/.nn_farm)."""
    home = os.environ.get("NN_FARM_HOME") or os.path.join("~", ".nn_farm")
    return pathlib.Path(home).expanduser() / "builder_registry.yaml"


def builtin_names(kind: str) -> list[str]:
    """Builtin names of one kind, from the module that owns them."""
    _check_kind(kind)
    if kind == "operator":
        from nn_farm.builder.models.registry import BUILTIN_OPERATORS

        return list(BUILTIN_OPERATORS)
    if kind == "kernel":
        from nn_farm.predictor.kernel_specs import KERNEL_TYPES

        return list(KERNEL_TYPES)
    if kind == "testcase":
        from nn_farm.builder.config import DEFAULT_BASIC_TESTCASES

        return list(DEFAULT_BASIC_TESTCASES) + ["MON"]
    return list(BUILTIN_BACKENDS)


def _read_registry() -> dict[str, dict[str, dict]]:
    path = registry_path()
    if not path.exists():
        return {kind: {} for kind in KINDS}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"registry is not valid YAML: {exc}", path=str(path)) from exc
    if not isinstance(data, dict):
        raise ConfigError("registry must be a mapping of kind -> entries", path=str(path))
    return {kind: dict(data.get(f"{kind}s") or {}) for kind in KINDS}


def _write_registry(entries: dict[str, dict[str, dict]]) -> None:
    path = registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({f"{kind}s": entries[kind] for kind in KINDS}, sort_keys=True)
    # Write then rename: a crash mid-write never leaves a truncated registry.
    fd, tmp = tempfile.mkstemp(prefix=".builder_registry.", dir=path.parent)
    with os.fdopen(fd, "w") as fp:
        fp.write(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked():
    """Hold the registry's lock: two registrations at once must not drop one."""
    path = registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def names(kind: str) -> list[str]:
    """Every usable name of one kind: builtin first, then customized."""
    return [name for name, _ in listing(kind)]


def listing(kind: str) -> list[tuple[str, bool]]:
    """``(name, customized)`` for every module of one kind, builtin first."""
    builtin = builtin_names(kind)
    custom = sorted(n for n in _read_registry()[kind] if n not in builtin)
    return [(n, False) for n in builtin] + [(n, True) for n in custom]


def format_listing(kind: str) -> str:
    """The text ``nn-farm --list-<kind>s`` prints: one name a line, '* ' marks customized."""
    lines = [f"Supported {kind}s: ('*' indicates customized {kind}s)"]
    lines += [f"{'* ' if custom else '  '}{name}" for name, custom in listing(kind)]
    return "\n".join(lines)


def read_meta(kind: str, meta_path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a meta file without importing anything.

    Returns:
        The meta with ``package_location`` (and ``defaultConfigFile``) made absolute,
        relative paths taken from the meta file's directory.

    Raises:
        ConfigError: malformed YAML, unknown or missing key, bad value (names the
            file and the key).
    """
    from nn_farm.builder.config import load_yaml

    _check_kind(kind)
    meta_path = pathlib.Path(meta_path)
    raw = load_yaml(meta_path)
    where = str(meta_path)
    if not isinstance(raw, dict):
        raise ConfigError(f"a {kind} meta file must be a mapping of key: value", path=where)
    required, optional = META_KEYS[kind]
    for key in raw:
        if key not in required + optional:
            raise ConfigError(f"unknown key for a {kind} (known: {', '.join(required + optional)})",
                              path=where, key=key)
    for key in required:
        if key not in raw or raw[key] in (None, ""):
            raise ConfigError(f"missing; a {kind} meta file needs {', '.join(required)}",
                              path=where, key=key)
    meta = {}
    for key, value in raw.items():
        if not isinstance(value, str):
            raise ConfigError(f"must be a string, got {value!r}", path=where, key=key)
        meta[key] = value.strip()
    if "implement" in meta and meta["implement"] not in _IMPLEMENTS:
        raise ConfigError(f"must be one of {', '.join(_IMPLEMENTS)}, got {meta['implement']!r}",
                          path=where, key="implement")
    name = meta["builtin_name"]
    if kind == "operator" and "_" in name:
        raise ConfigError("an operator name cannot hold '_' (test cases join operators with it)",
                          path=where, key="builtin_name")
    if name in builtin_names(kind):
        raise ConfigError(f"{name!r} is a builtin {kind}; choose another name",
                          path=where, key="builtin_name")
    base = meta_path.resolve().parent
    location = (base / os.path.expanduser(meta["package_location"])).resolve()
    if not location.is_dir():
        raise ConfigError(f"no such directory: {location}", path=where, key="package_location")
    meta["package_location"] = str(location)
    if "defaultConfigFile" in meta:
        config_file = (base / os.path.expanduser(meta["defaultConfigFile"])).resolve()
        loaded = load_yaml(config_file)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError("must be a YAML mapping", path=str(config_file))
        meta["defaultConfigFile"] = str(config_file)
    return meta


_IMPORT_PROBE = """
import importlib, json, sys, traceback
location, pairs = sys.argv[1], json.loads(sys.argv[2])
sys.path.insert(0, location)
for module_key, module, attr_key, attr in pairs:
    try:
        mod = importlib.import_module(module)
    except BaseException as exc:
        print(json.dumps({"key": module_key, "error": f"cannot import module {module!r}: "
                          f"{type(exc).__name__}: {exc}"}))
        sys.exit(0)
    if not hasattr(mod, attr):
        print(json.dumps({"key": attr_key, "error": f"module {module!r} has no {attr!r}"}))
        sys.exit(0)
print(json.dumps({"ok": True}))
"""


def _check_imports(kind: str, meta: dict, meta_path) -> None:
    pairs = [(mk, meta[mk], ak, meta[ak]) for mk, ak in _IMPORTS[kind]]
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _IMPORT_PROBE, meta["package_location"], json.dumps(pairs)],
            capture_output=True, text=True, timeout=IMPORT_CHECK_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise ConfigError(f"importing {meta['class_module']!r} took over "
                          f"{IMPORT_CHECK_TIMEOUT_S:.0f} s", path=str(meta_path),
                          key="class_module") from exc
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    try:
        result = json.loads(last)
    except json.JSONDecodeError:
        result = {"key": "class_module",
                  "error": f"import check crashed (exit {proc.returncode}): {proc.stderr[-500:]}"}
    if not result.get("ok"):
        raise ConfigError(f"{result['error']} (package_location {meta['package_location']})",
                          path=str(meta_path), key=result["key"])


def register(kind: str, meta_path: str | os.PathLike) -> str:
    """Register a customized module from its meta file.

    Re-registering a name replaces its entry.

    Args:
        kind: ``"operator"``, ``"testcase"``, ``"kernel"`` or ``"backend"``.
        meta_path: the meta YAML.

    Returns:
        The registered ``builtin_name``.

    Raises:
        ConfigError: bad meta file, a missing package or module, a missing class
            (names the meta file and the key), or a name that is builtin.
    """
    meta = read_meta(kind, meta_path)
    _check_imports(kind, meta, meta_path)
    with _locked():
        entries = _read_registry()
        entries[kind][meta["builtin_name"]] = meta
        _write_registry(entries)
    return meta["builtin_name"]


def unregister(kind: str, name: str) -> None:
    """Remove one customized module.

    Raises:
        ConfigError: ``name`` is builtin or not registered.
    """
    _check_kind(kind)
    if name in builtin_names(kind):
        raise ConfigError(f"{name!r} is a builtin {kind} and cannot be unregistered")
    with _locked():
        entries = _read_registry()
        if name not in entries[kind]:
            known = ", ".join(entries[kind]) or "none"
            raise ConfigError(f"no customized {kind} named {name!r} (registered: {known})")
        del entries[kind][name]
        _write_registry(entries)


def get_meta(kind: str, name: str) -> dict[str, Any] | None:
    """The stored meta of a customized module, or None if ``name`` is not customized."""
    _check_kind(kind)
    meta = _read_registry()[kind].get(name)
    return dict(meta) if meta is not None else None


def load_class(kind: str, name: str, which: str = "class"):
    """Import a customized module's class (or its kernel sampler / parser) in this process.

    Args:
        kind: the module kind.
        name: its builtin_name.
        which: ``"class"``, or for kernels ``"sampler"`` / ``"parser"``.

    Returns:
        The class object.

    Raises:
        ConfigError: not registered, or the import fails now (the package moved).
    """
    meta = get_meta(kind, name)
    if meta is None:
        raise ConfigError(f"no customized {kind} named {name!r}")
    module_key, attr_key = f"{which}_module", f"{which}_name"
    if module_key not in meta:
        raise ConfigError(f"a {kind} has no {which}", key=module_key)
    location = meta["package_location"]
    if location not in sys.path:
        sys.path.insert(0, location)
    try:
        module = importlib.import_module(meta[module_key])
        return getattr(module, meta[attr_key])
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"customized {kind} {name!r}: cannot load {meta[module_key]}."
                          f"{meta[attr_key]} from {location}: {exc}", key=module_key) from exc


def activate() -> dict[str, list[str]]:
    """Import every customized operator and kernel and hand them to the model generators.

    Call this in a process before it generates test cases or kernel models, so
    ``nn_farm.builder.models`` sees them (``get_operator``, ``build_kernel_model``).

    Returns:
        ``{"operator": [names], "kernel": [names]}`` activated.

    Raises:
        ConfigError: a registered package can no longer be imported.
    """
    from nn_farm.builder.models.kernels import register_kernel
    from nn_farm.builder.models.registry import register_operator

    entries = _read_registry()
    for name, meta in entries["operator"].items():
        register_operator(name, meta["implement"], load_class("operator", name))
    for name, meta in entries["kernel"].items():
        register_kernel(name, meta["implement"], load_class("kernel", name))
    return {"operator": sorted(entries["operator"]), "kernel": sorted(entries["kernel"])}
