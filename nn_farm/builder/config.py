"""The builder's workspace configs: nn-Meter's keys and defaults, validated, behind `builder_config`.

A workspace holds three YAML files under ``configs/`` (written by
:func:`nn_farm.builder.workspace.create_workspace` or ``nn-farm create``):

    ruletest_config.yaml        the fusion rule tester      (module "ruletest")
    predictorbuild_config.yaml  the kernel predictor build  (module "predbuild")
    backend_config.yaml         which backend and farm      (module "backend")

``builder_config.init(workspace)`` reads and checks all three, the way nn-Meter's
``nn_meter.builder.builder_config`` does, so ported scripts keep working:

    >>> from nn_farm.builder.config import builder_config
    >>> builder_config.init("ws")                                  # doctest: +SKIP
    >>> builder_config.get("HW", "ruletest")                       # doctest: +SKIP
    28

Every file is checked against its schema below: malformed YAML, an unknown key, a
wrong value type or an out-of-range value is a :class:`~nn_farm.errors.ConfigError`
naming the file and the key (``KERNELS.conv-bn-relu.INIT_SAMPLE_NUM``). A key left
out takes its default, so an old nn-Meter file with fewer keys still loads.

The sampling budget of a build is :data:`BUDGET_DEFAULTS`: far below nn-Meter's
(10,000 conv / 5,000 dwconv / 3,000 other initial samples) so a whole build on one
host CPU (2 cores, LiteRT, one thread) fits in about 15 minutes.
"""

from __future__ import annotations

import copy
import difflib
import os
import pathlib
from dataclasses import dataclass
from typing import Any, Callable

import yaml

from nn_farm.errors import ConfigError

__all__ = [
    "RULETEST_FILE",
    "PREDBUILD_FILE",
    "BACKEND_FILE",
    "DEFAULT_BACKEND",
    "EMBEDDED_FARM",
    "BUDGET_DEFAULTS",
    "KernelBudget",
    "budget_for",
    "DEFAULT_BUILD_KERNELS",
    "DEFAULT_BASIC_TESTCASES",
    "default_ruletest_config",
    "default_predbuild_config",
    "default_backend_config",
    "load_yaml",
    "validate_ruletest",
    "validate_predbuild",
    "validate_backend",
    "load_workspace_configs",
    "ConfigManager",
    "builder_config",
]

RULETEST_FILE = "ruletest_config.yaml"
PREDBUILD_FILE = "predictorbuild_config.yaml"
BACKEND_FILE = "backend_config.yaml"

DEFAULT_BACKEND = "host-cpu-litert"
# FARM value meaning "an agent inside this process, on this host's CPU".
EMBEDDED_FARM = "embedded"

# ---------------------------------------------------------------- defaults

# nn-Meter's 80 basic test-case pairs (configs/builder/fusion_rule_tester/ruletest_config.yaml).
DEFAULT_BASIC_TESTCASES = (
    "add_add add_avgpool add_concat add_conv add_convtrans add_dwconv add_fc add_relu "
    "add_reshape avgpool_add avgpool_avgpool avgpool_concat avgpool_conv avgpool_convtrans "
    "avgpool_dwconv avgpool_relu avgpool_reshape bn_relu concat_add concat_avgpool "
    "concat_concat concat_conv concat_convtrans concat_dwconv concat_fc concat_relu "
    "concat_reshape conv_add conv_avgpool conv_bn conv_concat conv_conv conv_convtrans "
    "conv_dwconv conv_hswish conv_relu conv_reshape conv_se convtrans_add convtrans_avgpool "
    "convtrans_concat convtrans_conv convtrans_convtrans convtrans_dwconv convtrans_relu "
    "convtrans_reshape dwconv_add dwconv_avgpool dwconv_bn dwconv_concat dwconv_conv "
    "dwconv_convtrans dwconv_dwconv dwconv_relu dwconv_reshape fc_add fc_concat fc_fc "
    "fc_relu fc_reshape relu_add relu_avgpool relu_concat relu_conv relu_convtrans "
    "relu_dwconv relu_fc relu_relu relu_reshape reshape_add reshape_avgpool reshape_concat "
    "reshape_conv reshape_convtrans reshape_dwconv reshape_fc reshape_relu reshape_reshape "
    "se_relu"
).split()

_RULETEST_DEFAULTS = {
    "DETAIL": True,
    "IMPLEMENT": "tensorflow",
    "HW": 28,
    "CIN": 64,
    "SHAPE_1D": 428,
    "COUT": 128,
    "KERNEL_SIZE": 3,
    "PADDING": "same",
    "STRIDES": 1,
    "POOL_STRIDES": 2,
    "EMP_ALPHA": 0.5,
    "BASIC_TESTCASES": list(DEFAULT_BASIC_TESTCASES),
    "OTHER_TESTCASES": ["MON"],
    "LAYERS_1D": ["fc"],
}

# The kernels nn-Meter builds by default: one per family stands for its siblings
# (conv-bn-relu for every conv-*, dwconv-bn-relu for every dwconv-*), because one
# conv dominates the latency of its kernel. And swish, which nn-Meter lacks.
DEFAULT_BUILD_KERNELS = (
    "conv-bn-relu", "dwconv-bn-relu", "maxpool", "avgpool", "fc", "concat", "split",
    "channelshuffle", "se", "global-avgpool", "bnrelu", "bn", "hswish", "relu",
    "addrelu", "add", "swish",
)


@dataclass(frozen=True)
class KernelBudget:
    """How many configs one kernel type gets in a build.

    Attributes:
        init_sample_num: configs sampled from the prior in round 1.
        finegrained_sample_num: configs sampled around each badly predicted config.
        iteration: rounds in all; 1 is the prior round alone.
        error_threshold: relative error above which a config is "badly predicted".
    """

    init_sample_num: int
    finegrained_sample_num: int
    iteration: int
    error_threshold: float


# The one place the default budget lives, sized for one 2-core host measuring with
# LiteRT on one thread. Measured here (a throwaway probe over 46 kernels of every
# type, 2026-11-22, load average 12 on 2 cores): per kernel, median 2.8 s to build
# and convert to .tflite and 0.5 s to measure (timing gate off). A quiet host should
# need roughly a fifth of the conversion time (not measured: an estimate), so 950
# initial kernels plus one adaptive round take about 12-15 minutes with conversion
# running beside the measuring core. conv and dwconv get most:
# they dominate model latency and carry the accuracy targets; the other kernels are
# near-linear in their few config values.
BUDGET_DEFAULTS = {
    "conv-bn-relu": KernelBudget(300, 5, 2, 0.1),
    "dwconv-bn-relu": KernelBudget(200, 5, 2, 0.1),
    "*": KernelBudget(30, 5, 2, 0.1),
}


def budget_for(kernel_type: str) -> KernelBudget:
    """The default :class:`KernelBudget` of a kernel type."""
    return BUDGET_DEFAULTS.get(kernel_type, BUDGET_DEFAULTS["*"])


def _kernel_entry(budget: KernelBudget) -> dict:
    return {
        "INIT_SAMPLE_NUM": budget.init_sample_num,
        "FINEGRAINED_SAMPLE_NUM": budget.finegrained_sample_num,
        "ITERATION": budget.iteration,
        "ERROR_THRESHOLD": budget.error_threshold,
    }


def default_ruletest_config() -> dict:
    """A fresh copy of the rule tester's defaults (nn-Meter's values)."""
    return copy.deepcopy(_RULETEST_DEFAULTS)


def default_predbuild_config(kernels=DEFAULT_BUILD_KERNELS) -> dict:
    """The predictor build defaults: nn-Meter's keys, nn-farm's budget.

    Args:
        kernels: the kernel types to build (default: nn-Meter's 16).
    """
    return {
        "DETAIL": False,
        "IMPLEMENT": "tensorflow",
        "BATCH_SIZE": 1,
        "KERNELS": {k: _kernel_entry(budget_for(k)) for k in kernels},
    }


def default_backend_config(backend: str = DEFAULT_BACKEND, farm: str | None = None,
                           device_class: str | None = None) -> dict:
    """The backend config for one backend name.

    A ``host-cpu-<runtime>`` backend is an agent embedded in the build process,
    measuring on this host's CPU with one thread. Any other backend (``remote-farm``
    or a registered one) measures on a farm described by a ``farm.yaml``.

    Args:
        backend: a builtin or registered backend name.
        farm: path of the farm.yaml (remote backends; ignored for host-cpu-*).
        device_class: the device class jobs go to (default: the backend's name).
    """
    if backend.startswith("host-cpu-"):
        return {
            "BACKEND": backend,
            "FARM": EMBEDDED_FARM,
            "DEVICE_CLASS": device_class or backend,
            "RUNTIME": backend[len("host-cpu-"):],
            "THREADS": 1,
        }
    return {
        "BACKEND": backend,
        "FARM": farm or "farm.yaml",
        "DEVICE_CLASS": device_class or backend,
    }


# ---------------------------------------------------------------- schema checks

Check = Callable[[Any, str, str], Any]  # (value, path, key) -> normalised value


def _fail(path, key, message):
    raise ConfigError(message, path=str(path) if path else None, key=key)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(value, path, key):
    if not _is_int(value) or value <= 0:
        _fail(path, key, f"must be a positive integer, got {value!r}")
    return value


def non_negative_int(value, path, key):
    if not _is_int(value) or value < 0:
        _fail(path, key, f"must be a non-negative integer, got {value!r}")
    return value


def boolean(value, path, key):
    if not isinstance(value, bool):
        _fail(path, key, f"must be true or false, got {value!r}")
    return value


def non_negative_float(value, path, key):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        _fail(path, key, f"must be a non-negative number, got {value!r}")
    return float(value)


def fraction(value, path, key):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        _fail(path, key, f"must be a number in (0, 1], got {value!r}")
    return float(value)


def string(value, path, key):
    if not isinstance(value, str) or not value:
        _fail(path, key, f"must be a non-empty string, got {value!r}")
    return value


def one_of(*choices) -> Check:
    def check(value, path, key):
        if value not in choices:
            _fail(path, key, f"must be one of {', '.join(map(str, choices))}; got {value!r}")
        return value

    return check


def string_list(value, path, key):
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        _fail(path, key, f"must be a list of names, got {value!r}")
    return list(value)


def int_list(length: int) -> Check:
    def check(value, path, key):
        if (not isinstance(value, list) or len(value) != length
                or not all(_is_int(v) and v > 0 for v in value)):
            _fail(path, key, f"must be a list of {length} positive integers, got {value!r}")
        return list(value)

    return check


def mapping(value, path, key):
    if not isinstance(value, dict):
        _fail(path, key, f"must be a mapping, got {value!r}")
    return dict(value)


IMPLEMENTS = ("tensorflow", "torch")

RULETEST_SCHEMA: dict[str, Check] = {
    "DETAIL": boolean,
    "IMPLEMENT": one_of(*IMPLEMENTS),
    "HW": positive_int,
    "CIN": positive_int,
    "SHAPE_1D": positive_int,
    "COUT": positive_int,
    "KERNEL_SIZE": positive_int,
    "PADDING": one_of("same", "valid"),
    "STRIDES": positive_int,
    "POOL_STRIDES": positive_int,
    "EMP_ALPHA": non_negative_float,
    "BASIC_TESTCASES": string_list,
    "OTHER_TESTCASES": string_list,
    "LAYERS_1D": string_list,
}
# Spellings nn-Meter's versions used for the same key.
RULETEST_ALIASES = {"EPS_ALPHA": "EMP_ALPHA"}

KERNEL_SCHEMA: dict[str, Check] = {
    "INIT_SAMPLE_NUM": positive_int,
    "FINEGRAINED_SAMPLE_NUM": non_negative_int,
    "ITERATION": positive_int,
    "ERROR_THRESHOLD": fraction,
}

PREDBUILD_SCHEMA: dict[str, Check] = {
    "DETAIL": boolean,
    "IMPLEMENT": one_of(*IMPLEMENTS),
    "BATCH_SIZE": positive_int,
    "KERNELS": mapping,  # checked entry by entry in validate_predbuild
    # Accepted from older nn-Meter builder configs; not written by default.
    "DEFAULT_INPUT_SHAPE": int_list(3),
    "D1_INPUT_SHAPE": int_list(1),
    "MODEL_NAME": string,
}
_PREDBUILD_OPTIONAL = ("DEFAULT_INPUT_SHAPE", "D1_INPUT_SHAPE", "MODEL_NAME")

BACKEND_SCHEMA: dict[str, Check] = {
    "BACKEND": string,
    "FARM": string,
    "DEVICE_CLASS": string,
    "RUNTIME": one_of("litert", "onnxruntime", "openvino", "torch"),
    "THREADS": positive_int,
    "DEVICES": positive_int,  # embedded farms: host cores measured on, one device each
    "FORMAT": one_of("tflite", "onnx", "openvino"),  # default: the runtime's own format
    "POLICY": mapping,  # measurement policy fields (nn_farm.farm.policy.MeasurePolicy)
    "PARAMS": mapping,  # a customized backend's own settings (its defaultConfigFile)
}


def _unknown_key(path, key, known, where=""):
    close = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    _fail(path, f"{where}{key}", f"unknown key{hint} (known: {', '.join(known)})")


def _check_mapping(raw, schema, path, where=""):
    """Apply a schema to a mapping: unknown keys fail, present keys are checked."""
    out = {}
    for key, value in raw.items():
        if key not in schema:
            _unknown_key(path, key, schema, where)
        out[key] = schema[key](value, path, f"{where}{key}")
    return out


def validate_ruletest(raw: Any, path: str | os.PathLike | None = None) -> dict:
    """Check a ruletest config and fill defaults.

    Args:
        raw: the parsed YAML (a mapping; None means empty).
        path: the file it came from, for error messages.

    Returns:
        A complete config with every key of :data:`RULETEST_SCHEMA`.

    Raises:
        ConfigError: not a mapping, unknown key, wrong type or value.
    """
    raw = _top_mapping(raw, path)
    for alias, key in RULETEST_ALIASES.items():
        if alias in raw:
            value = raw.pop(alias)
            if key in raw and raw[key] != value:
                _fail(path, alias, f"conflicts with {key}: {value!r} != {raw[key]!r}")
            raw[key] = value
    config = default_ruletest_config()
    config.update(_check_mapping(raw, RULETEST_SCHEMA, path))
    return config


def validate_predbuild(raw: Any, path: str | os.PathLike | None = None,
                       known_kernels=None) -> dict:
    """Check a predictor build config and fill defaults.

    Args:
        raw: the parsed YAML.
        path: the file it came from, for error messages.
        known_kernels: kernel names allowed under KERNELS (default: the predictor's
            kernel specs plus registered customized kernels).

    Returns:
        A complete config; each KERNELS entry has all four budget keys.

    Raises:
        ConfigError: unknown key or kernel, wrong type or value.
    """
    raw = _top_mapping(raw, path)
    config = default_predbuild_config()
    checked = _check_mapping(raw, PREDBUILD_SCHEMA, path)
    kernels = checked.pop("KERNELS", None)
    config.update(checked)
    if kernels is not None:
        if known_kernels is None:
            known_kernels = _known_kernels()
        config["KERNELS"] = {}
        for name, entry in kernels.items():
            if name not in known_kernels:
                _unknown_key(path, name, known_kernels, "KERNELS.")
            entry = mapping(entry if entry is not None else {}, path, f"KERNELS.{name}")
            full = _kernel_entry(budget_for(name))
            full.update(_check_mapping(entry, KERNEL_SCHEMA, path, f"KERNELS.{name}."))
            config["KERNELS"][name] = full
    return config


def validate_backend(raw: Any, path: str | os.PathLike | None = None,
                     known_backends=None) -> dict:
    """Check a backend config.

    ``BACKEND`` is required and must be a builtin or registered backend; an
    embedded farm needs ``RUNTIME``; other farms name a farm.yaml in ``FARM``.

    Raises:
        ConfigError: missing or unknown key, unknown backend, wrong type.
    """
    raw = _top_mapping(raw, path)
    checked = _check_mapping(raw, BACKEND_SCHEMA, path)
    if "BACKEND" not in checked:
        _fail(path, "BACKEND", "missing: name the backend, e.g. host-cpu-litert")
    if known_backends is None:
        from nn_farm.builder import registry

        known_backends = registry.names("backend")
    if checked["BACKEND"] not in known_backends:
        _fail(path, "BACKEND", f"unknown backend {checked['BACKEND']!r} "
                               f"(known: {', '.join(known_backends)})")
    config = default_backend_config(checked["BACKEND"])
    config.update(checked)
    if config["FARM"] == EMBEDDED_FARM and "RUNTIME" not in config:
        _fail(path, "RUNTIME", "an embedded farm needs a RUNTIME (litert, onnxruntime, ...)")
    return config


def _top_mapping(raw, path) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        _fail(path, None, f"must be a YAML mapping of KEY: value, got {type(raw).__name__}")
    return dict(raw)


def _known_kernels():
    from nn_farm.builder import registry

    return registry.names("kernel")


def load_yaml(path: str | os.PathLike) -> Any:
    """Parse one YAML file.

    Raises:
        ConfigError: the file is missing or is not valid YAML (with line and column).
    """
    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=str(path)) from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"malformed YAML{where}: {problem}", path=str(path)) from exc


def load_workspace_configs(workspace: str | os.PathLike) -> dict[str, dict]:
    """Read and check the three configs of a workspace.

    Returns:
        ``{"backend": ..., "ruletest": ..., "predbuild": ...}``.

    Raises:
        ConfigError: no such workspace or config file, or a config is wrong.
    """
    configs_dir = pathlib.Path(workspace) / "configs"
    if not configs_dir.is_dir():
        raise ConfigError(
            "not a workspace (no configs/ directory); create one with "
            "`nn-farm create --workspace DIR`", path=str(workspace))
    files = {
        "backend": (BACKEND_FILE, validate_backend),
        "ruletest": (RULETEST_FILE, validate_ruletest),
        "predbuild": (PREDBUILD_FILE, validate_predbuild),
    }
    return {module: check(load_yaml(configs_dir / name), configs_dir / name)
            for module, (name, check) in files.items()}


# ---------------------------------------------------------------- builder_config


class ConfigManager:
    """The loaded configs of one workspace, read by module and key (nn-Meter's API).

    Modules are ``"ruletest"``, ``"predbuild"`` and ``"backend"``. After
    :meth:`init`, ``get("WORKSPACE", "ruletest")`` is ``<workspace>/fusion_rule_test``
    and ``get("WORKSPACE", "predbuild")`` is ``<workspace>/predictor_build``
    (``MODEL_DIR`` is the same path, the name later nn-Meter versions read).
    """

    def __init__(self) -> None:
        self.workspace_path = ""
        self._global_settings: dict[str, dict] = {}

    def init(self, workspace_path: str | os.PathLike) -> "ConfigManager":
        """Load (or reload) the configs of a workspace.

        Raises:
            ConfigError: see :func:`load_workspace_configs`.
        """
        settings = load_workspace_configs(workspace_path)
        root = pathlib.Path(workspace_path).resolve()
        for module, sub in (("ruletest", "fusion_rule_test"), ("predbuild", "predictor_build")):
            settings[module]["WORKSPACE"] = str(root / sub)
            settings[module]["MODEL_DIR"] = str(root / sub)
        self.workspace_path = str(root)
        self._global_settings = settings
        return self

    def _module(self, module: str) -> dict:
        try:
            return self._global_settings[module]
        except KeyError:
            if not self._global_settings:
                raise ConfigError("builder config not loaded: call "
                                  "builder_config.init('path/to/workspace') first") from None
            raise ConfigError(f"no config module {module!r} (known: "
                              f"{', '.join(self._global_settings)})") from None

    def get(self, name: str, module: str = ""):
        """The value of ``name`` in ``module``.

        Raises:
            ConfigError: not loaded, unknown module, or unknown key.
        """
        settings = self._module(module)
        if name not in settings:
            raise ConfigError(f"no key {name!r} in module {module!r}", key=name)
        return settings[name]

    def get_module(self, module: str = "") -> dict:
        """All settings of one module (the live dict)."""
        return self._module(module)

    def set(self, name: str, value, module: str = "") -> None:
        """Override one setting in memory (files are not touched)."""
        self._module(module)[name] = value

    def set_module(self, value: dict, module: str = "") -> None:
        self._global_settings[module] = value

    def get_settings(self) -> dict:
        return self._global_settings


builder_config = ConfigManager()
