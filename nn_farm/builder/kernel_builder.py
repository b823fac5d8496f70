"""nn-Meter's kernel predictor builder API, on the farm.

Scripts written for ``nn_meter.builder`` port with an import change::

    from nn_farm.builder import builder_config, build_predictor_for_kernel
    builder_config.init("ws")
    predictor, data = build_predictor_for_kernel("conv-bn-relu", "host-cpu-litert",
                                                 init_sample_num=100, finegrained_sample_num=5,
                                                 iteration=2, error_threshold=0.1)

The functions keep nn-Meter's names, arguments, return values and files
(``<kernel>_<mark>.json``, ``profiled_<kernel>.json`` under
``<workspace>/predictor_build/results``, models under ``.../kernels``). What differs:

- ``backend`` may be a backend name (the workspace's, or a ``host-cpu-*`` one), or an
  open :class:`~nn_farm.builder.backend.Backend` to share one farm across calls.
- Kernel models are generated and converted as Ray tasks feeding the farm, every kernel
  of a call in one farm run; results go to the result store, so a rerun measures
  nothing twice.
- :func:`build_predictor_for_kernel` and :func:`build_latency_predictor` score every
  round on one held-out set fixed in round 1, keep a later round only if it measures
  better, and stop at ``iteration`` or the target accuracy. :func:`build_latency_predictor`
  also writes and registers a predictor package.
- ``workspace=`` may replace ``builder_config.init``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import time
import warnings
from typing import Iterator

from nn_farm.builder.kernel_build.engine import (
    DEFAULT_TARGET_ACC10,
    TEST_FRACTION,
    BuildResult,
    KernelPlan,
    kernel_records,
    plans_from_config,
    run_rounds,
)
from nn_farm.builder.kernel_build.profiling import parse_latency, profile_records
from nn_farm.errors import ConfigError

__all__ = [
    "generate_config_sample",
    "convert_models",
    "profile_models",
    "sample_and_profile_kernel_data",
    "build_initial_predictor_by_data",
    "build_adaptive_predictor_by_data",
    "build_predictor_for_kernel",
    "build_latency_predictor",
    "BuildResult",
    "FusionRuleFallbackWarning",
]

log = logging.getLogger("nn_farm.builder")

SAMPLING_MODES = ("prior", "finegrained")
RULES_FILE = "detected_fusion_rule.json"


class FusionRuleFallbackWarning(UserWarning):
    """A package was written with the default fusion rules, not the device's detected ones."""


# ---------------------------------------------------------------- workspace and backend


def _workspace(workspace=None) -> pathlib.Path:
    """The workspace root: ``workspace`` or the one ``builder_config.init`` loaded."""
    from nn_farm.builder.config import builder_config

    if workspace is not None:
        root = pathlib.Path(workspace).resolve()
        builder_config.init(root)  # (re)read: the configs may have changed since
        return root
    if not builder_config.workspace_path:
        raise ConfigError("no workspace: call builder_config.init('path/to/workspace') or pass workspace=",
                          key="workspace")
    return pathlib.Path(builder_config.workspace_path)


def _backend_config(backend, root: pathlib.Path) -> dict:
    """The backend config a name stands for: the workspace's own, or a builtin host-cpu-* one."""
    from nn_farm.builder import config as cfg

    own = cfg.ConfigManager().init(root).get_module("backend")
    if backend is None or backend == own["BACKEND"]:
        return own
    if isinstance(backend, str) and backend.startswith("host-cpu-"):
        return cfg.validate_backend({"BACKEND": backend})
    raise ConfigError(f"backend {backend!r} is not the workspace's ({own['BACKEND']!r}); edit "
                      f"{root / 'configs' / cfg.BACKEND_FILE} or pass an open Backend", key="BACKEND")


def _format_of(backend, root: pathlib.Path) -> tuple[str, str]:
    """(model format, framework) the backend's devices need."""
    from nn_farm.builder.backend import FORMAT_IMPLEMENTS, model_format

    if hasattr(backend, "farm"):
        return backend.format, backend.implement
    fmt = model_format(_backend_config(backend, root))
    return fmt, FORMAT_IMPLEMENTS[fmt]


@contextlib.contextmanager
def _opened(backend, root: pathlib.Path, *, devices=None, ray_address=None, progress=True) -> Iterator:
    """An open Backend: the one given, or the named one opened (and closed) here."""
    if hasattr(backend, "farm"):
        yield backend
        return
    from nn_farm.builder.backend import open_backend

    with open_backend(root, backend_config=_backend_config(backend, root), devices=devices,
                      ray_address=ray_address, progress=progress) as opened:
        yield opened


def _load_models(models) -> tuple[dict, str | None]:
    if isinstance(models, (str, os.PathLike)):
        from nn_farm.builder.kernel_data import read_json

        return read_json(models), os.path.basename(models)
    return models, None


# ---------------------------------------------------------------- nn-Meter's steps


def generate_config_sample(kernel_type: str, sample_num: int, mark: str = "", sampling_mode: str = "prior",
                           configs=None, *, workspace=None, seed: int | None = None) -> dict:
    """Sample kernel configs and write ``<results>/<kernel>_<mark>.json`` (nn-Meter's step 1).

    The models themselves are built later, as Ray tasks, by :func:`convert_models` or
    :func:`profile_models`; each record's ``model`` is the file they write.

    Args:
        kernel_type: e.g. ``"conv-bn-relu"``.
        sample_num: configs from the prior, or, in ``finegrained`` mode, per given config.
        mark: the round's mark (default: ``sampling_mode``).
        sampling_mode: ``"prior"`` or ``"finegrained"``.
        configs: the configs to sample around (``finegrained`` mode).
        workspace: the workspace (default: ``builder_config``'s).
        seed: sampling seed (default: fixed by kernel type and mark, so a rerun samples
            the same configs).

    Returns:
        ``{kernel_type: {id: {"model": path, "shapes": [...], "config": {...}}}}``.

    Raises:
        ConfigError: unknown mode, finegrained without configs, no workspace.
        UnknownKernelError: unknown kernel type.
    """
    import zlib

    from nn_farm.builder.kernel_data import configs_path, read_json, write_configs
    from nn_farm.builder.sampling import finegrained_configs, sample_kernel_configs

    if sampling_mode not in SAMPLING_MODES:
        raise ConfigError(f"sampling_mode must be one of {SAMPLING_MODES}, got {sampling_mode!r}",
                          key="sampling_mode")
    root = _workspace(workspace)
    mark = mark or sampling_mode
    if seed is None:
        seed = zlib.crc32(f"{kernel_type}/{mark}".encode())
    if sampling_mode == "prior":
        sampled = sample_kernel_configs(kernel_type, sample_num, seed=seed)
    else:
        if configs is None:
            raise ConfigError("finegrained sampling needs configs to sample around", key="configs")
        sampled = finegrained_configs(kernel_type, configs, sample_num, seed=seed)
    fmt, implement = _format_of(None, root)
    path = configs_path(root, kernel_type, mark)
    taken = set(read_json(path).get(kernel_type, {})) if path.exists() else set()
    records = kernel_records(root, kernel_type, sampled, fmt=fmt, implement=implement, taken=taken)
    if records:
        write_configs(root, kernel_type, mark, records)
    log.info("sampled %d %s configs (%s) into %s", len(records), kernel_type, sampling_mode, path)
    return {kernel_type: records}


def convert_models(backend, models, mode: str = "predbuild", broken_point_mode: bool = False, *,
                   workspace=None, progress: bool = True) -> dict:
    """Build and convert every model of the records to the backend's format, as Ray tasks.

    Args:
        backend: a backend name or an open Backend (gives the model format).
        models: the records (``{kernel_type: {id: {...}}}``) or the path of their JSON file.
        mode: ``"predbuild"`` (only kernel records are built here).
        broken_point_mode: skip records that already have ``converted_model``.
        workspace: the workspace (default: ``builder_config``'s).
        progress: show a progress bar.

    Returns:
        The records, each with ``converted_model`` (the file) or, on failure, listed in
        ``<results>/convert_error.log``.
    """
    import ray
    from tqdm import tqdm

    from nn_farm.actors.ray_init import init_ray
    from nn_farm.builder.convert import build_and_convert

    root = _workspace(workspace)
    models, save_name = _load_models(models)
    fmt, implement = _format_of(backend, root)
    init_ray()
    task = ray.remote(build_and_convert)
    pending = {}
    for kernel_type, entries in models.items():
        for kid, entry in entries.items():
            if broken_point_mode and entry.get("converted_model"):
                continue
            out_dir = str(pathlib.Path(entry["model"]).parent) if entry.get("model") else \
                str(root / "predictor_build" / "kernels")
            pending[task.remote("kernel", kernel_type, dict(entry["config"]), implement, fmt, out_dir)] = entry, kid
    results_dir = root / "predictor_build" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(pending), desc="convert", unit="model", disable=not progress) as bar:
        refs = list(pending)
        while refs:
            done, refs = ray.wait(refs, num_returns=1)
            entry, kid = pending[done[0]]
            try:
                entry["converted_model"] = ray.get(done[0])
            except Exception as exc:  # one bad model never stops the batch
                with open(results_dir / "convert_error.log", "a") as fh:
                    fh.write(f"{kid}: {exc}\n")
            bar.update(1)
    (results_dir / (save_name or "converted_results.json")).write_text(json.dumps(models, indent=4))
    return models


def profile_models(backend, models, mode: str = "predbuild", metrics=("latency",), save_name: str | None = None,
                   have_converted: bool = False, log_frequency: int = 50, broken_point_mode: bool = False, *,
                   workspace=None, devices: int | None = None, ray_address: str | None = None,
                   progress: bool = True, **kwargs) -> dict:
    """Measure the models of the records on the backend, in one farm run (nn-Meter's step 2).

    Models not yet converted are built and converted as Ray tasks ahead of the devices.
    Kernels already in the result store are not measured again (nn-Meter's
    ``broken_point_mode``, always on).

    Args:
        backend: a backend name or an open Backend.
        models: the records or the path of their JSON file.
        mode: ``"predbuild"``.
        metrics: ``["latency"]`` (the only metric).
        save_name: the profiled file's name (default: ``profiled_<kernel>.json`` per kernel).
        have_converted, log_frequency, broken_point_mode: accepted for nn-Meter's callers.
        workspace: the workspace (default: ``builder_config``'s).
        devices, ray_address, progress: see :func:`~nn_farm.builder.backend.open_backend`.

    Returns:
        The records with ``latency`` ("mean +- std" ms) on each measured model;
        failures are listed in ``<results>/profile_error.log``.
    """
    from nn_farm.builder.kernel_data import write_profiled

    if list(metrics) != ["latency"]:
        raise ConfigError(f"only the latency metric is measured, not {list(metrics)}", key="metrics")
    root = _workspace(workspace)
    models, _ = _load_models(models)
    results_dir = root / "predictor_build" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    with _opened(backend, root, devices=devices, ray_address=ray_address, progress=progress) as opened:
        outcome = profile_records(opened, models, root / "predictor_build" / "kernels")
    if outcome.errors:
        with open(results_dir / "profile_error.log", "a") as fh:
            for (kernel_type, kid), message in sorted(outcome.errors.items()):
                fh.write(f"{kernel_type} {kid}: {message}\n")
    for kernel_type, entries in models.items():
        measured = {kid: {"latency": e["latency"]} for kid, e in entries.items() if "latency" in e}
        if not measured:
            continue
        if save_name:
            _write_profiled_as(results_dir / save_name, kernel_type, measured)
        else:
            write_profiled(root, kernel_type, measured)
    log.info("profiled %d kernels (%d measured, %d from the store, %d failed)", len(outcome.latency),
             outcome.measured, outcome.reused, len(outcome.errors))
    return models


def _write_profiled_as(path: pathlib.Path, kernel_type: str, records: dict) -> None:
    from nn_farm.builder.kernel_data import merge_info, read_json

    merged = merge_info({kernel_type: records}, read_json(path) if path.exists() else None)
    path.write_text(json.dumps(merged, indent=4))


def sample_and_profile_kernel_data(kernel_type: str, sample_num: int, backend, sampling_mode: str = "prior",
                                   configs=None, mark: str = "", detail: bool = True, metrics=("latency",), *,
                                   workspace=None, devices: int | None = None, ray_address: str | None = None,
                                   progress: bool = True, **kwargs) -> dict:
    """Sample configs of one kernel, build, convert and measure them (nn-Meter's helper).

    Returns:
        ``{kernel_type: {id: {"model", "shapes", "config", "latency"}}}``.
    """
    models = generate_config_sample(kernel_type, sample_num, mark=mark, sampling_mode=sampling_mode,
                                    configs=configs, workspace=workspace)
    return profile_models(backend, models, mode="predbuild", metrics=metrics, workspace=workspace,
                          devices=devices, ray_address=ray_address, progress=progress)


# ---------------------------------------------------------------- predictors


def _merged_kernel_data(root: pathlib.Path, kernel_type: str, mark: str = "") -> dict:
    """Every round's configs of a kernel with their latencies: nn-Meter's merged kernel_data."""
    from nn_farm.builder.kernel_data import profiled_path, read_json

    results = root / "predictor_build" / "results"
    profiled = read_json(profiled_path(root, kernel_type)).get(kernel_type, {}) \
        if profiled_path(root, kernel_type).exists() else {}
    merged = {}
    for path in sorted(results.glob(f"{kernel_type}_*.json")):
        for kid, entry in read_json(path).get(kernel_type, {}).items():
            if kid in profiled:
                merged[kid] = {**entry, **profiled[kid]}
    return {kernel_type: merged}


def build_predictor_for_kernel(kernel_type: str, backend, init_sample_num: int = 1000,
                               finegrained_sample_num: int = 10, iteration: int = 5, error_threshold: float = 0.1,
                               predict_label: str = "latency", mark: str = "", *, workspace=None,
                               target_accuracy: float | None = DEFAULT_TARGET_ACC10, devices: int | None = None,
                               ray_address: str | None = None, progress: bool = True):
    """Build one kernel's latency regressor in rounds (nn-Meter's main per-kernel entry).

    Round 1 samples ``init_sample_num`` configs from the model-zoo prior; each later
    round samples ``finegrained_sample_num`` configs around every badly predicted one.
    Every round is scored on the same held-out 20% of round 1, and a round is kept
    only if it measures better. Stops at ``iteration`` rounds, at ``target_accuracy``
    (+-10%; None: never early), or when nothing is predicted badly.

    Returns:
        ``(predictor, kernel_data)``: the kept round's regressor, refitted on that
        round's training and held-out data (``predict(features) -> ms``, what a
        package ships), and the merged kernel data of every round.
    """
    if predict_label != "latency":
        raise ConfigError("only latency is measured", key="predict_label")
    root = _workspace(workspace)
    plan = KernelPlan(kernel_type, init_sample_num, finegrained_sample_num, iteration, error_threshold)
    with _opened(backend, root, devices=devices, ray_address=ray_address, progress=progress) as opened:
        result = run_rounds(root, opened, [plan], mark=mark, target_acc10=target_accuracy, progress=progress,
                            echo=_echo(progress))
    fit = result.fits.get(kernel_type)
    return (fit.package_model if fit is not None else None), _merged_kernel_data(root, kernel_type, mark)


def build_initial_predictor_by_data(kernel_type: str, backend=None, init_sample_num: int = 20,
                                    error_threshold: float = 0.1, mark: str = "", predict_label: str = "latency",
                                    **kwargs):
    """Round 1 only: sample from the prior, measure, fit (nn-Meter's signature).

    Returns:
        ``(predictor, kernel_data)``.
    """
    return build_predictor_for_kernel(kernel_type, backend, init_sample_num=init_sample_num, iteration=1,
                                      error_threshold=error_threshold, predict_label=predict_label, mark=mark,
                                      **kwargs)


def build_adaptive_predictor_by_data(kernel_type: str, kernel_data, backend=None, finegrained_sample_num: int = 20,
                                     error_threshold: float = 0.1, mark: str = "", predict_label: str = "latency",
                                     *, workspace=None, seed: int = 0, devices: int | None = None,
                                     ray_address: str | None = None, progress: bool = True):
    """One adaptive round on existing kernel data (nn-Meter's signature), kept only if better.

    The given data is split 8:2 once (``seed``): the 20% is the held-out set both fits
    are scored on. Configs that a fit on part of the other 80% predicts worse than
    ``error_threshold`` get ``finegrained_sample_num`` new neighbours each, which are
    measured and added to the training data. The refit replaces the old regressor only
    if it measures better on the held-out set.

    Args:
        kernel_data: anything :func:`nn_farm.builder.kernel_data.load_kernel_data` reads.

    Returns:
        ``(predictor, kernel_data)``: the better of the two regressors, and the data
        merged with the new round's.
    """
    from nn_farm.builder.kernel_build.state import is_better
    from nn_farm.builder.kernel_data import load_kernel_data, merge_info
    from nn_farm.builder.training import fit_kernel, split_ids

    if predict_label != "latency":
        raise ConfigError("only latency is measured", key="predict_label")
    ids, configs, latency = load_kernel_data(kernel_data, kernel_type)
    if len(ids) < 5:
        raise ConfigError(f"{kernel_type}: kernel data has {len(ids)} measured configs; at least 5 are needed",
                          key="kernel_data")
    pos = {kid: i for i, kid in enumerate(ids)}
    train_ids, test_ids = split_ids(ids, test_fraction=TEST_FRACTION, seed=seed)
    pick = lambda chosen: ([configs[pos[i]] for i in chosen], [latency[pos[i]] for i in chosen])  # noqa: E731
    test_c, test_l = pick(test_ids)
    before = fit_kernel(kernel_type, *pick(train_ids), test_c, test_l, seed=seed)
    inner_train, inner_test = split_ids(train_ids, test_fraction=TEST_FRACTION, seed=seed + 1)
    probe = fit_kernel(kernel_type, *pick(inner_train), *pick(inner_test), seed=seed, error_threshold=error_threshold)
    error_configs = probe.error_configs
    mark = "finegrained" if not mark else f"finegrained_{mark}"
    if not error_configs:
        log.info("%s: no config predicted worse than %.0f%%; nothing to refine", kernel_type, 100 * error_threshold)
        return before.model, _as_merged(kernel_type, kernel_data, ids, configs, latency)
    new = sample_and_profile_kernel_data(kernel_type, finegrained_sample_num, backend, sampling_mode="finegrained",
                                         configs=error_configs, mark=mark, workspace=workspace, devices=devices,
                                         ray_address=ray_address, progress=progress)
    new_records = {kid: e for kid, e in new[kernel_type].items() if "latency" in e}
    train_c, train_l = pick(train_ids)
    train_c = train_c + [e["config"] for e in new_records.values()]
    train_l = train_l + [parse_latency(e["latency"]) for e in new_records.values()]
    after = fit_kernel(kernel_type, train_c, train_l, test_c, test_l, seed=seed)
    keep = is_better(after.metrics, before.metrics)
    print(f"{kernel_type} {mark}: +-10% accuracy on the held-out set {before.metrics['acc10']:.1%} -> "
          f"{after.metrics['acc10']:.1%} (rmspe {before.metrics['rmspe']:.3f} -> {after.metrics['rmspe']:.3f}); "
          f"{'kept the new regressor' if keep else 'kept the previous regressor'}")
    merged = merge_info({kernel_type: new_records}, _as_merged(kernel_type, kernel_data, ids, configs, latency))
    return (after if keep else before).model, merged


def _as_merged(kernel_type, kernel_data, ids, configs, latency) -> dict:
    from nn_farm.builder.kernel_build.profiling import latency_text

    return {kernel_type: {kid: {"config": dict(c), "latency": latency_text(lat, 0.0)}
                          for kid, c, lat in zip(ids, configs, latency)}}


# ---------------------------------------------------------------- the whole build


def _echo(progress: bool):
    return print if progress else log.info


def detected_fusion_rules(workspace, *, ruletest: str = "auto", devices: int | None = None,
                          ray_address: str | None = None, progress: bool = True, echo=print):
    """The device's fusion rules for a package: detected ones, or None with a warning.

    Args:
        ruletest: ``"auto"`` (use ``fusion_rule_test/detected_fusion_rule.json``, running
            the rule test first if it is missing), ``"run"`` (run it again), or ``"skip"``
            (use the file if present, else fall back).

    Returns:
        ``(rules or None, source)``.
    """
    root = pathlib.Path(workspace)
    path = root / "fusion_rule_test" / RULES_FILE
    if ruletest not in ("auto", "run", "skip"):
        raise ConfigError(f"ruletest must be auto, run or skip, got {ruletest!r}", key="ruletest")
    if path.exists() and ruletest != "run":
        return json.loads(path.read_text()), str(path)
    if ruletest != "skip":
        try:
            from nn_farm.builder.ruletest import run_ruletest
        except ImportError as exc:
            echo(f"the rule tester is not available ({exc})")
        else:
            echo("no detected fusion rules in the workspace: running the rule test first "
                 "(nn-farm ruletest; resumable)")
            return run_ruletest(root, devices=devices, progress=progress, ray_address=ray_address), str(path)
    warnings.warn(f"no detected fusion rules at {path}: the package carries nn-farm's default rules, which may "
                  f"not match this device; run `nn-farm ruletest --workspace {root}` and rebuild",
                  FusionRuleFallbackWarning, stacklevel=2)
    return None, "default rules (rule test not run)"


def _predictor_rules(rules):
    """The rule tester's verdicts with MON as 0/1 (the predictor reads either; older nn-Meter tools read 0/1)."""
    if not rules or "MON" not in rules:
        return rules
    rules = {k: dict(v) if isinstance(v, dict) else v for k, v in rules.items()}
    entry = rules["MON"]
    obey = entry.get("obey") if isinstance(entry, dict) else entry
    if isinstance(obey, str):
        from nn_farm.predictor.kernels.rules import mon_value

        value = mon_value(obey)
        if isinstance(entry, dict):
            entry["obey"], entry["case"] = value, obey
        else:
            rules["MON"] = value
    return rules


def build_latency_predictor(backend=None, *, workspace=None, kernels=None, devices: int | None = None,
                            ray_address: str | None = None, name: str | None = None, version: str = "1.0",
                            register: bool = True, ruletest: str = "auto",
                            target_accuracy: float | None = DEFAULT_TARGET_ACC10, progress: bool = True,
                            mark: str = "") -> BuildResult:
    """Build every kernel of the workspace's predictorbuild config and write the package.

    All kernel types run their rounds together: one farm run per round for every
    kernel still going, so the devices never idle between kernel types; then one Ray
    training task per kernel. The package (in ``<workspace>/predictor_build/package``)
    carries the device's detected fusion rules (see :func:`detected_fusion_rules`)
    and is registered in the local predictor registry. A rerun skips finished rounds
    and measured kernels.

    Args:
        backend: a backend name (default: the workspace's) or an open Backend.
        workspace: the workspace (default: ``builder_config``'s).
        kernels: only these kernel types (default: all of KERNELS).
        devices: embedded backends: host cores to measure on.
        ray_address: the Ray cluster to join.
        name, version: the package's name (default: the device class) and version.
        register: register the package in the local registry.
        ruletest: ``"auto"``, ``"run"`` or ``"skip"`` (see :func:`detected_fusion_rules`).
        target_accuracy: stop a kernel's rounds at this +-10% accuracy (None: never early).
        progress: progress bars and round tables.
        mark: appended to the data files' marks.

    Returns:
        A :class:`~nn_farm.builder.kernel_build.engine.BuildResult` with ``package`` set.

    Raises:
        ConfigError: bad workspace, backend or kernel names.
        BuilderError: no kernel could be fitted.
    """
    from nn_farm.builder.config import builder_config
    from nn_farm.builder.training import write_predictor_package
    from nn_farm.errors import BuilderError

    started = time.perf_counter()
    root = _workspace(workspace)
    echo = _echo(progress)
    plans = plans_from_config(builder_config.get("KERNELS", "predbuild"), kernels)
    if not plans:
        raise ConfigError("no kernels to build", key="KERNELS")
    rules, rules_source = detected_fusion_rules(root, ruletest=ruletest, devices=devices, ray_address=ray_address,
                                                progress=progress, echo=echo)
    with _opened(backend, root, devices=devices, ray_address=ray_address, progress=progress) as opened:
        echo(f"building {len(plans)} kernel predictor(s) on {opened.device_class} ({opened.devices} device(s), "
             f"{opened.format} models)")
        result = run_rounds(root, opened, plans, mark=mark, target_acc10=target_accuracy, progress=progress,
                            echo=echo)
        device_class = opened.device_class
        info = opened.farm.device_classes()[device_class][0].info
        # A resumed build that measured nothing new still knows its runtime.
        result.runtime = result.runtime or info.runtime
        result.runtime_version = result.runtime_version or info.runtime_version
    if not result.fits:
        raise BuilderError(f"no kernel predictor could be fitted in {root}; see "
                           f"{root / 'predictor_build' / 'results' / 'profile_error.log'}")
    missing = [p.kernel_type for p in plans if p.kernel_type not in result.fits]
    if missing:
        echo(f"warning: no regressor for {', '.join(missing)} (too few measured kernels); the package lacks them")
    runtime, runtime_version = result.runtime, result.runtime_version
    rules = _predictor_rules(rules)
    if rules is None:  # warned about above, with the fix; the package states its rules' source
        from nn_farm.predictor.kernels import DEFAULT_RULES

        rules = dict(DEFAULT_RULES)
    result.package = write_predictor_package(
        result.fits, name=name or device_class, version=version, device=device_class, runtime=runtime,
        runtime_version=runtime_version, fusion_rules=rules, directory=root / "predictor_build" / "package",
        register=register, overwrite=True, extra={"workspace": str(root), "fusion_rules_source": rules_source})
    summary = result.summary()
    summary["fusion_rules"] = rules_source
    (root / "predictor_build" / "results" / "build_summary.json").write_text(json.dumps(summary, indent=2))
    result.elapsed_s = time.perf_counter() - started
    echo(f"predictor package {result.package} ({len(result.fits)} kernels, fusion rules: {rules_source}); "
         f"{result.measured} kernels measured now, {result.reused} from the store, "
         f"{result.device_s:.0f} device-s, {result.elapsed_s:.0f} s")
    return result
